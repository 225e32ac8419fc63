package embedded

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/edge"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/pushertest/edgetest"
)

// BenchmarkEmbeddedPublish measures one Publisher.Publish call on the embedded driver
// into a real edge with N WebSocket subscribers on loopback: validation, idempotency
// (caller ids, memory store), the driver, and the edge's encode-once fan-out up to the
// socket write enqueue. It does not wait for clients to read the frames; a final check
// waits until every subscriber has received every frame. The in-process readers share
// the CPU with the publisher, so the edge's write queue is raised for the benchmark: with
// the default 256 KiB a reader that falls behind is (correctly) cut off as a slow
// consumer.
func BenchmarkEmbeddedPublish(b *testing.B) {
	for _, subs := range []int{0, 1, 10, 100} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			s := startBenchEdge(b)
			p := newPublisher(b, s)
			clients := make([]*pushertest.Client, subs)
			for i := range clients {
				c := pushertest.Dial(b, s.Addr().String(), edgetest.Key, edgetest.Secret)
				c.Subscribe("team-1", "")
				c.Discard()
				clients[i] = c
			}
			e := delivery.Event{Channels: []string{"team-1"}, Name: "activity", Data: `{"user":"u1","km":3.2,"team":"t1"}`}
			ctx := context.Background()
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				e.ID = strconv.Itoa(n) // every event new: one reservation each
				n++
				out, err := p.Publish(ctx, e)
				if err != nil {
					b.Fatal(err)
				}
				if out.DeliveredTo != subs {
					b.Fatalf("delivered to %d, want %d", out.DeliveredTo, subs)
				}
			}
			b.StopTimer()
			for _, c := range clients {
				pushertest.Eventually(b, "every frame at every subscriber", func() error {
					if got := c.Discarded(); got < int64(n) {
						return fmt.Errorf("a subscriber received %d of %d frames", got, n)
					}
					return nil
				})
			}
		})
	}
}

// BenchmarkEdgePublishDirect is the baseline for BenchmarkEmbeddedPublish: the same
// publish straight into edge.Server.Publish, so the difference is delivery's overhead
// (validation, idempotency, the driver).
func BenchmarkEdgePublishDirect(b *testing.B) {
	for _, subs := range []int{0, 10} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			s := startBenchEdge(b)
			for i := 0; i < subs; i++ {
				c := pushertest.Dial(b, s.Addr().String(), edgetest.Key, edgetest.Secret)
				c.Subscribe("team-1", "")
				c.Discard()
			}
			m := edge.Message{Channels: []string{"team-1"}, Event: "activity", Data: `{"user":"u1","km":3.2,"team":"t1"}`}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Publish(context.Background(), m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEmbeddedPublishBatch100 measures PublishBatch of 100 events (generated ids)
// to one channel with 10 subscribers, reported as events/s.
func BenchmarkEmbeddedPublishBatch100(b *testing.B) {
	s := startBenchEdge(b)
	p := newPublisher(b, s)
	for i := 0; i < 10; i++ {
		c := pushertest.Dial(b, s.Addr().String(), edgetest.Key, edgetest.Secret)
		c.Subscribe("team-1", "")
		c.Discard()
	}
	batch := make([]delivery.Event, 100)
	for i := range batch {
		batch[i] = delivery.Event{Channels: []string{"team-1"}, Name: "activity", Data: `{"user":"u1","km":3.2}`}
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := p.PublishBatch(context.Background(), batch)
		if err != nil || res[99].Err != nil {
			b.Fatal(err, res[99].Err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}

func startBenchEdge(b *testing.B) *edge.Server {
	cfg := edgetest.Config()
	cfg.WriteQueueBytes = 256 << 20
	return edgetest.Start(b, cfg).Server
}
