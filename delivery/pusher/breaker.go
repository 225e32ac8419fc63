package pusher

import (
	"errors"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/milequest/pushercm/delivery"
)

// outcome is what one attempt tells the breaker.
type outcome int

const (
	// outcomeSuccess: the upstream answered (including 4xx: it is up, the request was bad).
	outcomeSuccess outcome = iota
	// outcomeFailure: network error, timeout, 5xx or 429.
	outcomeFailure
	// outcomeIgnore: no request reached the upstream (client-side validation), or the
	// caller gave up; it says nothing about the upstream.
	outcomeIgnore
)

// errIgnored marks an attempt gobreaker must count neither way (IsExcluded).
var errIgnored = errors.New("pusher: attempt says nothing about the upstream")

// breaker is sony/gobreaker's two-step circuit breaker with the driver's policy:
// closed → open after threshold consecutive failures; open → half-open after
// openTimeout, letting exactly one probe through (MaxRequests 1); the probe's success
// closes it, its failure re-opens it. It adds what health reports and gobreaker does
// not keep across states: the consecutive failures, the last error and when the state
// last changed.
type breaker struct {
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}] // nil: disabled
	onChange func(from, to delivery.BreakerState)

	mu       sync.Mutex
	failures int
	lastErr  string
	since    time.Time
}

// newBreaker returns a breaker; threshold < 0 disables it.
func newBreaker(threshold int, openTimeout time.Duration, onChange func(from, to delivery.BreakerState)) *breaker {
	b := &breaker{onChange: onChange, since: time.Now()}
	if threshold < 0 {
		return b
	}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        Name,
		MaxRequests: 1,
		Timeout:     openTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(threshold) },
		IsExcluded:  func(err error) bool { return errors.Is(err, errIgnored) },
		// Called under gobreaker's lock, so observers see transitions in order; they
		// must not call back into the driver.
		OnStateChange: func(_ string, from, to gobreaker.State) {
			b.mu.Lock()
			b.since = time.Now()
			b.mu.Unlock()
			if b.onChange != nil {
				b.onChange(stateOf(from), stateOf(to))
			}
		},
	})
	return b
}

func stateOf(s gobreaker.State) delivery.BreakerState {
	switch s {
	case gobreaker.StateOpen:
		return delivery.BreakerOpen
	case gobreaker.StateHalfOpen:
		return delivery.BreakerHalfOpen
	}
	return delivery.BreakerClosed
}

// allow asks whether a request may go out now; when it may, record must be called with
// the attempt's outcome.
func (b *breaker) allow() (record func(outcome, error), ok bool) {
	if b.cb == nil {
		return func(outcome, error) {}, true
	}
	done, err := b.cb.Allow()
	if err != nil {
		return nil, false
	}
	return func(o outcome, err error) {
		switch o {
		case outcomeSuccess:
			b.mu.Lock()
			b.failures = 0
			b.mu.Unlock()
			done(nil)
		case outcomeFailure:
			if err == nil {
				err = errors.New("failed")
			}
			b.mu.Lock()
			b.failures++
			b.lastErr = err.Error()
			b.mu.Unlock()
			done(err)
		default:
			done(errIgnored)
		}
	}, true
}

func (b *breaker) snapshot() (state delivery.BreakerState, failures int, lastErr string, since time.Time) {
	if b.cb == nil {
		return delivery.BreakerNone, 0, "", time.Time{}
	}
	// State moves an open breaker whose timeout passed to half-open: the next call
	// probes, so health does not stay red while nothing is being published.
	state = stateOf(b.cb.State())
	b.mu.Lock()
	defer b.mu.Unlock()
	return state, b.failures, b.lastErr, b.since
}
