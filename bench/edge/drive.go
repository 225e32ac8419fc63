package edgebench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Drive publishes benchmark events through send until deadline and returns how
// many were sent and the first send error. Every event carries its publish
// clock (Now) as data, for the receivers' latency.
//
// With rate > 0 it offers rate events/s: every 10 ms the events due by then go
// out in batches of up to 10 to channel(seq), each batch on its own goroutine
// (64 in flight at most) so that a slow request does not lower the offered
// rate, and ticks a starved ticker dropped are caught up. With rate 0 it
// publishes batches of 10 to channel(0) as fast as they are accepted, from 4
// senders, pausing while behind(published) says the subscribers are too far
// behind (so that the run measures throughput, not the slow-consumer cut-off).
func Drive(ctx context.Context, deadline time.Time, rate int, channel func(seq int) string,
	behind func(published int64) bool, send func(context.Context, []Event) error) (int64, error) {
	var published atomic.Int64
	var first atomic.Pointer[error]
	fail := func(err error) { first.CompareAndSwap(nil, &err) }
	var wg sync.WaitGroup
	if rate > 0 {
		start := time.Now()
		tick := time.NewTicker(10 * time.Millisecond)
		sem := make(chan struct{}, 64)
		seq := 0
		for now := range tick.C {
			if now.After(deadline) || ctx.Err() != nil {
				break
			}
			due := int(float64(rate) * now.Sub(start).Seconds())
			for seq < due {
				evs := make([]Event, min(10, due-seq))
				ts := Now()
				for j := range evs {
					evs[j] = Event{Channel: channel(seq), Name: "bench", Data: ts}
					seq++
				}
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer func() { <-sem; wg.Done() }()
					if err := send(ctx, evs); err != nil {
						fail(err)
						return
					}
					published.Add(int64(len(evs)))
				}()
			}
		}
		tick.Stop()
	} else {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) && ctx.Err() == nil {
					if behind(published.Load()) {
						time.Sleep(100 * time.Microsecond)
						continue
					}
					ts := Now()
					evs := make([]Event, 10)
					for j := range evs {
						evs[j] = Event{Channel: channel(0), Name: "bench", Data: ts}
					}
					if err := send(ctx, evs); err != nil {
						fail(err)
						return
					}
					published.Add(10)
				}
			}()
		}
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return published.Load(), *e
	}
	return published.Load(), nil
}
