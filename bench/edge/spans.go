package edgebench

import (
	"slices"
	"sync"
	"time"
)

// Spans collects, for each publish request, when its first and its last
// delivery were read. Every event carries its publish clock (Now) as data and
// the events of one request share it, so the clock names the request. Where a
// latency percentile mixes everything, the split says which side of a fan-out
// a delay is on: the first delivery is the request's way in (the publisher,
// the server's handling and its first write), and the time from first to last
// is the fan-out's writes and the subscribers' reads.
//
// It records every delivery of the runs it is given to (no sampling): keep it
// to paced runs, where a map update per message is nothing beside its read.
type Spans struct {
	mu sync.Mutex
	m  map[int64]span
}

type span struct{ first, last int64 }

// SpanRecorder is one goroutine's part of a Spans.
type SpanRecorder struct {
	m map[int64]span
	s *Spans
}

// Recorder returns a new per-goroutine recorder.
func (s *Spans) Recorder() *SpanRecorder {
	return &SpanRecorder{m: make(map[int64]span), s: s}
}

// Add records a delivery of the request published at ts, read at now (unix
// nanos).
func (r *SpanRecorder) Add(ts, now int64) {
	sp, ok := r.m[ts]
	if !ok {
		r.m[ts] = span{now, now}
		return
	}
	sp.first, sp.last = min(sp.first, now), max(sp.last, now)
	r.m[ts] = sp
}

// Flush hands the recorder's spans to the collection.
func (r *SpanRecorder) Flush() {
	r.s.mu.Lock()
	if r.s.m == nil {
		r.s.m = make(map[int64]span, len(r.m))
	}
	for ts, sp := range r.m {
		if have, ok := r.s.m[ts]; ok {
			sp.first, sp.last = min(sp.first, have.first), max(sp.last, have.last)
		}
		r.s.m[ts] = sp
	}
	r.s.mu.Unlock()
	clear(r.m)
}

// SpanSummary is the p50 and p99, over requests, of the first and the last
// delivery's time after the publish clock.
type SpanSummary struct {
	Requests           int
	FirstP50, FirstP99 time.Duration
	LastP50, LastP99   time.Duration
}

// Summary summarizes the flushed spans (zero without any).
func (s *Spans) Summary() SpanSummary {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) == 0 {
		return SpanSummary{}
	}
	first := make([]time.Duration, 0, len(s.m))
	last := make([]time.Duration, 0, len(s.m))
	for ts, sp := range s.m {
		first = append(first, time.Duration(sp.first-ts))
		last = append(last, time.Duration(sp.last-ts))
	}
	slices.Sort(first)
	slices.Sort(last)
	at := func(d []time.Duration, q float64) time.Duration { return d[min(int(q*float64(len(d))), len(d)-1)] }
	return SpanSummary{
		Requests: len(s.m),
		FirstP50: at(first, 0.50), FirstP99: at(first, 0.99),
		LastP50: at(last, 0.50), LastP99: at(last, 0.99),
	}
}
