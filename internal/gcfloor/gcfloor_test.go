package gcfloor

import (
	"context"
	"runtime/debug"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// gogc reads the process's GOGC.
func gogc() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func newTuner(t *testing.T, floor uint64) *Tuner {
	t.Helper()
	base := gogc()
	t.Cleanup(func() { debug.SetGCPercent(base) })
	tu := New(Config{Floor: floor})
	if tu.base <= 0 {
		t.Skip("GOGC is off or below 1 in this process; the tuner does nothing then")
	}
	return tu
}

const mib = 1 << 20

// TestStep: two busy checks in a row put the floor in force, GOGC follows
// the live heap, and two idle checks put the base back.
func TestStep(t *testing.T) {
	tu := newTuner(t, 64*mib)
	base := tu.base
	live := uint64(4 * mib)
	busy := float64(live) * float64(base) / 100 * (DefaultBusyRate + 1) // bytes/s
	idle := busy / 100

	tu.step(busy, live)
	if tu.Engaged() {
		t.Fatal("engaged after one busy check")
	}
	tu.step(busy/5, live) // between the marks: the count starts again
	tu.step(busy, live)
	if tu.Engaged() {
		t.Fatal("engaged after busy checks that were not in a row")
	}
	tu.step(busy, live)
	if !tu.Engaged() || tu.Spells() != 1 {
		t.Fatalf("not engaged after two busy checks in a row (spells %d)", tu.Spells())
	}
	if want := 64*100/4 - 100; gogc() != want {
		t.Fatalf("GOGC %d with a 4 MiB live heap, want %d (goal 64 MiB)", gogc(), want)
	}
	tu.step(busy, 16*mib)
	if want := 64*100/16 - 100; gogc() != max(want, base) {
		t.Fatalf("GOGC %d with a 16 MiB live heap, want %d", gogc(), max(want, base))
	}
	tu.step(busy*10, 48*mib) // past half the floor: the base already gives more
	if gogc() != base {
		t.Fatalf("GOGC %d with a 48 MiB live heap, want the base %d", gogc(), base)
	}
	tu.step(idle, live)
	if !tu.Engaged() {
		t.Fatal("released after one idle check")
	}
	tu.step(idle, live)
	if tu.Engaged() || gogc() != base {
		t.Fatalf("engaged %v, GOGC %d after two idle checks, want released at %d", tu.Engaged(), gogc(), base)
	}
}

// TestCollectors: the series follow the tuner, from 0 before the first
// spell.
func TestCollectors(t *testing.T) {
	tu := newTuner(t, 64*mib)
	cs := tu.Collectors()
	engaged, spells := cs[0], cs[1]
	check := func(when string, e, n float64) {
		t.Helper()
		if got := testutil.ToFloat64(engaged); got != e {
			t.Errorf("%s: pushercm_gc_heap_floor_engaged %v, want %v", when, got, e)
		}
		if got := testutil.ToFloat64(spells); got != n {
			t.Errorf("%s: pushercm_gc_heap_floor_spells_total %v, want %v", when, got, n)
		}
	}
	check("at start", 0, 0)
	live := uint64(4 * mib)
	busy := float64(live) * float64(tu.base) / 100 * (DefaultBusyRate + 1)
	tu.step(busy, live)
	tu.step(busy, live)
	check("engaged", 1, 1)
	tu.step(0, live)
	tu.step(0, live)
	check("released", 0, 1)
	tu.step(busy, live)
	tu.step(busy, live)
	check("engaged again", 1, 2)
}

// TestRun: a goroutine allocating garbage as fast as it can puts the
// floor in force through the real runtime metrics, and stopping puts the
// base GOGC back.
func TestRun(t *testing.T) {
	tu := newTuner(t, 256*mib)
	tu.cfg.Interval = 20 * time.Millisecond
	base := tu.base
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tu.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	stop := make(chan struct{})
	churned := make(chan struct{})
	go func() {
		defer close(churned)
		var keep [][]byte
		for {
			select {
			case <-stop:
				return
			default:
			}
			for range 1000 {
				keep = append(keep[:0], make([]byte, 256))
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !tu.Engaged() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	engaged, during := tu.Engaged(), gogc()
	close(stop)
	<-churned
	if !engaged || during <= base {
		t.Fatalf("engaged %v, GOGC %d while allocating, want engaged above %d", engaged, during, base)
	}
	for tu.Engaged() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if tu.Engaged() {
		t.Fatal("still engaged after the allocation stopped")
	}
	if gogc() != base {
		t.Fatalf("GOGC %d after the allocation stopped, want %d", gogc(), base)
	}
}

// TestOff: a zero floor does nothing.
func TestOff(t *testing.T) {
	base := gogc()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	New(Config{}).Run(ctx)
	if gogc() != base {
		t.Fatalf("GOGC %d, want %d", gogc(), base)
	}
}
