package edgebench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestPercentilesMatchExact: the histogram's percentiles are at most 1.6 % (plus
// the microsecond resolution) above the exact ones, never below, and the maximum is
// exact.
func TestPercentilesMatchExact(t *testing.T) {
	l := &Latencies{}
	recs := []*Recorder{l.Recorder(), l.Recorder()}
	var all []time.Duration
	for i := range 200000 {
		d := time.Duration(rand.ExpFloat64() * float64(20*time.Millisecond))
		if i%1000 == 0 {
			d = time.Duration(rand.IntN(50)) * time.Microsecond // the smallest buckets too
		}
		all = append(all, d)
		recs[i%2].Add(d)
	}
	for _, r := range recs {
		r.Flush()
	}
	slices.Sort(all)
	p50, p99, mx, n := l.Percentiles()
	if n != len(all) || mx != all[len(all)-1] {
		t.Fatalf("n %d max %v, want %d %v", n, mx, len(all), all[len(all)-1])
	}
	for _, c := range []struct {
		got time.Duration
		q   float64
	}{{p50, 0.50}, {p99, 0.99}} {
		want := all[int(c.q*float64(len(all)))]
		if diff := float64(c.got-want) / float64(want); c.got < want || diff > 0.016+1e-3 {
			t.Errorf("p%.0f = %v, exact %v", c.q*100, c.got, want)
		}
	}
	for us := uint64(0); us < 1<<20; us += 1 + us/7 {
		b := bucketOf(us)
		if lo := lowerBound(b); lo > us || bucketOf(lo) != b {
			t.Fatalf("bucket %d of %d has lower bound %d", b, us, lo)
		}
	}
}
