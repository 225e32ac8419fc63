package ratelimit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/milequest/pushercm/internal/pushertest"
)

// TestRunSweepsAndStops: the owner-started sweepers delete expired keys and
// return when their context ends, leaving no goroutine behind.
func TestRunSweepsAndStops(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := NewManualClock(t0)
	set, err := NewSet(DefaultConfig(), WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	user := set.Limiter(LimiterUser)
	for _, k := range []string{"a", "b", "c"} {
		if _, err := user.Allow(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	mem := user.Store().(*MemoryStore)
	if mem.Len() != 3 {
		t.Fatalf("Len %d, want 3", mem.Len())
	}
	clock.Advance(DefaultWindowSize) // every key back to fresh

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { set.Run(ctx, time.Millisecond); done <- struct{}{} }()
	go func() { mem.Run(ctx, clock, time.Millisecond); done <- struct{}{} }()
	pushertest.Eventually(t, "the sweepers to drop every expired key", func() error {
		if n := mem.Len(); n != 0 {
			return fmt.Errorf("%d keys left", n)
		}
		return nil
	})
	cancel()
	for range 2 {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
}
