package delivery

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestMemoryStoreWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	s, err := NewMemoryStore(MemoryStoreConfig{Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	s.setClock(func() time.Time { return now })
	ctx := context.Background()
	steps := []struct {
		name    string
		advance time.Duration
		key     string
		want    bool
	}{
		{"first", 0, "k", true},
		{"repeat", 0, "k", false},
		{"repeat inside window", 59 * time.Second, "k", false},
		{"other key", 0, "j", true},
		{"after window", time.Second, "k", true},
		{"j still inside its window", 0, "j", false},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		got, err := s.Reserve(ctx, st.key)
		if err != nil || got != st.want {
			t.Fatalf("%s: Reserve(%q) = %v, %v; want %v", st.name, st.key, got, err, st.want)
		}
	}
	if st := s.Stats(); st.Expired != 1 || st.Keys != 2 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestMemoryStoreBounded(t *testing.T) {
	s, _ := NewMemoryStore(MemoryStoreConfig{MaxKeys: 3})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if ok, _ := s.Reserve(ctx, fmt.Sprint(i)); !ok {
			t.Fatalf("key %d refused", i)
		}
	}
	st := s.Stats()
	if st.Keys != 3 || st.Evicted != 2 {
		t.Fatalf("stats = %+v", st)
	}
	// Oldest keys were forgotten, newest remembered.
	if ok, _ := s.Reserve(ctx, "0"); !ok {
		t.Fatal("evicted key 0 still remembered")
	}
	if ok, _ := s.Reserve(ctx, "4"); ok {
		t.Fatal("newest key 4 forgotten")
	}
}

func TestMemoryStoreRelease(t *testing.T) {
	s, _ := NewMemoryStore(MemoryStoreConfig{})
	ctx := context.Background()
	if _, err := s.Reserve(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Reserve(ctx, "k"); !ok {
		t.Fatal("released key still reserved")
	}
	if err := s.Release(ctx, "unknown"); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryStoreConfigValidate(t *testing.T) {
	for _, c := range []MemoryStoreConfig{{Window: -1}, {MaxKeys: -1}} {
		if _, err := NewMemoryStore(c); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: err = %v", c, err)
		}
	}
	c := MemoryStoreConfig{}.WithDefaults()
	if c.Window != 5*time.Minute || c.MaxKeys != DefaultIdempotencyMaxKeys {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestMemoryStoreReleaseThenReserveKeepsNewWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	s, _ := NewMemoryStore(MemoryStoreConfig{Window: time.Minute})
	s.setClock(func() time.Time { return now })
	ctx := context.Background()
	if _, err := s.Reserve(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(30 * time.Second)
	if ok, _ := s.Reserve(ctx, "k"); !ok {
		t.Fatal("released key refused")
	}
	// The first reservation's slot expires now; the second reservation must survive it.
	now = now.Add(31 * time.Second)
	if ok, _ := s.Reserve(ctx, "k"); ok {
		t.Fatal("the old slot's expiry forgot the new reservation")
	}
	if st := s.Stats(); st.Keys != 1 || st.Expired != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestMemoryStoreReleasesDoNotGrowMemory(t *testing.T) {
	s, _ := NewMemoryStore(MemoryStoreConfig{MaxKeys: 100})
	ctx := context.Background()
	if _, err := s.Reserve(ctx, "live"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100000; i++ {
		k := fmt.Sprint("failed-", i)
		if _, err := s.Reserve(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := s.Release(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	ringLen := len(s.ring)
	s.mu.Unlock()
	if ringLen > 256 {
		t.Fatalf("ring grew to %d slots for 1 live key", ringLen)
	}
	if ok, _ := s.Reserve(ctx, "live"); ok {
		t.Fatal("compaction lost the live key")
	}
	if st := s.Stats(); st.Keys != 1 || st.Evicted != 0 {
		t.Fatalf("stats = %+v", st)
	}
}
