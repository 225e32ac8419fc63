package metrics

import (
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// Window keeps recent Snapshots so that cumulative counters can be turned
// into figures over a sliding span (the health evaluation window). Add a
// snapshot periodically; Rates compares the current counters with the
// snapshot taken about one span ago. Safe for concurrent use.
type Window struct {
	span time.Duration

	mu   sync.Mutex
	ring []Snapshot // oldest first
}

// NewWindow returns a window over span (minimum 1s).
func NewWindow(span time.Duration) *Window {
	return &Window{span: max(span, time.Second)}
}

// Span is the window's length.
func (w *Window) Span() time.Duration { return w.span }

// Add records a snapshot and forgets those no longer needed: it keeps every
// snapshot inside the span plus the newest one before it, so a full span is
// always covered once the process is older than the span.
func (w *Window) Add(s Snapshot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ring = append(w.ring, s)
	cut := s.Time.Add(-w.span)
	drop := 0
	for drop+1 < len(w.ring) && !w.ring[drop+1].Time.After(cut) {
		drop++
	}
	if drop > 0 {
		w.ring = append(w.ring[:0], w.ring[drop:]...)
	}
}

// Rates are the figures of one window.
type Rates struct {
	// Span is the time actually covered (shorter than the window just after start).
	Span time.Duration
	// Calls finished and Errors among them (only the codes that count as errors).
	Calls, Errors uint64
	// ErrorRate is Errors/Calls, 0 without calls.
	ErrorRate float64
	// MessagesPerSecond is socket writes of published events per second.
	MessagesPerSecond float64
	// Publishes in the span, and their average and 99th percentile latency
	// (the upper bound of the bucket holding the 99th percentile).
	Publishes  uint64
	AvgLatency time.Duration
	P99Latency time.Duration
}

// Rates compares cur with the snapshot taken one span before it (or the
// oldest one kept). errorCodes are the codes that count as errors; nil
// means every code but OK.
func (w *Window) Rates(cur Snapshot, errorCodes []codes.Code) Rates {
	w.mu.Lock()
	base := Snapshot{Time: cur.Time}
	cut := cur.Time.Add(-w.span)
	found := false
	for i := len(w.ring) - 1; i >= 0; i-- {
		if !w.ring[i].Time.After(cut) {
			base, found = w.ring[i], true
			break
		}
	}
	if !found && len(w.ring) > 0 {
		base = w.ring[0]
	}
	w.mu.Unlock()
	return Between(base, cur, errorCodes)
}

// Between computes the figures between two snapshots of the same Observer.
func Between(base, cur Snapshot, errorCodes []codes.Code) Rates {
	r := Rates{Span: cur.Time.Sub(base.Time)}
	for i := range cur.Calls {
		d := cur.Calls[i] - base.Calls[i]
		r.Calls += d
		if codes.Code(i) == codes.OK {
			continue
		}
		if errorCodes == nil || containsCode(errorCodes, codes.Code(i)) {
			r.Errors += d
		}
	}
	if r.Calls > 0 {
		r.ErrorRate = float64(r.Errors) / float64(r.Calls)
	}
	if r.Span > 0 {
		r.MessagesPerSecond = float64(cur.Delivered-base.Delivered) / r.Span.Seconds()
	}
	r.Publishes = cur.LatencyCount - base.LatencyCount
	if r.Publishes > 0 {
		r.AvgLatency = (cur.LatencySum - base.LatencySum) / time.Duration(r.Publishes)
		// The rank of the 99th percentile, rounded up: with 100 publishes it
		// is the 99th, with 10 the 10th (the slowest).
		rank := (r.Publishes*99 + 99) / 100
		var seen uint64
		for i := range cur.Latency {
			seen += cur.Latency[i] - base.Latency[i]
			if seen >= rank {
				if i < len(LatencyBounds) {
					r.P99Latency = time.Duration(LatencyBounds[i] * float64(time.Second))
				} else {
					// Over the top bound: report the top bound's double, a
					// value that crosses any sane threshold.
					r.P99Latency = time.Duration(2 * LatencyBounds[len(LatencyBounds)-1] * float64(time.Second))
				}
				break
			}
		}
	}
	return r
}

func containsCode(cs []codes.Code, c codes.Code) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}
