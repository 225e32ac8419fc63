package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"time"
)

// entry is the whole state of one key: 24 bytes, no pointers, stored by value
// so millions of keys cost the garbage collector nothing to scan.
type entry struct {
	// tat is the GCRA "theoretical arrival time" (unix ns): the bucket holds
	// floor((now + tau - tat) / interval) tokens and is full once tat <= now.
	tat int64
	// winEnd is when the current window ends (unix ns); count events were
	// admitted in it. A window with now >= winEnd is over.
	winEnd int64
	count  int64
}

// expiry is when the entry becomes indistinguishable from a key never seen:
// bucket full and window over. Deleting it then changes no decision.
func (e *entry) expiry() int64 { return max(e.tat, e.winEnd) }

// decide computes the decision for n events at now and, when consume is set
// and the events are admitted, records them in e. Callers ensured 1 <= n <=
// min(burst, perWindow).
func decide(e *entry, r *Rule, n, now int64, consume bool, d *Decision) {
	tat := max(e.tat, now)
	// Whole tokens in the bucket, sparing the division (the costliest
	// instruction here) when the bucket is full or has less than one token.
	var avail int64
	switch x := now + r.tau - tat; {
	case x >= r.tau:
		avail = r.burst
	case x < r.interval:
		avail = 0 // also when the key's limits shrank since tat was set
	default:
		avail = x / r.interval
	}
	var bucketWait int64
	if n > avail {
		bucketWait = tat + n*r.interval - r.tau - now
	}

	winEnd, count := e.winEnd, e.count
	winRem := int64(-1) // -1: the rule has no window
	var windowWait int64
	if r.window > 0 {
		if now >= winEnd {
			// The window a take at now would open.
			winEnd, count = now+r.window, 0
		}
		winRem = max(r.perWindow-count, 0)
		if n > winRem {
			windowWait = winEnd - now
		}
	}

	allowed := bucketWait == 0 && windowWait == 0
	if allowed && consume {
		tat += n * r.interval
		e.tat = tat
		avail -= n
		if winRem >= 0 {
			count += n
			winRem -= n
			e.winEnd, e.count = winEnd, count
		}
	}

	remaining := avail
	if winRem >= 0 && winRem < remaining {
		remaining = winRem
	}
	// Decision has too many fields to live in registers, so it is filled in
	// place through a pointer: returning it by value through several calls
	// made the compiler copy it with 16-byte moves over 8-byte stores, and the
	// resulting store-forwarding stalls cost more than the arithmetic.
	var bucketBinding bool
	var wait, reset int64
	switch {
	case !allowed:
		wait = max(bucketWait, windowWait)
		bucketBinding = winRem < 0 || bucketWait > windowWait
		reset = now + wait
	case winRem < 0 || avail < winRem:
		bucketBinding = true
		reset = now // a full bucket has nothing pending
		if avail < r.burst {
			reset = tat - r.tau + (avail+1)*r.interval
		}
	default:
		reset = winEnd
	}
	limit := r.perWindow
	if bucketBinding {
		limit = r.burst
	}
	d.Allowed = allowed
	d.Limit = int(limit)
	d.Remaining = int(remaining)
	d.RetryAfter = time.Duration(wait)
	d.ResetTime = time.Unix(0, reset).UTC()
}

// checkCount rejects batches the rule can never admit.
func checkCount(r *Rule, n int) error {
	if n < 1 {
		return fmt.Errorf("%w: got %d", ErrInvalidCount, n)
	}
	if int64(n) > r.burst || (r.window > 0 && int64(n) > r.perWindow) {
		return fmt.Errorf("%w: %d events, burst %d, per window %d", ErrExceedsCapacity, n, r.burst, r.perWindow)
	}
	return nil
}

// MemoryStore is the in-process Store: a fixed number of mutex-guarded hash
// table shards. Idle keys are deleted once their state equals a fresh key's (so
// expiry never changes a decision); each shard sweeps itself when touched
// after its sweep interval, and Sweep lets an owner reclaim shards nobody
// touches. Sweeps rebuild a shard's table to fit its live keys.
type MemoryStore struct {
	shards     []shard
	mask       uint64
	seed       maphash.Seed
	sweepEvery int64
	maxPerShrd int
}

type shard struct {
	mu        sync.Mutex
	t         table
	nextSweep int64
	_         [16]byte // keep neighbouring shards' locks off this cache line
}

// MemoryOption configures a MemoryStore.
type MemoryOption func(*MemoryStore)

// WithShards sets the shard count, rounded up to a power of two (default 256).
// More shards mean less lock contention and shorter sweeps.
func WithShards(n int) MemoryOption {
	return func(s *MemoryStore) {
		p := 1
		for p < n {
			p <<= 1
		}
		s.shards = make([]shard, p)
	}
}

// WithSweepInterval sets how often each shard deletes its expired keys when
// touched (default 10 s). Expired keys linger at most this long past expiry
// in shards that see traffic.
func WithSweepInterval(d time.Duration) MemoryOption {
	return func(s *MemoryStore) { s.sweepEvery = max(int64(d), 1) }
}

// withMaxKeys caps live keys (approximately: the cap is split evenly across
// shards). Zero, the default, means no cap: memory is then bounded by the
// number of distinct keys seen within one expiry horizon (the window, or the
// time the bucket needs to refill). When a full shard must admit a new key
// and nothing has expired, the key closest to expiry among a few sampled is
// forgotten, which lets that key start fresh: a cap trades exactness for a
// hard memory bound.
func withMaxKeys(n int) MemoryOption {
	return func(s *MemoryStore) { s.maxPerShrd = n }
}

// NewMemoryStore returns an empty store.
func NewMemoryStore(opts ...MemoryOption) *MemoryStore {
	s := &MemoryStore{seed: maphash.MakeSeed(), sweepEvery: int64(10 * time.Second)}
	WithShards(256)(s)
	for _, o := range opts {
		o(s)
	}
	s.mask = uint64(len(s.shards) - 1)
	if s.maxPerShrd > 0 {
		s.maxPerShrd = max(s.maxPerShrd/len(s.shards), 1)
	}
	return s
}

// Take implements Store.
func (s *MemoryStore) Take(_ context.Context, key string, n int, now time.Time, r *Rule) (d Decision, err error) {
	err = s.take(s.hash(key), key, n, now, r, &d, nil)
	return
}

func (s *MemoryStore) hash(key string) uint64 { return maphash.String(s.seed, key) }

// take is Take with the key's hash already computed, filling d. When cnt is
// not nil the outcome is counted in it under the shard lock (the Limiter's
// per-shard counters).
func (s *MemoryStore) take(h uint64, key string, n int, now time.Time, r *Rule, d *Decision, cnt *shardCount) error {
	if err := checkCount(r, n); err != nil {
		d.Limit = int(r.burst)
		return err
	}
	t := now.UnixNano()
	sh := &s.shards[h&s.mask]
	sh.mu.Lock()
	if t >= sh.nextSweep {
		sh.sweep(t)
		sh.nextSweep = t + s.sweepEvery
	}
	tag := tagOf(h)
	if e := sh.t.find(tag, key); e != nil {
		decide(e, r, int64(n), t, true, d)
	} else {
		s.takeFresh(sh, tag, key, int64(n), t, r, d)
	}
	if cnt != nil {
		if d.Allowed {
			cnt.allowed++
		} else {
			cnt.limited++
		}
	}
	sh.mu.Unlock()
	return nil
}

// takeFresh is take for a key the shard does not hold; the caller holds sh.mu.
func (s *MemoryStore) takeFresh(sh *shard, tag uint64, key string, n, t int64, r *Rule, d *Decision) {
	var fresh entry
	decide(&fresh, r, n, t, true, d)
	if d.Allowed { // a refused fresh key stores nothing
		if s.maxPerShrd > 0 && sh.t.n >= s.maxPerShrd {
			sh.evict(t, tag)
		}
		sh.t.insert(tag, key, fresh)
	}
}

// Peek implements Store.
func (s *MemoryStore) Peek(_ context.Context, key string, now time.Time, r *Rule) (d Decision, err error) {
	t := now.UnixNano()
	h := s.hash(key)
	sh := &s.shards[h&s.mask]
	var e entry
	sh.mu.Lock()
	if p := sh.t.find(tagOf(h), key); p != nil {
		e = *p
	}
	sh.mu.Unlock()
	decide(&e, r, 1, t, false, &d)
	return d, nil
}

// Len returns the number of keys currently stored, expired or not.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.t.n
		sh.mu.Unlock()
	}
	return n
}

// Sweep deletes every expired key in every shard and returns how many it
// deleted. Call it periodically (see Run) if traffic may stop touching some
// shards; Take already sweeps the shards it touches.
func (s *MemoryStore) Sweep(now time.Time) int {
	t := now.UnixNano()
	removed := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		removed += sh.sweep(t)
		sh.nextSweep = t + s.sweepEvery
		sh.mu.Unlock()
	}
	return removed
}

// Run calls Sweep every interval until ctx is done. It blocks; start it in a
// goroutine you own.
func (s *MemoryStore) Run(ctx context.Context, clock Clock, interval time.Duration) {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			s.Sweep(clock.Now())
		}
	}
}

// sweep deletes expired entries; the caller holds sh.mu. The table is
// rebuilt to fit what is left, so memory follows the live keys down too.
func (sh *shard) sweep(now int64) int {
	live := 0
	for i := range sh.t.slots {
		if s := &sh.t.slots[i]; s.tag != 0 && s.e.expiry() > now {
			live++
		}
	}
	if live == sh.t.n {
		return 0
	}
	return sh.t.resize(sizeFor(live), func(s *slot) bool { return s.e.expiry() > now })
}

// evict makes room for one key in a full shard; the caller holds sh.mu.
func (sh *shard) evict(now int64, tag uint64) {
	if sh.sweep(now) > 0 {
		return
	}
	// Approximate LRU as Redis does: of a few occupied slots from a
	// pseudo-random start (the new key's hash), forget the one expiring first.
	const samples = 8
	mask := uint64(len(sh.t.slots) - 1)
	victim, oldest, seen := uint64(0), int64(0), 0
	for i := sh.t.home(tag); seen < min(samples, sh.t.n); i = (i + 1) & mask {
		if s := &sh.t.slots[i]; s.tag != 0 {
			if seen == 0 || s.e.expiry() < oldest {
				victim, oldest = i, s.e.expiry()
			}
			seen++
		}
	}
	sh.t.deleteAt(victim)
}
