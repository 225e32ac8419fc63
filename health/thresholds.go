package health

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// Thresholds are the health section of the configuration: what turns the
// verdict degraded or unhealthy. A zero threshold disables that check.
type Thresholds struct {
	// Interval is how often health is evaluated and grpc.health.v1 updated
	// (readiness probes also evaluate). Default 5s.
	Interval time.Duration `yaml:"interval"`
	// Window is the span error rate, messages/s and latencies are computed
	// over. Default 1m.
	Window time.Duration `yaml:"window"`

	// ErrorRateDegraded and ErrorRateUnhealthy are fractions (0..1) of
	// failed gRPC calls over the window. Defaults 0.05 and 0.5.
	ErrorRateDegraded  float64 `yaml:"errorRateDegraded"`
	ErrorRateUnhealthy float64 `yaml:"errorRateUnhealthy"`
	// MinCalls is how many calls the window must hold before the error rate
	// counts, so that one failure of three calls does not page anyone.
	// Default 20.
	MinCalls int `yaml:"minCalls"`
	// ErrorCodes are the gRPC codes (upper-case names) that count as errors.
	// Default: the server's own failures, INTERNAL, UNKNOWN, UNAVAILABLE,
	// DEADLINE_EXCEEDED, DATA_LOSS. Caller mistakes (bad tokens, unknown
	// sockets, rate limits) are left out on purpose: a misbehaving client
	// must not be able to take the service out of rotation.
	ErrorCodes []string `yaml:"errorCodes"`

	// P99LatencyDegraded and P99LatencyUnhealthy bound the 99th percentile
	// duration of a publish call (pushercm_publish_duration_seconds; not the
	// publish-to-socket-write delivery latency). Defaults 250ms and 2s.
	P99LatencyDegraded  time.Duration `yaml:"p99LatencyDegraded"`
	P99LatencyUnhealthy time.Duration `yaml:"p99LatencyUnhealthy"`

	// PoolUtilizationDegraded and PoolUtilizationUnhealthy are fractions of
	// the maximum connections in use. Defaults 0.8 and 0.98.
	PoolUtilizationDegraded  float64 `yaml:"poolUtilizationDegraded"`
	PoolUtilizationUnhealthy float64 `yaml:"poolUtilizationUnhealthy"`

	// BreakerOpen is the verdict while the upstream (Pusher) circuit breaker
	// is open: "degraded" (default) or "unhealthy". Degraded by default
	// because every instance sees the same upstream: failing readiness
	// everywhere would also take down what still works (channel auth).
	BreakerOpen string `yaml:"breakerOpen"`

	// WebhookBacklogDegraded and WebhookBacklogUnhealthy bound webhook events
	// waiting to be sent. Defaults 1000 and 9000 (the queue holds 10000).
	WebhookBacklogDegraded  int64 `yaml:"webhookBacklogDegraded"`
	WebhookBacklogUnhealthy int64 `yaml:"webhookBacklogUnhealthy"`
}

// DefaultThresholds returns the documented defaults.
func DefaultThresholds() Thresholds {
	return Thresholds{
		Interval:                 5 * time.Second,
		Window:                   time.Minute,
		ErrorRateDegraded:        0.05,
		ErrorRateUnhealthy:       0.5,
		MinCalls:                 20,
		ErrorCodes:               []string{"INTERNAL", "UNKNOWN", "UNAVAILABLE", "DEADLINE_EXCEEDED", "DATA_LOSS"},
		P99LatencyDegraded:       250 * time.Millisecond,
		P99LatencyUnhealthy:      2 * time.Second,
		PoolUtilizationDegraded:  0.8,
		PoolUtilizationUnhealthy: 0.98,
		BreakerOpen:              "degraded",
		WebhookBacklogDegraded:   1000,
		WebhookBacklogUnhealthy:  9000,
	}
}

// Validate reports every bad field.
func (t Thresholds) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("health.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if t.Interval <= 0 {
		bad("interval", "must be positive")
	}
	if t.Window < time.Second {
		bad("window", "must be at least 1s")
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"errorRateDegraded", t.ErrorRateDegraded}, {"errorRateUnhealthy", t.ErrorRateUnhealthy},
		{"poolUtilizationDegraded", t.PoolUtilizationDegraded}, {"poolUtilizationUnhealthy", t.PoolUtilizationUnhealthy}} {
		if f.v < 0 || f.v > 1 {
			bad(f.name, "must be between 0 and 1, got %v", f.v)
		}
	}
	if t.MinCalls < 0 {
		bad("minCalls", "must not be negative")
	}
	if t.P99LatencyDegraded < 0 || t.P99LatencyUnhealthy < 0 {
		bad("p99Latency", "must not be negative")
	}
	if t.WebhookBacklogDegraded < 0 || t.WebhookBacklogUnhealthy < 0 {
		bad("webhookBacklog", "must not be negative")
	}
	switch t.BreakerOpen {
	case "", "degraded", "unhealthy":
	default:
		bad("breakerOpen", "must be degraded or unhealthy, got %q", t.BreakerOpen)
	}
	if _, err := t.Codes(); err != nil {
		bad("errorCodes", "%v", err)
	}
	return errors.Join(errs...)
}

// Codes parses ErrorCodes.
func (t Thresholds) Codes() ([]codes.Code, error) {
	out := make([]codes.Code, 0, len(t.ErrorCodes))
	for _, name := range t.ErrorCodes {
		var c codes.Code
		if err := c.UnmarshalJSON([]byte(`"` + strings.ToUpper(strings.TrimSpace(name)) + `"`)); err != nil || c == codes.OK {
			return nil, fmt.Errorf("%q is not a gRPC error code name", name)
		}
		out = append(out, c)
	}
	return out, nil
}

// Figures are what a verdict is computed from, and what GetHealthStatus shows.
type Figures struct {
	ConnectionsActive  int64
	ConnectionsTotal   int64
	ConnectionsMax     int64
	ConnectionsRefused int64
	// Utilization is ConnectionsActive/ConnectionsMax (0 without a maximum).
	Utilization float64

	MessagesPerSecond float64
	AvgLatency        time.Duration
	P99Latency        time.Duration
	// Publishes in the window; the latency checks need at least one.
	Publishes uint64

	// Calls in the window and ErrorRate among them.
	Calls          uint64
	ErrorRate      float64
	ErrorsTotal    int64
	ErrorsByReason map[string]int64

	Driver         string
	BreakerState   string
	WebhookBacklog int64

	// RateLimitFallback names the rate limiters whose last check was decided
	// by this node's own limits because their shared store (Redis) did not
	// answer: each node then admits up to the limit on its own. Empty: none.
	RateLimitFallback []string

	// RedisConfigured is true in cluster mode; RedisError then says why
	// Redis is unusable (empty while it is fine), and RedisDown is the
	// verdict that gives (cluster.redisDown; Degraded when zero).
	RedisConfigured bool
	RedisError      string
	RedisDown       Status
}

// Evaluate applies t to f. Every crossed threshold adds a reason; the
// verdict is the worst of them.
func Evaluate(t Thresholds, f Figures) Report {
	r := Report{Status: Healthy}
	mark := func(s Status, format string, args ...any) {
		r.Reasons = append(r.Reasons, fmt.Sprintf(format, args...))
		if s > r.Status {
			r.Status = s
		}
	}
	if f.Calls >= uint64(t.MinCalls) && f.Calls > 0 {
		switch {
		case t.ErrorRateUnhealthy > 0 && f.ErrorRate >= t.ErrorRateUnhealthy:
			mark(Unhealthy, "error rate %.1f%% over %d calls is at or above the unhealthy threshold %.1f%%", f.ErrorRate*100, f.Calls, t.ErrorRateUnhealthy*100)
		case t.ErrorRateDegraded > 0 && f.ErrorRate >= t.ErrorRateDegraded:
			mark(Degraded, "error rate %.1f%% over %d calls is at or above the degraded threshold %.1f%%", f.ErrorRate*100, f.Calls, t.ErrorRateDegraded*100)
		}
	}
	if f.Publishes > 0 {
		switch {
		case t.P99LatencyUnhealthy > 0 && f.P99Latency >= t.P99LatencyUnhealthy:
			mark(Unhealthy, "p99 delivery latency %s is at or above the unhealthy threshold %s", f.P99Latency, t.P99LatencyUnhealthy)
		case t.P99LatencyDegraded > 0 && f.P99Latency >= t.P99LatencyDegraded:
			mark(Degraded, "p99 delivery latency %s is at or above the degraded threshold %s", f.P99Latency, t.P99LatencyDegraded)
		}
	}
	if f.ConnectionsMax > 0 {
		switch {
		case t.PoolUtilizationUnhealthy > 0 && f.Utilization >= t.PoolUtilizationUnhealthy:
			mark(Unhealthy, "connection pool %.0f%% used (%d of %d), at or above the unhealthy threshold %.0f%%", f.Utilization*100, f.ConnectionsActive, f.ConnectionsMax, t.PoolUtilizationUnhealthy*100)
		case t.PoolUtilizationDegraded > 0 && f.Utilization >= t.PoolUtilizationDegraded:
			mark(Degraded, "connection pool %.0f%% used (%d of %d), at or above the degraded threshold %.0f%%", f.Utilization*100, f.ConnectionsActive, f.ConnectionsMax, t.PoolUtilizationDegraded*100)
		}
	}
	if f.BreakerState == "open" {
		s := Degraded
		if t.BreakerOpen == "unhealthy" {
			s = Unhealthy
		}
		mark(s, "upstream circuit breaker is open")
	}
	if len(f.RateLimitFallback) > 0 {
		mark(Degraded, "rate limits %s fall back to this node's own: their Redis store does not answer", strings.Join(f.RateLimitFallback, ", "))
	}
	if f.RedisConfigured && f.RedisError != "" {
		s := f.RedisDown
		if s < Degraded {
			s = Degraded
		}
		mark(s, "redis unreachable: %s", f.RedisError)
	}
	switch {
	case t.WebhookBacklogUnhealthy > 0 && f.WebhookBacklog >= t.WebhookBacklogUnhealthy:
		mark(Unhealthy, "webhook backlog %d is at or above the unhealthy threshold %d", f.WebhookBacklog, t.WebhookBacklogUnhealthy)
	case t.WebhookBacklogDegraded > 0 && f.WebhookBacklog >= t.WebhookBacklogDegraded:
		mark(Degraded, "webhook backlog %d is at or above the degraded threshold %d", f.WebhookBacklog, t.WebhookBacklogDegraded)
	}
	return r
}
