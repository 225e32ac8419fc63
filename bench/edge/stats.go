package edgebench

import (
	"sort"
	"sync"
	"time"
)

// Latencies collects samples from many goroutines with little contention: each reader
// owns a Recorder and merges it at the end.
type Latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

// Recorder is one goroutine's sample buffer.
type Recorder struct {
	s []time.Duration
	l *Latencies
}

// Recorder returns a new per-goroutine buffer.
func (l *Latencies) Recorder() *Recorder { return &Recorder{l: l} }

// Add records one sample.
func (r *Recorder) Add(d time.Duration) { r.s = append(r.s, d) }

// Flush hands the samples to the collection.
func (r *Recorder) Flush() {
	r.l.mu.Lock()
	r.l.all = append(r.l.all, r.s...)
	r.l.mu.Unlock()
	r.s = nil
}

// Percentiles returns p50, p99 and max (0 without samples).
func (l *Latencies) Percentiles() (p50, p99, maxD time.Duration, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.all) == 0 {
		return 0, 0, 0, 0
	}
	sort.Slice(l.all, func(i, j int) bool { return l.all[i] < l.all[j] })
	at := func(q float64) time.Duration { return l.all[min(len(l.all)-1, int(q*float64(len(l.all))))] }
	return at(0.50), at(0.99), l.all[len(l.all)-1], len(l.all)
}
