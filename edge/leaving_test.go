package edge

import (
	"context"
	"testing"
	"time"
)

// TestLeavingOrdersJoinsAfterLeaves: a join waits for the leaves of its
// channel under way when it starts, not for other channels' nor for leaves
// that start after it, and gives up when its context ends.
func TestLeavingOrdersJoinsAfterLeaves(t *testing.T) {
	var l leaving
	ctx := context.Background()

	l.wait(ctx, "c") // nothing under way: returns at once

	first := l.add("c")
	other := l.add("d")
	waited := make(chan struct{})
	under := l.under("c") // the join starts here
	go func() {
		under.wait(ctx)
		close(waited)
	}()
	later := l.add("c") // starts after the join: must not hold it up
	select {
	case <-waited:
		t.Fatal("join went ahead of a leave under way")
	case <-time.After(50 * time.Millisecond):
	}
	l.done("d", other)
	select {
	case <-waited:
		t.Fatal("join waited for a leave under way; another channel's ended it")
	case <-time.After(20 * time.Millisecond):
	}
	l.done("c", first)
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("join still waiting after the leave it waited for was reported")
	}

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	l.wait(short, "c") // later is still under way
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("wait outlived its context by %v", d)
	}
	l.done("c", later)
	if len(l.ch) != 0 {
		t.Fatalf("channels left after every leave was reported: %v", l.ch)
	}
}
