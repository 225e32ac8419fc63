package idempotencytest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/milequest/pushercm/delivery"
)

// Run checks the store returned by newStore; each subtest gets a fresh store with a
// window of at least a minute (expiry is implementation-specific and tested there).
// Keys are unique per run, so a shared backend (one Redis) may be reused.
func Run(t *testing.T, newStore func(t *testing.T) delivery.IdempotencyStore) {
	prefix := fmt.Sprintf("conformance-%p-", t)
	key := func(name string) string { return prefix + t.Name() + "-" + name }
	ctx := context.Background()

	t.Run("first reserve wins, repeat is refused", func(t *testing.T) {
		s := newStore(t)
		k := key("a")
		if ok, err := s.Reserve(ctx, k); err != nil || !ok {
			t.Fatalf("first Reserve = %v, %v; want true", ok, err)
		}
		if ok, err := s.Reserve(ctx, k); err != nil || ok {
			t.Fatalf("second Reserve = %v, %v; want false", ok, err)
		}
	})
	t.Run("keys are independent", func(t *testing.T) {
		s := newStore(t)
		for _, k := range []string{key("x"), key("y"), key("X")} {
			if ok, err := s.Reserve(ctx, k); err != nil || !ok {
				t.Fatalf("Reserve(%q) = %v, %v", k, ok, err)
			}
		}
	})
	t.Run("release makes the key available again", func(t *testing.T) {
		s := newStore(t)
		k := key("r")
		if ok, _ := s.Reserve(ctx, k); !ok {
			t.Fatal("first Reserve refused")
		}
		if err := s.Release(ctx, k); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Reserve(ctx, k); err != nil || !ok {
			t.Fatalf("Reserve after Release = %v, %v", ok, err)
		}
	})
	t.Run("release of an unknown key is not an error", func(t *testing.T) {
		s := newStore(t)
		if err := s.Release(ctx, key("never")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("concurrent reserves: exactly one winner", func(t *testing.T) {
		s := newStore(t)
		k := key("c")
		var wins atomic.Int64
		var wg sync.WaitGroup
		for i := 0; i < 64; i++ {
			wg.Go(func() {
				ok, err := s.Reserve(ctx, k)
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d winners, want 1", wins.Load())
		}
	})
}
