package pusher

import (
	"context"
	"errors"
	"testing"
	"time"

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
