package metrics_test

import (
	"context"
	"errors"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/milequest/pushercm/metrics"
)

func statusErr(t *testing.T, c codes.Code, reason string) error {
	t.Helper()
	st := status.New(c, "x")
	if reason != "" {
		var err error
		st, err = st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "pushercm"})
		if err != nil {
			t.Fatal(err)
		}
	}
	return st.Err()
}

func TestObserverCountsRPCOutcomes(t *testing.T) {
	o := metrics.NewObserver()
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"ok", nil},
		{"not found", statusErr(t, codes.NotFound, "NOT_FOUND")},
		{"not found again", statusErr(t, codes.NotFound, "NOT_FOUND")},
		{"internal without info", statusErr(t, codes.Internal, "")},
		{"plain error", errors.New("boom")},
	} {
		o.Finished(tc.err)
	}
	s := o.Snapshot(time.Now())
	if s.TotalCalls() != 5 || s.FailedCalls() != 4 || s.Calls[codes.NotFound] != 2 || s.Calls[codes.Unknown] != 1 {
		t.Fatalf("calls %v", s.Calls)
	}
	want := map[string]uint64{"NOT_FOUND": 2, "UNSPECIFIED": 2}
	if len(s.ErrorsByReason) != len(want) || s.ErrorsByReason["NOT_FOUND"] != 2 || s.ErrorsByReason["UNSPECIFIED"] != 2 {
		t.Fatalf("by reason %v, want %v", s.ErrorsByReason, want)
	}
}

func TestWindowRates(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name       string
		publish    []time.Duration // latencies published between the snapshots
		ok, failed int
		codes      []codes.Code
		wantRate   float64
		wantErrors uint64
		wantP99    time.Duration
		wantAvg    time.Duration
	}{
		{name: "empty window"},
		{name: "all codes count", ok: 3, failed: 1, wantRate: 0.25, wantErrors: 1},
		{name: "only listed codes count", ok: 3, failed: 1, codes: []codes.Code{codes.Internal}, wantRate: 0, wantErrors: 0},
		{
			name:    "p99 is the bucket of the 99th percentile",
			publish: append(repeat(99, 80*time.Microsecond), 400*time.Millisecond),
			wantP99: 100 * time.Microsecond,
			wantAvg: (99*80*time.Microsecond + 400*time.Millisecond) / 100,
		},
		{
			name:    "with few publishes p99 is the slowest",
			publish: append(repeat(9, 80*time.Microsecond), 400*time.Millisecond),
			wantP99: 500 * time.Millisecond,
			wantAvg: (9*80*time.Microsecond + 400*time.Millisecond) / 10,
		},
		{name: "over the top bound", publish: []time.Duration{time.Minute}, wantP99: 20 * time.Second, wantAvg: time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := metrics.NewObserver()
			o.RPC(codes.OK, "") // before the window: not counted
			w := metrics.NewWindow(10 * time.Second)
			w.Add(o.Snapshot(t0))
			for _, d := range tc.publish {
				o.Published(2, d)
			}
			for range tc.ok {
				o.RPC(codes.OK, "")
			}
			for range tc.failed {
				o.RPC(codes.NotFound, "NOT_FOUND")
			}
			r := w.Rates(o.Snapshot(t0.Add(5*time.Second)), tc.codes)
			if r.Span != 5*time.Second || r.Calls != uint64(tc.ok+tc.failed) || r.Errors != tc.wantErrors || r.ErrorRate != tc.wantRate {
				t.Fatalf("rates %+v", r)
			}
			if r.P99Latency != tc.wantP99 || r.AvgLatency != tc.wantAvg || r.Publishes != uint64(len(tc.publish)) {
				t.Fatalf("latency %+v, want p99 %v avg %v", r, tc.wantP99, tc.wantAvg)
			}
			if want := float64(2*len(tc.publish)) / 5; r.MessagesPerSecond != want {
				t.Fatalf("messages/s %v, want %v", r.MessagesPerSecond, want)
			}
		})
	}
}

func repeat(n int, d time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

// TestWindowSlides: events older than the span stop counting.
func TestWindowSlides(t *testing.T) {
	o := metrics.NewObserver()
	w := metrics.NewWindow(10 * time.Second)
	t0 := time.Unix(1000, 0)
	w.Add(o.Snapshot(t0))
	o.RPC(codes.Internal, "INTERNAL")
	for i := 1; i <= 30; i++ {
		w.Add(o.Snapshot(t0.Add(time.Duration(i) * time.Second)))
	}
	if r := w.Rates(o.Snapshot(t0.Add(5*time.Second)), nil); r.Errors != 0 {
		// Asking about an earlier time than kept snapshots: base is the
		// oldest kept, which is after the error.
		t.Fatalf("old error still counted: %+v", r)
	}
	if r := w.Rates(o.Snapshot(t0.Add(31*time.Second)), nil); r.Errors != 0 || r.Span != 10*time.Second {
		t.Fatalf("rates %+v", r)
	}
}

// TestRegisterExportsEveryInstrument collects once through a manual reader.
func TestRegisterExportsEveryInstrument(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	o := metrics.NewObserver()
	reg := prometheus.NewRegistry()
	if err := metrics.Register(mp.Meter("test"), reg, o, func() metrics.Reading {
		return metrics.Reading{
			ConnectionsActive: 3, ConnectionsRefused: map[string]uint64{"CONNECTION_POOL_EXHAUSTED": 1},
			RateLimited: map[string]uint64{"user": 2}, RateAllowed: map[string]uint64{"user": 7},
			Breaker: "open",
		}
	}, "NOT_FOUND", "RATE_LIMITED"); err != nil {
		t.Fatal(err)
	}
	// The latency histograms are series from the start, at zero.
	hists := func() map[string]*dto.Histogram {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*dto.Histogram{}
		for _, mf := range mfs {
			out[mf.GetName()] = mf.GetMetric()[0].GetHistogram()
		}
		return out
	}
	for _, name := range []string{"pushercm_publish_duration_seconds", "pushercm_delivery_latency_seconds"} {
		if h := hists()[name]; h == nil || h.GetSampleCount() != 0 || len(h.GetBucket()) != len(metrics.LatencyBounds) {
			t.Errorf("%s before any value: %v", name, h)
		}
	}
	o.Published(5, time.Millisecond)
	o.Written(3*time.Millisecond, 2)
	o.Written(40*time.Millisecond, 1)
	o.RPC(codes.NotFound, "NOT_FOUND")
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			got[m.Name] = m.Data
		}
	}
	for _, name := range []string{
		"pushercm_connections_active", "pushercm_connections", "pushercm_connections_refused", "pushercm_subscriptions",
		"pushercm_channels_occupied", "pushercm_presence_members", "pushercm_messages_published", "pushercm_messages_delivered",
		"pushercm_client_events", "pushercm_slow_consumers_closed", "pushercm_stale_connections_closed",
		"pushercm_webhooks_sent", "pushercm_webhooks_failed", "pushercm_webhooks_dropped", "pushercm_webhooks_backlog",
		"pushercm_rate_limited", "pushercm_rate_limit_allowed", "pushercm_errors", "pushercm_rpcs", "pushercm_upstream_breaker_state", "pushercm_webhooks_received",
	} {
		if got[name] == nil {
			t.Errorf("%s not exported", name)
		}
	}
	if g, ok := got["pushercm_upstream_breaker_state"].(metricdata.Gauge[int64]); !ok || g.DataPoints[0].Value != 2 {
		t.Errorf("breaker state %v", got["pushercm_upstream_breaker_state"])
	}
	if s, ok := got["pushercm_messages_delivered"].(metricdata.Sum[int64]); !ok || s.DataPoints[0].Value != 5 {
		t.Errorf("delivered %v", got["pushercm_messages_delivered"])
	}
	if h := hists()["pushercm_publish_duration_seconds"]; h.GetSampleCount() != 1 {
		t.Errorf("publish duration %v", h)
	}
	if h := hists()["pushercm_delivery_latency_seconds"]; h.GetSampleCount() != 2 || h.GetSampleSum() < 0.042 || h.GetSampleSum() > 0.044 {
		t.Errorf("delivery latency %v", h)
	}
	// Every code is a series, named in upper snake case, zero or not.
	rpcs := map[string]int64{}
	for _, dp := range got["pushercm_rpcs"].(metricdata.Sum[int64]).DataPoints {
		v, _ := dp.Attributes.Value("code")
		rpcs[v.AsString()] = dp.Value
	}
	if len(rpcs) != 17 || rpcs["NOT_FOUND"] != 1 || rpcs["PERMISSION_DENIED"] != 0 {
		t.Errorf("rpcs by code %v", rpcs)
	}
	// Listed reasons exist at zero; a reason seen is counted once.
	errs := map[string]int64{}
	for _, dp := range got["pushercm_errors"].(metricdata.Sum[int64]).DataPoints {
		v, _ := dp.Attributes.Value("reason")
		if _, dup := errs[v.AsString()]; dup {
			t.Errorf("reason %s observed twice", v.AsString())
		}
		errs[v.AsString()] = dp.Value
	}
	if len(errs) != 2 || errs["NOT_FOUND"] != 1 || errs["RATE_LIMITED"] != 0 {
		t.Errorf("errors by reason %v", errs)
	}
}

// TestCodeNames: the code label is the canonical name grpc-go itself
// parses, for every code.
func TestCodeNames(t *testing.T) {
	for i, name := range metrics.CodeNames {
		var c codes.Code
		if err := c.UnmarshalJSON([]byte(`"` + name + `"`)); err != nil || c != codes.Code(i) {
			t.Errorf("%s: parsed as %v (%v), want %v", name, c, err, codes.Code(i))
		}
	}
}

func BenchmarkPublished(b *testing.B) {
	// The hot-path cost the edge pays per publish (not per subscriber).
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	o := metrics.NewObserver()
	if err := metrics.Register(mp.Meter("bench"), prometheus.NewRegistry(), o, func() metrics.Reading { return metrics.Reading{} }); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o.Published(100, 250*time.Microsecond)
		}
	})
}
