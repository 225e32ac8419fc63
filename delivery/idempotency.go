package delivery

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"
)

// IdempotencyStore remembers event ids for a window so that a repeat is not delivered
// twice. The Publisher reserves a key before delivering and releases it when delivery
// fails, so a retry of a failed event is delivered, while a concurrent repeat of an event
// in flight is answered as a duplicate.
//
// Implementations must make Reserve atomic (a Redis store: SET key NX PX window; Release:
// DEL key).
type IdempotencyStore interface {
	// Reserve claims key for the store's window. It reports false when the key is already
	// claimed (a duplicate). An error means the store could not answer; the Publisher
	// then fails the event with ErrUnavailable rather than risk a double delivery.
	Reserve(ctx context.Context, key string) (reserved bool, err error)
	// Release forgets key so that the event can be delivered by a later attempt.
	Release(ctx context.Context, key string) error
}

// MemoryStoreConfig configures the in-memory idempotency store.
type MemoryStoreConfig struct {
	// Window is how long an id is remembered. Default 5m. A repeat after the window is
	// delivered again.
	Window time.Duration `yaml:"window"`
	// MaxKeys bounds memory: when full, the oldest key is forgotten early (and counted in
	// MemoryStoreStats.Evicted), so a repeat of that id would be delivered again.
	// Default 100000 (about 10 MB with 32-byte ids). Size it as rate × Window: at 1000
	// events/s with caller ids, 5 minutes needs 300000.
	MaxKeys int `yaml:"maxKeys"`
}

// Defaults of MemoryStoreConfig.
const (
	DefaultIdempotencyWindow  = 5 * time.Minute
	DefaultIdempotencyMaxKeys = 100_000
)

// WithDefaults fills zero fields.
func (c MemoryStoreConfig) WithDefaults() MemoryStoreConfig {
	if c.Window == 0 {
		c.Window = DefaultIdempotencyWindow
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultIdempotencyMaxKeys
	}
	return c
}

// ErrConfig reports an invalid configuration value.
var ErrConfig = errors.New("delivery: invalid configuration")

// Validate rejects negative values.
func (c MemoryStoreConfig) Validate() error {
	if c.Window < 0 {
		return fmt.Errorf("%w: idempotency window must not be negative, got %s", ErrConfig, c.Window)
	}
	if c.MaxKeys < 0 {
		return fmt.Errorf("%w: idempotency maxKeys must not be negative, got %d", ErrConfig, c.MaxKeys)
	}
	return nil
}

// MemoryStore is an in-process IdempotencyStore for single-node deployments.
//
// Every key lives for the same window, so reservation order is expiry order: entries sit
// in a FIFO ring and expired ones are swept from its front on every call (amortised
// O(1)), with no background goroutine to stop. A released key is only dropped from the
// index; its ring slot becomes a tombstone that the sweep skips, and the ring is
// compacted when tombstones outnumber live entries.
//
// Keys are stored as 128-bit hashes (two maphash values with process-random seeds), not
// as strings: the index and the ring then hold no pointers, so the garbage collector
// never scans them and the callers' id strings are not kept alive for the window. Two
// distinct ids collide (and the second would be answered as a duplicate) with
// probability about n²/2¹²⁹ for n live keys: 10⁻²⁸ at a million keys; the seeds are
// never exposed, so callers cannot aim at a collision.
type MemoryStore struct {
	window  time.Duration
	maxKeys int
	now     func() time.Time
	seeds   [2]maphash.Seed

	mu      sync.Mutex
	index   map[memKey]uint64 // key → sequence number of its live ring entry
	ring    []memEntry        // circular FIFO, oldest at head
	head    int
	size    int
	seq     uint64
	evicted uint64
	expired uint64
}

// memKey is a key's 128-bit hash (see MemoryStore).
type memKey [2]uint64

func (s *MemoryStore) hash(key string) memKey {
	return memKey{maphash.String(s.seeds[0], key), maphash.String(s.seeds[1], key)}
}

type memEntry struct {
	key     memKey
	seq     uint64
	expires int64 // unix nanoseconds
}

// MemoryStoreStats are counters for metrics.
type MemoryStoreStats struct {
	Keys    int
	Evicted uint64 // forgotten early because MaxKeys was reached
	Expired uint64 // forgotten at the end of the window
}

// NewMemoryStore returns a store; cfg zero values take the defaults.
func NewMemoryStore(cfg MemoryStoreConfig) (*MemoryStore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	return &MemoryStore{
		window:  cfg.Window,
		maxKeys: cfg.MaxKeys,
		now:     time.Now,
		seeds:   [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		index:   make(map[memKey]uint64),
		ring:    make([]memEntry, 64),
	}, nil
}

// setClock replaces the clock (tests).
func (s *MemoryStore) setClock(now func() time.Time) {
	s.mu.Lock()
	s.now = now
	s.mu.Unlock()
}

// Reserve implements IdempotencyStore.
func (s *MemoryStore) Reserve(_ context.Context, id string) (bool, error) {
	key := s.hash(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UnixNano()
	s.sweepLocked(now)
	if _, ok := s.index[key]; ok {
		return false, nil
	}
	for len(s.index) >= s.maxKeys {
		if s.popLocked() {
			s.evicted++
		}
	}
	s.seq++
	s.pushLocked(memEntry{key: key, seq: s.seq, expires: now + int64(s.window)})
	s.index[key] = s.seq
	return true, nil
}

// Release implements IdempotencyStore.
func (s *MemoryStore) Release(_ context.Context, id string) error {
	key := s.hash(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.index, key)
	// Compact when tombstones are the majority, so a run of failed deliveries cannot
	// grow the ring beyond twice the live keys.
	if s.size > 64 && s.size > 2*len(s.index) {
		s.compactLocked()
	}
	return nil
}

// Stats returns the store's counters.
func (s *MemoryStore) Stats() MemoryStoreStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(s.now().UnixNano())
	return MemoryStoreStats{Keys: len(s.index), Evicted: s.evicted, Expired: s.expired}
}

func (s *MemoryStore) sweepLocked(now int64) {
	for s.size > 0 {
		e := &s.ring[s.head]
		if e.expires > now {
			return
		}
		if s.popLocked() {
			s.expired++
		}
	}
}

// popLocked removes the oldest ring entry and reports whether it was live (not a
// tombstone of a released key).
func (s *MemoryStore) popLocked() bool {
	e := s.ring[s.head]
	s.ring[s.head] = memEntry{}
	s.head = (s.head + 1) % len(s.ring)
	s.size--
	if seq, ok := s.index[e.key]; ok && seq == e.seq {
		delete(s.index, e.key)
		return true
	}
	return false
}

func (s *MemoryStore) pushLocked(e memEntry) {
	if s.size == len(s.ring) {
		s.resizeLocked(2 * len(s.ring))
	}
	s.ring[(s.head+s.size)%len(s.ring)] = e
	s.size++
}

func (s *MemoryStore) resizeLocked(n int) {
	ring := make([]memEntry, n)
	for i := 0; i < s.size; i++ {
		ring[i] = s.ring[(s.head+i)%len(s.ring)]
	}
	s.ring, s.head = ring, 0
}

func (s *MemoryStore) compactLocked() {
	ring := make([]memEntry, max(64, 2*len(s.index)))
	n := 0
	for i := 0; i < s.size; i++ {
		e := s.ring[(s.head+i)%len(s.ring)]
		if seq, ok := s.index[e.key]; ok && seq == e.seq {
			ring[n] = e
			n++
		}
	}
	s.ring, s.head, s.size = ring, 0, n
}
