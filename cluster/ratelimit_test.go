package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/delivery/idempotencytest"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/redistest"
	"github.com/milequest/pushercm/ratelimit"
)

func rule(t *testing.T, l ratelimit.Limits) *ratelimit.Rule {
	t.Helper()
	r, err := ratelimit.NewRule(l)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRateStoreDecidesLikeTheMemoryStore takes the same sequence from both
// stores at the same moments and compares every figure a caller sees.
func TestRateStoreDecidesLikeTheMemoryStore(t *testing.T) {
	addr := redistest.Addr(t)
	cfg := Config{Prefix: redistest.Prefix(t)}
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		limits ratelimit.Limits
		takes  []int
	}{
		// The bucket binds: 10/s, burst 5.
		{"bucket", ratelimit.Limits{MessagesPerSecond: 10, BurstLimit: 5, MessagesPerMinute: 600, WindowSize: time.Minute}, []int{1, 1, 1, 1, 1, 1, 2}},
		// The window binds: 3 per minute under a generous bucket.
		{"window", ratelimit.Limits{MessagesPerSecond: 100, BurstLimit: 50, MessagesPerMinute: 3, WindowSize: time.Minute}, []int{2, 1, 1}},
		{"batch", ratelimit.Limits{MessagesPerSecond: 1, BurstLimit: 4, MessagesPerMinute: 600, WindowSize: time.Minute}, []int{3, 2, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rule(t, tc.limits)
			mem := ratelimit.NewMemoryStore()
			rs := NewRateStore(newClient(t, addr), cfg, "user", ratelimit.NewMemoryStore())
			var slowest time.Duration
			for i, n := range tc.takes {
				now := time.Now()
				want, err := mem.Take(ctx, tc.name, n, now, r)
				if err != nil {
					t.Fatal(err)
				}
				got, err := rs.Take(ctx, tc.name, n, now, r)
				slowest = max(slowest, time.Since(now))
				if err != nil {
					t.Fatal(err)
				}
				if got.Allowed != want.Allowed || got.Limit != want.Limit || got.Remaining != want.Remaining {
					t.Fatalf("take %d of %d: redis %+v, memory %+v", i, n, got, want)
				}
				// Redis' clock runs beside ours: each take's moment on it is off
				// by at most that call's duration (long on a loaded machine), and
				// the bucket carries the offsets of the earlier takes, so the
				// figures agree within twice the slowest call so far.
				slack := 2*slowest + 10*time.Millisecond
				if d := got.RetryAfter - want.RetryAfter; d > slack || d < -slack {
					t.Fatalf("take %d: RetryAfter redis %s, memory %s", i, got.RetryAfter, want.RetryAfter)
				}
				if d := got.ResetTime.Sub(want.ResetTime); d > slack || d < -slack {
					t.Fatalf("take %d: ResetTime redis %s, memory %s", i, got.ResetTime, want.ResetTime)
				}
			}
			peek, err := rs.Peek(ctx, "never-seen", time.Now(), r)
			if err != nil || !peek.Allowed || peek.Remaining != min(tc.limits.BurstLimit, tc.limits.MessagesPerMinute) {
				t.Fatalf("Peek of a fresh key = %+v, %v", peek, err)
			}
			if _, err := rs.Take(ctx, "k", tc.limits.BurstLimit+1, time.Now(), r); !errors.Is(err, ratelimit.ErrExceedsCapacity) {
				t.Fatalf("take over the burst: %v", err)
			}
		})
	}
}

func TestRateStoreIsSharedByNodesAndFiltersRefusals(t *testing.T) {
	addr := redistest.Addr(t)
	cfg := Config{Prefix: redistest.Prefix(t)}
	ctx := context.Background()
	// A token every 10 s: the 11th take is refused however slowly the machine
	// makes the 11 calls.
	r := rule(t, ratelimit.Limits{MessagesPerSecond: 0.1, BurstLimit: 10, MessagesPerMinute: 600, WindowSize: time.Minute})
	var nodes [3]*RateStore
	for i := range nodes {
		nodes[i] = NewRateStore(newClient(t, addr), cfg, "user", ratelimit.NewMemoryStore())
	}
	allowed := 0
	for i := range 11 {
		d, err := nodes[i%3].Take(ctx, "alice", 1, time.Now(), r)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		} else if i != 10 || d.RetryAfter <= 0 || d.Limit != 10 {
			t.Fatalf("take %d refused: %+v", i, d)
		}
	}
	if allowed != 10 {
		t.Fatalf("%d of 11 admitted over three nodes, want 10", allowed)
	}
	// The node that saw the refusal answers the next ones itself.
	n := nodes[10%3]
	d, err := n.Take(ctx, "alice", 1, time.Now(), r)
	if err != nil || d.Allowed || d.RetryAfter <= 0 {
		t.Fatalf("filtered take = %+v, %v", d, err)
	}
	if s := n.Stats(); s.Filtered != 1 || s.Degraded {
		t.Fatalf("stats %+v", s)
	}
}

func TestRateStoreFallsBackToTheNodesOwnLimits(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	r := rule(t, ratelimit.Limits{MessagesPerSecond: 1, BurstLimit: 2, MessagesPerMinute: 600, WindowSize: time.Minute})
	rs := NewRateStore(newClient(t, srv.Addr), Config{Prefix: "p"}, "user", ratelimit.NewMemoryStore())
	if d, err := rs.Take(ctx, "bob", 1, time.Now(), r); err != nil || !d.Allowed {
		t.Fatalf("take with Redis up = %+v, %v", d, err)
	}
	srv.Stop()
	// The node's own bucket: fresh, so two pass and the third is refused.
	var got []bool
	for range 3 {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		d, err := rs.Take(cctx, "bob", 1, time.Now(), r)
		cancel()
		if err != nil {
			t.Fatalf("a Redis outage must not fail the check: %v", err)
		}
		got = append(got, d.Allowed)
	}
	if !got[0] || !got[1] || got[2] {
		t.Fatalf("fallback decisions %v, want the node's own burst of 2", got)
	}
	if s := rs.Stats(); !s.Degraded || s.Fallbacks != 3 {
		t.Fatalf("stats %+v", s)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	pushertest.Eventually(t, "Redis again", func() bool {
		_, err := rs.Take(ctx, "carol", 1, time.Now(), r)
		return err == nil && !rs.Stats().Degraded
	})
}

// TestRateStoreSharedCallDecidesInOrder: takes decided in one script call get,
// each, what the memory store answers to the same takes one after the other at
// one instant.
func TestRateStoreSharedCallDecidesInOrder(t *testing.T) {
	addr := redistest.Addr(t)
	cfg := Config{Prefix: redistest.Prefix(t)}
	ctx := context.Background()
	type shareCase struct {
		name   string
		limits ratelimit.Limits
		takes  []int
	}
	cases := []shareCase{
		{"bucket", ratelimit.Limits{MessagesPerSecond: 10, BurstLimit: 5, MessagesPerMinute: 600, WindowSize: time.Minute}, []int{1, 1, 1, 1, 1, 1, 2, 1}},
		{"window", ratelimit.Limits{MessagesPerSecond: 100, BurstLimit: 50, MessagesPerMinute: 3, WindowSize: time.Minute}, []int{2, 1, 1, 1}},
		{"batch", ratelimit.Limits{MessagesPerSecond: 1, BurstLimit: 4, MessagesPerMinute: 600, WindowSize: time.Minute}, []int{3, 2, 1, 1}},
	}
	// Random rules and takes: the figures each take gets are derived in Go
	// from the state the script returns (ruleArgs.apply), step for step the
	// script's own loop.
	rng := rand.New(rand.NewPCG(16, 16))
	for i := range 40 {
		burst := 1 + rng.IntN(8)
		// The window binds in about half of them, the bucket in the others.
		l := ratelimit.Limits{MessagesPerSecond: float64(1 + rng.IntN(50)), BurstLimit: burst,
			MessagesPerMinute: 1 + rng.IntN(12), WindowSize: time.Minute}
		if rng.IntN(2) == 0 {
			l.MessagesPerMinute = 1000
		}
		takes := make([]int, 1+rng.IntN(12))
		for j := range takes {
			takes[j] = min(1+rng.IntN(min(burst, 3)), l.MessagesPerMinute)
		}
		cases = append(cases, shareCase{fmt.Sprintf("random-%d", i), l, takes})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rule(t, tc.limits)
			rs := NewRateStore(newClient(t, addr), cfg, "user", ratelimit.NewMemoryStore())
			now := time.Now()
			batch := make([]*pendingTake, len(tc.takes))
			for i, n := range tc.takes {
				batch[i] = &pendingTake{n: n}
			}
			err := rs.runMany(ctx, tc.name, batch, r)
			took := time.Since(now)
			if err != nil {
				t.Fatal(err)
			}
			mem := ratelimit.NewMemoryStore()
			slack := took + 10*time.Millisecond
			for i, n := range tc.takes {
				want, err := mem.Take(ctx, tc.name, n, now, r)
				if err != nil {
					t.Fatal(err)
				}
				g := batch[i].d
				if g.Allowed != want.Allowed || g.Limit != want.Limit || g.Remaining != want.Remaining {
					t.Fatalf("take %d of %d: redis %+v, memory %+v", i, n, g, want)
				}
				if d := g.RetryAfter - want.RetryAfter; d > slack || d < -slack {
					t.Fatalf("take %d: RetryAfter redis %s, memory %s", i, g.RetryAfter, want.RetryAfter)
				}
				if d := g.ResetTime.Sub(want.ResetTime); d > slack || d < -slack {
					t.Fatalf("take %d: ResetTime redis %s, memory %s", i, g.ResetTime, want.ResetTime)
				}
			}
			// The call left the state a single take continues from.
			want, _ := mem.Take(ctx, tc.name, 1, now, r)
			if g, err := rs.Take(ctx, tc.name, 1, time.Now(), r); err != nil || g.Allowed != want.Allowed || g.Remaining != want.Remaining {
				t.Fatalf("take after the shared call: redis %+v, %v; memory %+v", g, err, want)
			}
		})
	}
}

// TestRateStoreConcurrentTakesOfOneKey: many callers of one key at once, over
// two nodes, admit exactly the burst between them, each admitted take with its
// own remaining count (with more callers per node than one call takes).
func TestRateStoreConcurrentTakesOfOneKey(t *testing.T) {
	addr := redistest.Addr(t)
	cfg := Config{Prefix: redistest.Prefix(t)}
	r := rule(t, ratelimit.Limits{MessagesPerSecond: 1, BurstLimit: 400, MessagesPerMinute: 6000, WindowSize: time.Minute})
	nodes := [2]*RateStore{
		NewRateStore(newClient(t, addr), cfg, "principal", ratelimit.NewMemoryStore()),
		NewRateStore(newClient(t, addr), cfg, "principal", ratelimit.NewMemoryStore()),
	}
	const callers = 2*maxShared + 100
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		remaining = map[int]int{}
		refused   int
	)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := nodes[i%2].Take(context.Background(), "svc", 1, time.Now(), r)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if d.Allowed {
				remaining[d.Remaining]++
			} else {
				refused++
			}
		}()
	}
	wg.Wait()
	if len(remaining) != 400 || refused != callers-400 {
		t.Fatalf("admitted with remaining %v, %d refused; want each of 0..399 once and %d refused", remaining, refused, callers-400)
	}
	for rem, n := range remaining {
		if rem < 0 || rem >= 400 || n != 1 {
			t.Fatalf("admitted with remaining %v", remaining)
		}
	}
	for _, n := range nodes {
		if s := n.Stats(); s.Fallbacks != 0 || s.Degraded {
			t.Fatalf("stats %+v", s)
		}
	}
	t.Logf("takes that shared a call: %d and %d of %d", nodes[0].Stats().Shared, nodes[1].Stats().Shared, callers/2)
}

// TestRateStoreSplitsLongQueues: more takes waiting than one call takes go in
// calls one after the other, still in arrival order.
func TestRateStoreSplitsLongQueues(t *testing.T) {
	addr := redistest.Addr(t)
	r := rule(t, ratelimit.Limits{MessagesPerSecond: 1, BurstLimit: 1000, MessagesPerMinute: 6000, WindowSize: time.Minute})
	rs := NewRateStore(newClient(t, addr), Config{Prefix: redistest.Prefix(t)}, "principal", ratelimit.NewMemoryStore())
	waiting := make([]*pendingTake, 2*maxShared+10)
	for i := range waiting {
		waiting[i] = &pendingTake{n: 1, done: make(chan struct{})}
	}
	rs.qmu.Lock()
	rs.queues["svc"] = &takeQueue{r: r, waiting: waiting}
	rs.qmu.Unlock()
	rs.next("svc")
	for i, p := range waiting {
		<-p.done
		if p.err != nil || !p.d.Allowed || p.d.Remaining != 1000-1-i {
			t.Fatalf("take %d: %+v, %v; want admitted with %d remaining", i, p.d, p.err, 1000-1-i)
		}
	}
	rs.qmu.Lock()
	_, busy := rs.queues["svc"]
	rs.qmu.Unlock()
	if busy {
		t.Fatal("the key is still marked in flight")
	}
}

func TestIdempotencyStore(t *testing.T) {
	addr := redistest.Addr(t)
	cfg := Config{Prefix: redistest.Prefix(t)}
	idempotencytest.Run(t, func(t *testing.T) delivery.IdempotencyStore {
		return NewIdempotencyStore(newClient(t, addr), cfg, time.Minute)
	})
	t.Run("a reservation is seen by every node and ends with the window", func(t *testing.T) {
		ctx := context.Background()
		a := NewIdempotencyStore(newClient(t, addr), cfg, 300*time.Millisecond)
		b := NewIdempotencyStore(newClient(t, addr), cfg, 300*time.Millisecond)
		if ok := must(a.Reserve(ctx, "evt-1")); !ok {
			t.Fatal("first reserve refused")
		}
		if ok := must(b.Reserve(ctx, "evt-1")); ok {
			t.Fatal("another node reserved the same id")
		}
		pushertest.Eventually(t, "window end", func() bool { return must(b.Reserve(ctx, "evt-1")) })
	})
	t.Run("unreachable Redis is an error, never a reservation", func(t *testing.T) {
		srv := redistest.Start(t)
		s := NewIdempotencyStore(newClient(t, srv.Addr), cfg, time.Minute)
		srv.Stop()
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if ok, err := s.Reserve(cctx, "x"); ok || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Reserve = %v, %v", ok, err)
		}
	})
}

// A take whose caller left (its context ended) while it waited for a shared
// call is not made: it was answered by the node's own limits.
func TestRateStoreSkipsTakesWhoseCallerLeft(t *testing.T) {
	addr := redistest.Addr(t)
	r := rule(t, ratelimit.Limits{MessagesPerSecond: 1, BurstLimit: 1000, MessagesPerMinute: 6000, WindowSize: time.Minute})
	rs := NewRateStore(newClient(t, addr), Config{Prefix: redistest.Prefix(t)}, "principal", ratelimit.NewMemoryStore())
	waiting := []*pendingTake{
		{n: 1, done: make(chan struct{})},
		{n: 5, done: make(chan struct{})},
		{n: 1, done: make(chan struct{})},
	}
	waiting[1].left.Store(true)
	rs.qmu.Lock()
	rs.queues["svc"] = &takeQueue{r: r, waiting: waiting}
	rs.qmu.Unlock()
	rs.next("svc")
	for _, i := range []int{0, 2} {
		<-waiting[i].done
	}
	if d := waiting[2].d; d.Remaining != 998 {
		t.Fatalf("the take after the one that left: %+v, want 998 remaining (the 5 events not taken)", d)
	}
	select {
	case <-waiting[1].done:
		t.Fatal("the take whose caller left was answered")
	default:
	}
}

// TestRateStoreWritesExactTimes: the script hands its microsecond times to
// HSET as Lua numbers; Redis must store every digit (a 14-digit %g would
// round them and shift the bucket).
func TestRateStoreWritesExactTimes(t *testing.T) {
	addr := redistest.Addr(t)
	cfg := Config{Prefix: redistest.Prefix(t)}
	client := newClient(t, addr)
	// 7 µs per event: tat = now + 7 after the first take, an odd microsecond
	// count that rounding to 14 significant digits would not keep.
	r := rule(t, ratelimit.Limits{MessagesPerSecond: 1e6 / 7, BurstLimit: 1, MessagesPerMinute: 600, WindowSize: time.Minute})
	rs := NewRateStore(client, cfg, "user", ratelimit.NewMemoryStore())
	ctx := context.Background()
	d, err := rs.Take(ctx, "alice", 1, time.Now(), r)
	if err != nil || !d.Allowed {
		t.Fatalf("take: %+v, %v", d, err)
	}
	key := keyspace{cfg.WithDefaults().Prefix}.rate("user", "alice")
	vals, err := client.Do(ctx, client.B().Hmget().Key(key).Field("t", "e", "c", "x").Build()).ToArray()
	if err != nil || len(vals) != 4 {
		t.Fatalf("HMGET: %v, %v", vals, err)
	}
	var got [4]int64
	for i, v := range vals {
		s, err := v.ToString()
		if err != nil {
			t.Fatalf("field %d: %v", i, err)
		}
		if got[i], err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("field %d = %q: not an integer (%v)", i, s, err)
		}
	}
	tat, winEnd, count, expiry := got[0], got[1], got[2], got[3]
	if count != 1 || winEnd-tat != int64(time.Minute/time.Microsecond)-micros(r.Interval()) {
		t.Fatalf("t %d, e %d, c %d: want one event, tat one interval after the take and the window a minute after it", tat, winEnd, count)
	}
	if want := winEnd/1000 + 1 + 1000; expiry != want {
		t.Fatalf("x = %d, want %d", expiry, want)
	}
	pexp, err := client.Do(ctx, client.B().Pexpiretime().Key(key).Build()).AsInt64()
	if err != nil || pexp != expiry {
		t.Fatalf("PEXPIRETIME = %d, %v; want %d", pexp, err, expiry)
	}
}

// TestRateStoreTimeoutBoundsEveryCheck: with SetTimeout, a Redis that does
// not answer costs each check at most the timeout (then the node's own limits
// decide), whether it made its own call or waited for one in flight on its key.
func TestRateStoreTimeoutBoundsEveryCheck(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	r := rule(t, ratelimit.Limits{MessagesPerSecond: 1, BurstLimit: 100, MessagesPerMinute: 6000, WindowSize: time.Minute})
	rs := NewRateStore(newClient(t, srv.Addr), Config{Prefix: "p"}, "principal", ratelimit.NewMemoryStore())
	const timeout = 300 * time.Millisecond
	rs.SetTimeout(timeout)
	if d, err := rs.Take(ctx, "svc", 1, time.Now(), r); err != nil || !d.Allowed {
		t.Fatalf("take with Redis up = %+v, %v", d, err)
	}
	// A script that keeps Redis busy for seconds (its own client, not
	// waited for: the server is killed when the test ends).
	busy := newClient(t, srv.Addr)
	go busy.Do(context.Background(), busy.B().Eval().Script("local i = 0 while i < 3e8 do i = i + 1 end return i").Numkeys(0).Build())
	time.Sleep(100 * time.Millisecond)

	const takes = 6
	var wg sync.WaitGroup
	took := make([]time.Duration, takes)
	for i := range takes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			if _, err := rs.Take(ctx, "svc", 1, start, r); err != nil {
				t.Errorf("take %d: %v", i, err)
			}
			took[i] = time.Since(start)
		}()
		if i == 0 {
			time.Sleep(20 * time.Millisecond) // the first is in flight; the others wait for it
		}
	}
	wg.Wait()
	for i, d := range took {
		if d < timeout-10*time.Millisecond || d > timeout+200*time.Millisecond {
			t.Errorf("take %d took %s, want about %s", i, d, timeout)
		}
	}
	if s := rs.Stats(); s.Fallbacks != takes || !s.Degraded || s.Shared != takes-1 {
		t.Fatalf("stats %+v, want %d fallbacks, %d of them after waiting", s, takes, takes-1)
	}
}
