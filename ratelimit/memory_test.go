package ratelimit

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentOneKeyNeverExceeds: goroutines hammering one key at a frozen
// instant are admitted exactly the burst, never more; at steady time steps
// the total never exceeds burst + refill.
func TestConcurrentOneKeyNeverExceeds(t *testing.T) {
	clock := NewManualClock(t0)
	lim, err := NewLimiter("user", Policy{Limits: DefaultLimits()}, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, perG = 16, 200
	// Batches of 3 at a frozen instant: exactly 16 fit in a burst of 50.
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range perG / 4 {
				if _, err := lim.AllowN(context.Background(), "batch", 3); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if c := lim.Counters(); c.Allowed != 16 {
		t.Fatalf("batches of 3 admitted %d times from a burst of 50, want 16", c.Allowed)
	}
	if d, _ := lim.Peek(context.Background(), "batch"); d.Remaining != 2 {
		t.Fatalf("%d tokens left, want 2", d.Remaining)
	}

	// Single-event takes: exactly burst admitted at a frozen instant, then
	// exactly one per 100 ms step.
	lim2, _ := NewLimiter("user", Policy{Limits: DefaultLimits()}, WithClock(clock))
	var ok atomic.Int64
	hammer := func() {
		var wg sync.WaitGroup
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perG / 4 {
					if d, _ := lim2.Allow(context.Background(), "hot"); d.Allowed {
						ok.Add(1)
					}
				}
			}()
		}
		wg.Wait()
	}
	hammer()
	if got := ok.Load(); got != 50 {
		t.Fatalf("frozen clock: admitted %d, want exactly the burst 50", got)
	}
	for step := 1; step <= 5; step++ {
		clock.Advance(100 * ms)
		hammer()
		if got := ok.Load(); got != int64(50+step) {
			t.Fatalf("step %d: admitted %d total, want %d", step, got, 50+step)
		}
	}
}

func TestBucketConcurrent(t *testing.T) {
	var b Bucket
	b.Init(10, 10)
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if b.Allow(t0) {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 10 {
		t.Fatalf("admitted %d, want 10", ok.Load())
	}
}

func TestBucket(t *testing.T) {
	var b Bucket
	if !b.Allow(t0) {
		t.Fatal("uninitialised bucket must admit")
	}
	b.Init(10, 10) // Pusher's client-event limit: 10/s per connection
	for i := range 10 {
		if !b.Allow(t0) {
			t.Fatalf("event %d refused within burst", i)
		}
	}
	ok, wait := b.AllowN(t0, 1)
	if ok || wait != 100*ms {
		t.Fatalf("11th: ok=%v wait=%v, want refused, 100ms", ok, wait)
	}
	if b.Allow(t0.Add(100*ms - 1)) {
		t.Fatal("admitted 1ns early")
	}
	if !b.Allow(t0.Add(100 * ms)) {
		t.Fatal("refused on time")
	}
	if got := b.Tokens(t0.Add(time.Hour)); got != 10 {
		t.Fatalf("tokens after an hour = %d, want 10", got)
	}
	if ok, wait := b.AllowN(t0, 11); ok || wait != -1 {
		t.Fatalf("n above capacity: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := b.AllowN(t0.Add(time.Hour), 10); !ok {
		t.Fatal("full batch refused after refill")
	}
	if testing.AllocsPerRun(100, func() { b.Allow(t0) }) != 0 {
		t.Fatal("Bucket.Allow allocates")
	}
}

func TestKeyedBucket(t *testing.T) {
	clock := NewManualClock(t0)
	kb, err := NewKeyedBucket(2, 3, clock) // 2 new connections/s per IP, burst 3
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if !kb.Allow("10.0.0.1") {
			t.Fatalf("connection %d refused within burst", i)
		}
	}
	if d := kb.AllowAt("10.0.0.1", clock.Now()); d.Allowed || d.RetryAfter != 500*ms {
		t.Fatalf("4th: %+v, want refused with 500ms", d)
	}
	if !kb.Allow("10.0.0.2") {
		t.Fatal("another IP affected")
	}
	clock.Advance(500 * ms)
	if !kb.Allow("10.0.0.1") {
		t.Fatal("refused after refill")
	}
	clock.Advance(2 * time.Second)
	if n := kb.Sweep(clock.Now()); n != 2 || kb.Len() != 0 {
		t.Fatalf("sweep removed %d, Len %d; want 2, 0", n, kb.Len())
	}
	if _, err := NewKeyedBucket(0, 3, nil); err == nil {
		t.Fatal("zero rate accepted")
	}
}

// TestExpiryExact: a key is deleted exactly when its state equals a fresh
// key's, and never before.
func TestExpiryExact(t *testing.T) {
	s := NewMemoryStore(WithShards(1))
	r := mustRule(t, Limits{MessagesPerSecond: 10, MessagesPerMinute: 600, BurstLimit: 50, WindowSize: 2 * time.Second})
	take(t, s, "u", 50, t0, r) // bucket full again at t0+5s, window ends t0+2s
	if n := s.Sweep(t0.Add(5*time.Second - 1)); n != 0 {
		t.Fatalf("swept %d keys before expiry", n)
	}
	if n := s.Sweep(t0.Add(5 * time.Second)); n != 1 {
		t.Fatalf("swept %d keys at expiry, want 1", n)
	}
}

// TestBoundedUnderMillionsOfKeys inserts millions of distinct keys (fewer
// under -race) while a fake clock advances, and checks that live keys and the
// heap stay bounded by the keys of one expiry horizon, then return to near
// zero once everything has expired.
func TestBoundedUnderMillionsOfKeys(t *testing.T) {
	total := 3_000_000
	if raceEnabled || testing.Short() {
		total = 300_000
	}
	const step = 10 * time.Microsecond // one new key every 10µs of fake time
	// Window 1s, burst refill 0.1s: a key expires 1s after its event; shards
	// sweep themselves every second; so at most ~2s worth of keys are live.
	r := mustRule(t, Limits{MessagesPerSecond: 10, MessagesPerMinute: 600, BurstLimit: 50, WindowSize: time.Second})
	s := NewMemoryStore(WithSweepInterval(time.Second))
	bound := int(2*time.Second/step) + 256*64 // horizon + sweep jitter across shards
	heapBefore := heapInUse()

	now := t0
	buf := make([]byte, 0, 32)
	maxLive, maxHeap := 0, uint64(0)
	ctx := context.Background()
	for i := range total {
		buf = strconv.AppendInt(append(buf[:0], "user-"...), int64(i), 10)
		if d, _ := s.Take(ctx, string(buf), 1, now, r); !d.Allowed {
			t.Fatalf("fresh key %d refused", i)
		}
		now = now.Add(step)
		if i%(total/10) == total/10-1 {
			maxLive = max(maxLive, s.Len())
			maxHeap = max(maxHeap, heapInUse())
		}
	}
	if maxLive > bound {
		t.Fatalf("live keys reached %d, bound %d (inserted %d)", maxLive, bound, total)
	}
	// ~150 B per live key is generous for a 24-byte entry plus key and map slot.
	heapBound := heapBefore + uint64(bound)*150
	if maxHeap > heapBound {
		t.Fatalf("heap reached %d MiB, bound %d MiB", maxHeap>>20, heapBound>>20)
	}
	now = now.Add(2 * time.Second)
	s.Sweep(now)
	if n := s.Len(); n != 0 {
		t.Fatalf("%d keys left after every key expired", n)
	}
	if after := heapInUse(); after > heapBefore+8<<20 {
		t.Fatalf("heap %d MiB after full expiry, started at %d MiB: maps not shrunk", after>>20, heapBefore>>20)
	}
	t.Logf("inserted %d keys: max live %d (bound %d), max heap %d MiB", total, maxLive, bound, maxHeap>>20)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestMaxKeysCap(t *testing.T) {
	s := NewMemoryStore(WithShards(4), withMaxKeys(400))
	r := mustRule(t, DefaultLimits())
	for i := range 10_000 {
		take(t, s, "k"+strconv.Itoa(i), 1, t0, r)
	}
	if n := s.Len(); n > 400 {
		t.Fatalf("Len %d above cap 400", n)
	}
}

func TestAllowDoesNotAllocate(t *testing.T) {
	lim, _ := NewLimiter("user", Policy{Limits: DefaultLimits()}, WithClock(NewManualClock(t0)))
	ctx := context.Background()
	if _, err := lim.Allow(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	// The error was checked above; inside the measured closures it is dropped so
	// that only the call itself is counted.
	if a := testing.AllocsPerRun(1000, func() { _, _ = lim.Allow(ctx, "k") }); a != 0 {
		t.Fatalf("Allow allocates %v per call", a)
	}
	if _, err := lim.Peek(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(1000, func() { _, _ = lim.Peek(ctx, "k") }); a != 0 {
		t.Fatalf("Peek allocates %v per call", a)
	}
}
