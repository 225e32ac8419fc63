package edgebench

import (
	"math/bits"
	"sync"
	"time"
)

// Latencies collects samples from many goroutines with little contention: each reader
// owns a Recorder and merges it at the end. Samples go into a log-linear histogram of
// microseconds (64 steps per power of two, so a percentile is at most 1.6 % above
// the exact sample), which costs the same whether a run records a thousand samples or a
// hundred million; the maximum is exact.
type Latencies struct {
	mu sync.Mutex
	h  hist
}

// Recorder is one goroutine's histogram.
type Recorder struct {
	h hist
	l *Latencies
}

const (
	subBits    = 6
	subBuckets = 1 << subBits
	histSize   = (64 - subBits + 1) * subBuckets
)

type hist struct {
	counts [histSize]int64
	n      int64
	max    time.Duration
}

func bucketOf(us uint64) int {
	if us < subBuckets {
		return int(us)
	}
	e := bits.Len64(us) - subBits - 1 // us>>e is in [64, 128)
	return (e+1)*subBuckets + int(us>>e) - subBuckets
}

// lowerBound is the smallest microsecond value of bucket i.
func lowerBound(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	e := i/subBuckets - 1
	return uint64(i%subBuckets+subBuckets) << e
}

func (h *hist) add(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	h.counts[bucketOf(us)]++
	h.n++
	h.max = max(h.max, d)
}

// Recorder returns a new per-goroutine histogram.
func (l *Latencies) Recorder() *Recorder { return &Recorder{l: l} }

// Add records one sample.
func (r *Recorder) Add(d time.Duration) { r.h.add(d) }

// Flush hands the samples to the collection.
func (r *Recorder) Flush() {
	r.l.mu.Lock()
	for i, c := range r.h.counts {
		r.l.h.counts[i] += c
	}
	r.l.h.n += r.h.n
	r.l.h.max = max(r.l.h.max, r.h.max)
	r.l.mu.Unlock()
	r.h = hist{}
}

// Percentiles returns p50, p99 and max (0 without samples). A percentile is the
// upper bound of the bucket holding that rank, so it never understates.
func (l *Latencies) Percentiles() (p50, p99, maxD time.Duration, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h.n == 0 {
		return 0, 0, 0, 0
	}
	at := func(q float64) time.Duration {
		rank := min(int64(q*float64(l.h.n)), l.h.n-1)
		var seen int64
		for i, c := range l.h.counts {
			seen += c
			if seen > rank {
				return min(time.Duration(lowerBound(i+1))*time.Microsecond, l.h.max)
			}
		}
		return l.h.max
	}
	return at(0.50), at(0.99), l.h.max, int(l.h.n)
}
