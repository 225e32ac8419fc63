package health_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/milequest/pushercm/health"
)

func TestEvaluate(t *testing.T) {
	th := health.DefaultThresholds()
	tests := []struct {
		name    string
		f       health.Figures
		want    health.Status
		reasons int
	}{
		{"quiet", health.Figures{}, health.Healthy, 0},
		{"errors under min calls", health.Figures{Calls: 5, ErrorRate: 1}, health.Healthy, 0},
		{"error rate degraded", health.Figures{Calls: 100, ErrorRate: 0.1}, health.Degraded, 1},
		{"error rate unhealthy", health.Figures{Calls: 100, ErrorRate: 0.5}, health.Unhealthy, 1},
		{"latency without publishes is ignored", health.Figures{P99Latency: time.Hour}, health.Healthy, 0},
		{"latency degraded", health.Figures{Publishes: 10, P99Latency: 250 * time.Millisecond}, health.Degraded, 1},
		{"latency unhealthy", health.Figures{Publishes: 10, P99Latency: 5 * time.Second}, health.Unhealthy, 1},
		{"pool degraded", health.Figures{ConnectionsMax: 100, ConnectionsActive: 85, Utilization: 0.85}, health.Degraded, 1},
		{"pool unhealthy", health.Figures{ConnectionsMax: 100, ConnectionsActive: 99, Utilization: 0.99}, health.Unhealthy, 1},
		{"breaker open is degraded by default", health.Figures{BreakerState: "open"}, health.Degraded, 1},
		{"breaker half-open is fine", health.Figures{BreakerState: "half-open"}, health.Healthy, 0},
		{"redis down is degraded by default", health.Figures{RedisConfigured: true, RedisError: "dial tcp: refused"}, health.Degraded, 1},
		{"redis down configured unhealthy", health.Figures{RedisConfigured: true, RedisError: "dial tcp: refused", RedisDown: health.Unhealthy}, health.Unhealthy, 1},
		{"redis up is fine", health.Figures{RedisConfigured: true}, health.Healthy, 0},
		{"webhook backlog degraded", health.Figures{WebhookBacklog: 1000}, health.Degraded, 1},
		{"webhook backlog unhealthy", health.Figures{WebhookBacklog: 9000}, health.Unhealthy, 1},
		{"worst wins, every reason listed", health.Figures{Calls: 100, ErrorRate: 0.1, WebhookBacklog: 9500, BreakerState: "open"}, health.Unhealthy, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := health.Evaluate(th, tc.f)
			if r.Status != tc.want || len(r.Reasons) != tc.reasons {
				t.Fatalf("got %v %q, want %v with %d reasons", r.Status, r.Reasons, tc.want, tc.reasons)
			}
		})
	}
	t.Run("breaker open configured unhealthy", func(t *testing.T) {
		th := health.DefaultThresholds()
		th.BreakerOpen = "unhealthy"
		if r := health.Evaluate(th, health.Figures{BreakerState: "open"}); r.Status != health.Unhealthy {
			t.Fatalf("got %v", r.Status)
		}
	})
	t.Run("zero thresholds disable checks", func(t *testing.T) {
		if r := health.Evaluate(health.Thresholds{}, health.Figures{Calls: 100, ErrorRate: 1, WebhookBacklog: 1e6}); r.Status != health.Healthy {
			t.Fatalf("got %v %v", r.Status, r.Reasons)
		}
	})
}

func TestThresholdsValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*health.Thresholds)
		ok     bool
	}{
		{"defaults", func(*health.Thresholds) {}, true},
		{"rate over one", func(th *health.Thresholds) { th.ErrorRateDegraded = 1.5 }, false},
		{"negative utilization", func(th *health.Thresholds) { th.PoolUtilizationDegraded = -0.1 }, false},
		{"no interval", func(th *health.Thresholds) { th.Interval = 0 }, false},
		{"tiny window", func(th *health.Thresholds) { th.Window = time.Millisecond }, false},
		{"bad breaker verdict", func(th *health.Thresholds) { th.BreakerOpen = "panic" }, false},
		{"unknown code", func(th *health.Thresholds) { th.ErrorCodes = []string{"NOPE"} }, false},
		{"OK is not an error", func(th *health.Thresholds) { th.ErrorCodes = []string{"OK"} }, false},
		{"lower-case code", func(th *health.Thresholds) { th.ErrorCodes = []string{"not_found"} }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			th := health.DefaultThresholds()
			tc.mutate(&th)
			if err := th.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate: %v, want ok=%v", err, tc.ok)
			}
		})
	}
	cs, err := health.Thresholds{ErrorCodes: []string{"not_found", "INTERNAL"}}.Codes()
	if err != nil || len(cs) != 2 || cs[0] != codes.NotFound || cs[1] != codes.Internal {
		t.Fatalf("codes %v %v", cs, err)
	}
}

// TestServerFollowsEvaluator: grpc.health.v1 follows the verdict; Done
// closes on Shutdown and later verdicts never serve again.
func TestServerFollowsEvaluator(t *testing.T) {
	verdict := health.Healthy
	s := health.New([]string{"svc"}, func(context.Context) health.Report { return health.Report{Status: verdict} })
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := s.GRPC().Check(context.Background(), &healthpb.HealthCheckRequest{Service: "svc"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	for _, tc := range []struct {
		verdict health.Status
		want    healthpb.HealthCheckResponse_ServingStatus
	}{
		{health.Degraded, healthpb.HealthCheckResponse_SERVING},
		{health.Unhealthy, healthpb.HealthCheckResponse_NOT_SERVING},
		{health.Healthy, healthpb.HealthCheckResponse_SERVING},
	} {
		verdict = tc.verdict
		s.Refresh(context.Background())
		if got := check(); got != tc.want {
			t.Fatalf("%v: %v, want %v", tc.verdict, got, tc.want)
		}
	}
	select {
	case <-s.Done():
		t.Fatal("Done closed before Shutdown")
	default:
	}
	s.Shutdown()
	s.Shutdown() // idempotent
	<-s.Done()
	s.Refresh(context.Background())
	if got := check(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("after shutdown: %v", got)
	}
}
