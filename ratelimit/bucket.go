package ratelimit

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Bucket is a token bucket small enough to embed in every connection (24
// bytes, no pointers, no allocation). It is safe for concurrent use: the
// state is a single atomic "theoretical arrival time" (GCRA), updated by
// compare-and-swap. Call Init before use; the zero Bucket admits everything.
// Do not copy a Bucket after first use.
type Bucket struct {
	interval int64 // ns per token; 0 = not initialised, admits all
	tau      int64 // burst * interval
	tat      atomic.Int64
}

// Init sets the bucket to perSecond tokens per second with capacity burst,
// and fills it. perSecond <= 0 or burst <= 0 leaves it admitting everything.
func (b *Bucket) Init(perSecond float64, burst int) {
	if perSecond <= 0 || burst <= 0 || perSecond > maxRate || burst > maxCount {
		b.interval, b.tau = 0, 0
		b.tat.Store(0)
		return
	}
	r := newBucketRule(perSecond, burst)
	b.interval, b.tau = r.interval, r.tau
	b.tat.Store(0)
}

// Allow takes one token at now, reporting whether there was one.
func (b *Bucket) Allow(now time.Time) bool {
	ok, _ := b.AllowN(now, 1)
	return ok
}

// AllowN takes n tokens at now, all or none. When refused, retryAfter is the
// exact wait until n tokens are there (if nothing else takes any meanwhile);
// n above the capacity is refused with retryAfter -1.
func (b *Bucket) AllowN(now time.Time, n int) (ok bool, retryAfter time.Duration) {
	if b.interval == 0 {
		return true, 0
	}
	need := int64(n) * b.interval
	if n < 1 || need > b.tau {
		return false, -1
	}
	t := now.UnixNano()
	for {
		old := b.tat.Load()
		tat := max(old, t)
		if wait := tat + need - b.tau - t; wait > 0 {
			return false, time.Duration(wait)
		}
		if b.tat.CompareAndSwap(old, tat+need) {
			return true, 0
		}
	}
}

// Tokens returns the whole tokens available at now, without taking any.
func (b *Bucket) Tokens(now time.Time) int {
	if b.interval == 0 {
		return 0
	}
	t := now.UnixNano()
	tat := max(b.tat.Load(), t)
	return int(max((t+b.tau-tat)/b.interval, 0))
}

// KeyedBucket is a keyed set of token buckets without a window, for the
// edge's new-connections-per-IP limit. Idle keys expire as in MemoryStore.
// It is safe for concurrent use.
type KeyedBucket struct {
	store *MemoryStore
	rule  *Rule
	clock Clock
}

// NewKeyedBucket returns per-key buckets of perSecond tokens per second with
// capacity burst. A nil clock means SystemClock.
func NewKeyedBucket(perSecond float64, burst int, clock Clock, opts ...MemoryOption) (*KeyedBucket, error) {
	if perSecond <= 0 || perSecond > maxRate || burst < 1 || burst > maxCount {
		return nil, fmt.Errorf("%w: per-key bucket needs rate in (0, 1e9] and burst in [1, %d], got %v, %d",
			ErrInvalidLimits, maxCount, perSecond, burst)
	}
	if clock == nil {
		clock = SystemClock{}
	}
	// A bucket refills within tau; sweeping that often keeps the map small.
	r := newBucketRule(perSecond, burst)
	opts = append([]MemoryOption{WithSweepInterval(time.Duration(max(r.tau, int64(time.Second))))}, opts...)
	return &KeyedBucket{store: NewMemoryStore(opts...), rule: r, clock: clock}, nil
}

// Allow takes one token for key now.
func (k *KeyedBucket) Allow(key string) bool {
	d, _ := k.store.Take(context.Background(), key, 1, k.clock.Now(), k.rule)
	return d.Allowed
}

// AllowAt takes one token for key at now and returns the full decision.
func (k *KeyedBucket) AllowAt(key string, now time.Time) Decision {
	d, _ := k.store.Take(context.Background(), key, 1, now, k.rule)
	return d
}

// Len returns the number of keys held.
func (k *KeyedBucket) Len() int { return k.store.Len() }

// Sweep deletes expired keys (see MemoryStore.Sweep).
func (k *KeyedBucket) Sweep(now time.Time) int { return k.store.Sweep(now) }
