package loadgen

import (
	"testing"
	"time"
)

func TestRunRateHoldsTheOfferedRate(t *testing.T) {
	r := RunRate(400, 4, 100*time.Millisecond, time.Second, func(int) error { return nil })
	if r.RPS < 360 || r.RPS > 440 {
		t.Fatalf("RPS %.0f at an offered 400/s", r.RPS)
	}
	if r.Errors != 0 || r.P99 > 10*time.Millisecond {
		t.Fatalf("result %+v", r)
	}
}

func TestRunRateCountsLateCalls(t *testing.T) {
	// Each caller is offered a call every 10 ms and each call takes 20 ms:
	// every call after the first starts behind its turn.
	r := RunRate(400, 4, 50*time.Millisecond, 300*time.Millisecond, func(int) error {
		time.Sleep(20 * time.Millisecond)
		return nil
	})
	if r.Late == 0 || r.RPS > 300 {
		t.Fatalf("late %d, RPS %.0f: the callers could not keep up", r.Late, r.RPS)
	}
	// The closed loop never counts a call late.
	if c := Run(4, 10*time.Millisecond, 50*time.Millisecond, func(int) error { return nil }); c.Late != 0 {
		t.Fatalf("Run counted %d late calls", c.Late)
	}
}
