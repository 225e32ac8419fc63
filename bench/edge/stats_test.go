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

// TestSpans: each request's first and last delivery, merged across recorders,
// summarized over requests.
func TestSpans(t *testing.T) {
	s := &Spans{}
	a, b := s.Recorder(), s.Recorder()
	const ms = int64(time.Millisecond)
	for i := range int64(100) {
		ts := i * 10 * ms
		// Request i: first read i/10 ms after it on a, last 1+i/10 ms after it on b.
		a.Add(ts, ts+i*ms/10)
		a.Add(ts, ts+i*ms/10+ms/2)
		b.Add(ts, ts+i*ms/10+ms)
		b.Add(ts, ts+i*ms/10+ms/4)
	}
	a.Flush()
	b.Flush()
	got := s.Summary()
	want := SpanSummary{Requests: 100,
		FirstP50: 5 * time.Millisecond, FirstP99: 9900 * time.Microsecond,
		LastP50: 6 * time.Millisecond, LastP99: 10900 * time.Microsecond}
	if got != want {
		t.Fatalf("summary %+v, want %+v", got, want)
	}
	if (&Spans{}).Summary() != (SpanSummary{}) {
		t.Fatal("empty spans: want a zero summary")
	}
}
