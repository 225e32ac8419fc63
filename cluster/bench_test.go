package cluster

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/milequest/pushercm/internal/redistest"
	"github.com/milequest/pushercm/ratelimit"
)

// The costs a cluster adds to a gRPC publish, against what one node pays in
// memory: each benchmark runs 50 callers (b.SetParallelism, as many as the gRPC
// load runs of BENCHMARKS.md) on one client, so rueidis pipelines them as it
// does under load. ns/op is then the cost per call at saturation (1/throughput),
// not one call's latency. Measured against the Redis of the machine on loopback.

// callers is the number of concurrent callers of each benchmark.
const callers = 50

// BenchmarkRateCheck: one rate-limit check, Redis (one script call) against
// the memory store, a key per caller; "one-key" sub-benchmarks check one key
// from every caller (a service's principal under load), where the Redis
// store's takes of the key share script calls.
func BenchmarkRateCheck(b *testing.B) {
	r, err := ratelimit.NewRule(ratelimit.Limits{MessagesPerSecond: 1e6, BurstLimit: 1e6, MessagesPerMinute: 1e8, WindowSize: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		store func(b *testing.B) ratelimit.Store
	}{
		{"memory", func(*testing.B) ratelimit.Store { return ratelimit.NewMemoryStore() }},
		{"redis", func(b *testing.B) ratelimit.Store {
			return NewRateStore(benchClient(b), Config{Prefix: redistest.Prefix(b)}, "user", ratelimit.NewMemoryStore())
		}},
	} {
		for _, oneKey := range []bool{false, true} {
			name := tc.name
			if oneKey {
				name += "-one-key"
			}
			b.Run(name, func(b *testing.B) {
				s := tc.store(b)
				var n atomic.Int64
				b.ReportAllocs()
				b.SetParallelism(callers / max(1, runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					key := "user-" + strconv.FormatInt(n.Add(1), 10)
					if oneKey {
						key = "principal"
					}
					for pb.Next() {
						if _, err := s.Take(context.Background(), key, 1, time.Now(), r); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}

// BenchmarkIdempotencyReserve: reserving a fresh event id cluster-wide.
func BenchmarkIdempotencyReserve(b *testing.B) {
	s := NewIdempotencyStore(benchClient(b), Config{Prefix: redistest.Prefix(b)}, time.Minute)
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(callers / max(1, runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, err := s.Reserve(context.Background(), "evt-"+strconv.FormatInt(n.Add(1), 10)); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
}

// BenchmarkPublish: one publication of a 100-byte payload through Redis
// (sequence, history, PUBLISH), with one other broker subscribed.
func BenchmarkPublish(b *testing.B) {
	cfg := Config{Prefix: redistest.Prefix(b)}
	var got atomic.Int64
	sub := NewBroker(benchClient(b), cfg, func(Message) { got.Add(1) })
	b.Cleanup(sub.Close)
	if err := sub.Subscribe(context.Background(), "bench"); err != nil {
		b.Fatal(err)
	}
	pub := NewBroker(benchClient(b), cfg, func(Message) {})
	b.Cleanup(pub.Close)
	payload := make([]byte, 100)
	b.ReportAllocs()
	b.SetParallelism(callers / max(1, runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := pub.Publish(context.Background(), "bench", payload, PublishOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func benchClient(b *testing.B) rueidis.Client {
	b.Helper()
	c, err := Dial(Config{URL: "redis://" + redistest.Addr(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}
