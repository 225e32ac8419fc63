package pusher

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/interceptors"
)

// TestLostAnswerIsNotResent: the API took the request (and delivered the event)
// but its answer was lost to a reset or a timeout. Pusher's HTTP API has no
// idempotency key, so a retry would deliver the event a second time: publishes
// are not retried then, and fail with ErrOutcomeUnknown, which the caller sees
// as MESSAGE_DELIVERY_FAILED with a code that retry policies leave alone.
func TestLostAnswerIsNotResent(t *testing.T) {
	publishes := []struct {
		name    string
		publish func(d *Driver) error
		key     string
	}{
		{"trigger", func(d *Driver) error { _, err := d.Publish(context.Background(), ev("x", "team-1")); return err }, `team-1|{"id":"x"}`},
		{"batch", func(d *Driver) error {
			_, errs := d.PublishBatch(context.Background(), []delivery.Event{ev("x", "team-1")})
			return errs[0]
		}, `team-1|{"id":"x"}`},
		{"to user", func(d *Driver) error {
			_, err := d.SendToUser(context.Background(), "u1", "activity", `{"id":"x"}`)
			return err
		}, `user u1/activity/{"id":"x"}`},
	}
	for _, f := range []struct {
		name  string
		fault fault
		// The driver cannot tell these from a reset after the API took the request.
		lost bool
	}{{"reset", acceptReset, false}, {"timeout", acceptHang, false}, {"reset unseen", reset, true}, {"timeout unseen", hang, true}} {
		for _, p := range publishes {
			t.Run(f.name+"/"+p.name, func(t *testing.T) {
				e := newEnv(t, func(c *Config) { c.RequestTimeout = 200 * time.Millisecond })
				e.proxy.setPlan(f.fault)
				err := p.publish(e.driver)
				if !errors.Is(err, delivery.ErrOutcomeUnknown) || !errors.Is(err, delivery.ErrDeliveryFailed) {
					t.Fatalf("err = %v, want ErrOutcomeUnknown", err)
				}
				want := 1
				if f.lost {
					want = 0 // at most once: the price of never delivering twice
				}
				if got := e.backend.deliveries()[p.key]; got != want {
					t.Fatalf("delivered %d times, want %d", got, want)
				}
				if n := len(e.proxy.requests()); n != 1 {
					t.Fatalf("requests = %d, want 1 (no retry)", n)
				}
				m := interceptors.Map(err)
				if m.Reason != interceptors.ReasonMessageDeliveryFailed || m.Status.Code() != codes.Internal {
					t.Fatalf("mapped to %s / %s", m.Status.Code(), m.Reason)
				}
				// The upstream failed all the same.
				if h := e.driver.Health(); h.ConsecutiveFailures != 1 {
					t.Fatalf("health %+v, want the failure counted", h)
				}
			})
		}
	}
	// Queries change nothing upstream: they are retried.
	t.Run("query", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.RequestTimeout = 200 * time.Millisecond })
		e.proxy.setPlan(acceptReset, acceptHang)
		if _, err := e.driver.Channels(context.Background(), ""); err != nil {
			t.Fatal(err)
		}
		if n := len(e.proxy.requests()); n != 3 {
			t.Fatalf("requests = %d, want 3", n)
		}
	})
}

// TestUpstreamFaultsMapToStatus: an upstream that keeps failing is retried with
// backoff, then the error maps to the status DESIGN §3 gives it, and nothing is
// delivered: 5xx → MESSAGE_DELIVERY_FAILED, 429 → RATE_LIMITED with the retry
// hint, unreachable or breaker open → CONNECTION_FAILED.
func TestUpstreamFaultsMapToStatus(t *testing.T) {
	tests := []struct {
		name      string
		mutate    func(*Config)
		setup     func(t *testing.T, e *env)
		requests  int
		code      codes.Code
		reason    string
		retryHint time.Duration // RetryInfo wanted (0: none)
	}{
		{name: "500", setup: func(t *testing.T, e *env) { e.proxy.setRule(func(*http.Request, []byte) fault { return fail500 }) },
			requests: 4, code: codes.Unavailable, reason: interceptors.ReasonMessageDeliveryFailed},
		{name: "429", setup: func(t *testing.T, e *env) { e.proxy.setRule(func(*http.Request, []byte) fault { return fail429 }) },
			requests: 4, code: codes.ResourceExhausted, reason: interceptors.ReasonRateLimited, retryHint: 300 * time.Millisecond},
		{name: "429 with Retry-After", setup: func(t *testing.T, e *env) {
			e.proxy.setRule(func(*http.Request, []byte) fault { return fail429After2 })
		},
			requests: 4, code: codes.ResourceExhausted, reason: interceptors.ReasonRateLimited, retryHint: 2 * time.Second},
		{name: "unreachable", setup: func(t *testing.T, e *env) { e.proxy.srv.Close() },
			requests: 0, code: codes.Unavailable, reason: interceptors.ReasonConnectionFailed},
		{name: "breaker open", mutate: func(c *Config) { c.BreakerFailureThreshold = 2 },
			setup: func(t *testing.T, e *env) {
				e.proxy.setRule(func(*http.Request, []byte) fault { return fail500 })
				// Two failed attempts open it; the third is refused.
				if _, err := e.driver.Publish(context.Background(), ev("opens", "team-1")); !errors.Is(err, delivery.ErrUnavailable) {
					t.Fatalf("err = %v", err)
				}
				if h := e.driver.Health(); h.Breaker != delivery.BreakerOpen {
					t.Fatalf("health %+v, want the breaker open", h)
				}
			},
			requests: 2, code: codes.Unavailable, reason: interceptors.ReasonConnectionFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.mutate)
			tc.setup(t, e)
			_, err := e.driver.Publish(context.Background(), ev("x", "team-1"))
			m := interceptors.Map(err)
			if m.Status.Code() != tc.code || m.Reason != tc.reason {
				t.Fatalf("err %v mapped to %s / %s, want %s / %s", err, m.Status.Code(), m.Reason, tc.code, tc.reason)
			}
			if n := len(e.proxy.requests()); n != tc.requests {
				t.Fatalf("requests = %d, want %d", n, tc.requests)
			}
			if n := e.backend.publishCount(); n != 0 {
				t.Fatalf("%d events delivered", n)
			}
			var hint *errdetails.RetryInfo
			for _, d := range m.Status.Details() {
				if ri, ok := d.(*errdetails.RetryInfo); ok {
					hint = ri
				}
			}
			switch {
			case tc.retryHint == 0 && hint != nil:
				t.Fatalf("unexpected RetryInfo %v", hint)
			case tc.retryHint != 0 && (hint == nil || hint.RetryDelay.AsDuration() != tc.retryHint):
				t.Fatalf("RetryInfo %v, want %v", hint, tc.retryHint)
			}
		})
	}
}
