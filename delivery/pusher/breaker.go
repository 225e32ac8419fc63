package pusher

import (
	"sync"
	"time"

	"github.com/milequest/pushercm/delivery"
)

// outcome is what one attempt tells the breaker.
type outcome int

const (
	// outcomeSuccess: the upstream answered (including 4xx: it is up, the request was bad).
	outcomeSuccess outcome = iota
	// outcomeFailure: network error, timeout, 5xx or 429.
	outcomeFailure
	// outcomeIgnore: no request reached the upstream (client-side validation).
	outcomeIgnore
)

// breaker is a consecutive-failure circuit breaker: closed → open after threshold
// failures; open → half-open after openTimeout, letting exactly one probe through;
// the probe's success closes it, its failure re-opens it.
type breaker struct {
	threshold   int // <0 disables
	openTimeout time.Duration
	now         func() time.Time
	onChange    func(from, to delivery.BreakerState)

	mu       sync.Mutex
	state    delivery.BreakerState
	failures int
	openedAt time.Time
	since    time.Time
	probing  bool
	lastErr  string
}

func newBreaker(threshold int, openTimeout time.Duration, now func() time.Time) *breaker {
	return &breaker{threshold: threshold, openTimeout: openTimeout, now: now, state: delivery.BreakerClosed}
}

// allow reports whether a request may go out now.
func (b *breaker) allow() bool {
	if b.threshold < 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case delivery.BreakerOpen:
		if b.now().Sub(b.openedAt) < b.openTimeout {
			return false
		}
		b.setLocked(delivery.BreakerHalfOpen)
		b.probing = true
		return true
	case delivery.BreakerHalfOpen:
		if b.probing {
			return false
		}
		b.probing = true
		return true
	}
	return true
}

func (b *breaker) record(o outcome, err error) {
	if b.threshold < 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch o {
	case outcomeSuccess:
		b.failures = 0
		b.probing = false
		if b.state != delivery.BreakerClosed {
			b.setLocked(delivery.BreakerClosed)
		}
	case outcomeFailure:
		b.failures++
		if err != nil {
			b.lastErr = err.Error()
		}
		switch {
		case b.state == delivery.BreakerHalfOpen:
			b.probing = false
			b.openedAt = b.now()
			b.setLocked(delivery.BreakerOpen)
		case b.state == delivery.BreakerClosed && b.failures >= b.threshold:
			b.openedAt = b.now()
			b.setLocked(delivery.BreakerOpen)
		}
	case outcomeIgnore:
		if b.state == delivery.BreakerHalfOpen {
			b.probing = false // let the next call probe
		}
	}
}

func (b *breaker) setLocked(s delivery.BreakerState) {
	from := b.state
	b.state = s
	b.since = b.now()
	if b.onChange != nil && from != s {
		// Called under the lock so observers see transitions in order; observers must
		// not call back into the driver.
		b.onChange(from, s)
	}
}

func (b *breaker) snapshot() (state delivery.BreakerState, failures int, lastErr string, since time.Time) {
	if b.threshold < 0 {
		return delivery.BreakerNone, 0, "", time.Time{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	state = b.state
	// An open breaker whose timeout passed will let the next call probe; report it as
	// half-open so health does not stay red while nothing is being published.
	if state == delivery.BreakerOpen && b.now().Sub(b.openedAt) >= b.openTimeout {
		state = delivery.BreakerHalfOpen
	}
	return state, b.failures, b.lastErr, b.since
}
