package delivery

import (
	"container/list"
	"context"
	"errors"
	"fmt"
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
	// Default 100000 (about 15 MB with 32-byte ids). Size it as rate × Window: at 1000
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
// Every key lives for the same window, so reservation order is expiry order: keys sit in
// a FIFO list and expired ones are swept from its front on every call (amortised O(1)),
// with no background goroutine to stop.
type MemoryStore struct {
	window  time.Duration
	maxKeys int
	now     func() time.Time

	mu      sync.Mutex
	keys    map[string]*list.Element
	order   list.List // of *memEntry, oldest first
	evicted uint64
	expired uint64
}

type memEntry struct {
	key     string
	expires time.Time
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
		keys:    make(map[string]*list.Element),
	}, nil
}

// SetClock replaces the clock (tests).
func (s *MemoryStore) SetClock(now func() time.Time) {
	s.mu.Lock()
	s.now = now
	s.mu.Unlock()
}

// Reserve implements IdempotencyStore.
func (s *MemoryStore) Reserve(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweepLocked(now)
	if _, ok := s.keys[key]; ok {
		return false, nil
	}
	for len(s.keys) >= s.maxKeys {
		s.removeLocked(s.order.Front())
		s.evicted++
	}
	s.keys[key] = s.order.PushBack(&memEntry{key: key, expires: now.Add(s.window)})
	return true, nil
}

// Release implements IdempotencyStore.
func (s *MemoryStore) Release(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.keys[key]; ok {
		s.removeLocked(el)
	}
	return nil
}

// Stats returns the store's counters.
func (s *MemoryStore) Stats() MemoryStoreStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(s.now())
	return MemoryStoreStats{Keys: len(s.keys), Evicted: s.evicted, Expired: s.expired}
}

func (s *MemoryStore) sweepLocked(now time.Time) {
	for el := s.order.Front(); el != nil; el = s.order.Front() {
		if el.Value.(*memEntry).expires.After(now) {
			return
		}
		s.removeLocked(el)
		s.expired++
	}
}

func (s *MemoryStore) removeLocked(el *list.Element) {
	e := s.order.Remove(el).(*memEntry)
	delete(s.keys, e.key)
}
