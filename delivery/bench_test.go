package delivery

import (
	"context"
	"runtime"
	"strconv"
	"testing"
)

// nopDriver isolates the Publisher's own cost: validation, idempotency and tracing
// (no-op provider), with a driver that does nothing.
type nopDriver struct{ recordingDriver }

func (*nopDriver) Publish(context.Context, Event) (Result, error) { return Result{DeliveredTo: 1}, nil }
func (*nopDriver) PublishBatch(_ context.Context, ev []Event) ([]Result, []error) {
	return make([]Result, len(ev)), make([]error, len(ev))
}

// BenchmarkPublisher measures the Publisher's overhead per event on top of the driver,
// for generated ids (no idempotency key kept) and for caller ids (a key reserved in the
// memory store per event).
func BenchmarkPublisher(b *testing.B) {
	e := Event{Channels: []string{"presence-team-1", "team-1"}, Name: "activity", Data: `{"user":"u1","km":3.2}`}
	b.Run("generated-id", func(b *testing.B) {
		p := NewPublisher(&nopDriver{})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Publish(context.Background(), e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("caller-id", func(b *testing.B) {
		// Default store (100k keys): in steady state every reservation evicts the oldest.
		store, _ := NewMemoryStore(MemoryStoreConfig{})
		p := NewPublisher(&nopDriver{}, WithIdempotencyStore(store))
		ids := make([]string, 1<<18) // more than MaxKeys: every id is new when it recurs
		for i := range ids {
			ids[i] = "evt-" + strconv.Itoa(i)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			e.ID = ids[i&(len(ids)-1)]
			i++
			if _, err := p.Publish(context.Background(), e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("batch-100", func(b *testing.B) {
		p := NewPublisher(&nopDriver{})
		batch := make([]Event, 100)
		for i := range batch {
			batch[i] = e
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.PublishBatch(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchmarkValidateEvent measures validation alone for a two-channel event.
func BenchmarkValidateEvent(b *testing.B) {
	e := Event{ID: "evt-1", Channels: []string{"presence-team-1", "team-1"}, Name: "activity", Data: `{"km":3}`}
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemoryStoreReserve measures one reservation of a fresh key.
func BenchmarkMemoryStoreReserve(b *testing.B) {
	s, _ := NewMemoryStore(MemoryStoreConfig{MaxKeys: 1 << 16})
	keys := make([]string, 1<<20)
	for i := range keys {
		keys[i] = strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Reserve(context.Background(), keys[i&(len(keys)-1)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkMemoryStoreGC measures one full garbage collection with a store
// holding 300 000 live keys (1000 events/s with caller ids over the default
// 5-minute window): what the store adds to every GC cycle's mark work.
func BenchmarkMemoryStoreGC(b *testing.B) {
	const n = 300_000
	s, _ := NewMemoryStore(MemoryStoreConfig{MaxKeys: n})
	for i := range n {
		if _, err := s.Reserve(context.Background(), "evt-"+strconv.Itoa(i)+"-0123456789abcdef"); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	b.ReportAllocs()
	for b.Loop() {
		runtime.GC()
	}
	runtime.KeepAlive(s)
}
