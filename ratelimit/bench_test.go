package ratelimit

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "user-" + strconv.Itoa(i)
	}
	return keys
}

// BenchmarkAllow measures one in-memory check (Limiter.AllowNAt with the
// default per-user limits) over 1024 warm keys, single-threaded, with the time
// supplied by the caller as the interceptor does: hash, shard lock, map read,
// GCRA + window arithmetic, map write, counter. Time advances 1µs per op so
// keys keep refilling and both the admit and the refuse paths run.
func BenchmarkAllow(b *testing.B) {
	lim, _ := NewLimiter("user", Policy{Limits: DefaultLimits()})
	keys := benchKeys(1024)
	ctx := context.Background()
	now := time.Now()
	for _, k := range keys {
		if _, err := lim.AllowNAt(ctx, k, 1, now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	defer reportCPU(b, cpuThread)()
	for i := 0; b.Loop(); i++ {
		if _, err := lim.AllowNAt(ctx, keys[i&1023], 1, now.Add(time.Duration(i)*time.Microsecond)); err != nil {
			b.Fatal(err)
		}
	}
}

// reportCPU starts measuring CPU time (of this OS thread or the whole process)
// and returns the function that reports it per op as cpu-ns/op.
func reportCPU(b *testing.B, who int) func() {
	if who == cpuThread {
		runtime.LockOSThread()
	}
	start := cpuTime(who)
	return func() {
		used := cpuTime(who) - start
		if who == cpuThread {
			runtime.UnlockOSThread()
		}
		if b.N > 0 {
			b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

// BenchmarkAllowSystemClock is BenchmarkAllow reading the system clock on
// every call (Limiter.Allow); the difference is the cost of time.Now.
func BenchmarkAllowSystemClock(b *testing.B) {
	lim, _ := NewLimiter("user", Policy{Limits: DefaultLimits()})
	keys := benchKeys(1024)
	ctx := context.Background()
	b.ReportAllocs()
	defer reportCPU(b, cpuThread)()
	for i := 0; b.Loop(); i++ {
		if _, err := lim.Allow(ctx, keys[i&1023]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTimeNow is the reference cost of one clock read on this machine.
func BenchmarkTimeNow(b *testing.B) {
	var s int64
	defer reportCPU(b, cpuThread)()
	for b.Loop() {
		s += time.Now().UnixNano()
	}
	_ = s
}

// BenchmarkAllowParallel spreads checks over 100k distinct keys from all
// procs (b.RunParallel), time supplied by the caller: shard-lock contention
// and cache misses over a large map.
func BenchmarkAllowParallel(b *testing.B) {
	lim, _ := NewLimiter("user", Policy{Limits: DefaultLimits()})
	keys := benchKeys(100_000)
	ctx := context.Background()
	now := time.Now()
	for _, k := range keys {
		if _, err := lim.AllowNAt(ctx, k, 1, now); err != nil {
			b.Fatal(err)
		}
	}
	var seed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b, cpuProcess)()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(7919)) // each goroutine walks the keys from its own offset
		for pb.Next() {
			i++
			if _, err := lim.AllowNAt(ctx, keys[i%len(keys)], 1, now.Add(time.Duration(i)*time.Microsecond)); err != nil {
				b.Error(err) // not Fatal: this is not the benchmark goroutine
				return
			}
		}
	})
}

// BenchmarkAllowParallelSystemClock is BenchmarkAllowParallel reading the
// system clock per call.
func BenchmarkAllowParallelSystemClock(b *testing.B) {
	lim, _ := NewLimiter("user", Policy{Limits: DefaultLimits()})
	keys := benchKeys(100_000)
	ctx := context.Background()
	var seed atomic.Int64
	b.ReportAllocs()
	defer reportCPU(b, cpuProcess)()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(7919))
		for pb.Next() {
			i++
			if _, err := lim.Allow(ctx, keys[i%len(keys)]); err != nil {
				b.Error(err) // not Fatal: this is not the benchmark goroutine
				return
			}
		}
	})
}

// BenchmarkBucketAllow is the edge's per-connection check (one CAS).
func BenchmarkBucketAllow(b *testing.B) {
	var bk Bucket
	bk.Init(10, 10)
	now := time.Now()
	b.ReportAllocs()
	defer reportCPU(b, cpuThread)()
	for i := 0; b.Loop(); i++ {
		bk.Allow(now.Add(time.Duration(i) * 10 * time.Millisecond))
	}
}

// BenchmarkKeyedBucketAllow is the edge's per-IP new-connection check.
func BenchmarkKeyedBucketAllow(b *testing.B) {
	kb, _ := NewKeyedBucket(5, 10, nil)
	keys := benchKeys(1024)
	now := time.Now()
	b.ReportAllocs()
	defer reportCPU(b, cpuThread)()
	for i := 0; b.Loop(); i++ {
		kb.AllowAt(keys[i&1023], now.Add(time.Duration(i)*time.Microsecond))
	}
}
