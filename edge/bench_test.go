package edge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/milequest/pushercm/protocol"
)

// BenchmarkPublish measures the in-process cost of one Publish to N subscribers of one
// channel before the edge runs (tests drive the hub so): encoding the frame once and
// queueing it on every socket. BenchmarkPublishOutbox measures the running edge's path. Sockets are
// discard writers, so kernel write cost is excluded (edgeload measures it end to end).
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			s, conns := benchSubscribers(b, n, nil)
			// discard writers never report written bytes; reset the accounting
			// so the slow-consumer cut-off does not trigger.
			benchPublish(b, s, n, 64, nil, func() {
				for _, c := range conns {
					c.queued.Store(0)
				}
			})
		})
	}
}

// BenchmarkPublishOutbox measures what a publish costs on the running edge's
// path: Publish appends to the outbox, and after every run of publishes the
// fan-out queues the run on each socket in one step. With run=1 every event
// is fanned out alone (an idle flusher); with run=50 the events of a busy
// flush round go out together. The flusher's writes are not measured: after
// each fan-out, outside the timer, the sockets' pending frames are dropped as
// a write round would take them.
func BenchmarkPublishOutbox(b *testing.B) {
	for _, n := range []int{100, 1000} {
		for _, run := range []int{1, 50} {
			b.Run(fmt.Sprintf("subscribers=%d/run=%d", n, run), func(b *testing.B) {
				// A flusher that never runs: Publish posts to the outbox, the
				// benchmark fans it out and empties the sockets itself.
				f := newFlushers(0, false, testConfig().Logger)[0]
				s, conns := benchSubscribers(b, n, f)
				s.hub.fanner.Store(f)
				take := func() {
					f.mu.Lock()
					f.dirty = f.dirty[:0]
					f.mu.Unlock()
					for _, c := range conns {
						p, _ := c.takePending()
						c.recycle(p)
						c.queued.Store(0)
					}
				}
				take()
				benchPublish(b, s, n, run, func() {
					s.hub.mu.RLock()
					s.hub.fanOutLocked()
					s.hub.mu.RUnlock()
				}, take)
			})
		}
	}
}

// benchPublish publishes benchMessage b.N times to s's n subscribers; after
// every `every` publishes it calls round (timed, nil for none), then reset
// with the timer stopped. It reports deliveries/s.
func benchPublish(b *testing.B, s *Server, n, every int, round, reset func()) {
	b.Helper()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Publish(ctx, benchMessage); err != nil {
			b.Fatal(err)
		}
		if i%every == every-1 || i == b.N-1 {
			if round != nil {
				round()
			}
			b.StopTimer()
			reset()
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
}

var benchMessage = Message{Channels: []string{"bench"}, Event: "ev", Data: `{"some":"data","n":12345}`}

// benchSubscribers makes a server (not started) with n discard-writer sockets
// subscribed to "bench", on flusher fl (nil: written inline).
func benchSubscribers(b *testing.B, n int, fl *flusher) (*Server, []*conn) {
	b.Helper()
	s, err := New(testConfig())
	if err != nil {
		b.Fatal(err)
	}
	ch, _ := protocol.ParseChannel("bench", 0)
	conns := make([]*conn, 0, n)
	for range n {
		c := &conn{s: s, fl: fl, sock: sockWriter{nc: discardConn{}}, id: protocol.NewSocketID(), connectedAt: time.Now().UnixNano()}
		s.hub.conns[c.id] = c
		if err := s.subscribe(c, ch, nil, true); err != nil {
			b.Fatal(err)
		}
		c.queued.Store(0)
		conns = append(conns, c)
	}
	return s, conns
}
