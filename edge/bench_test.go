package edge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/milequest/pushercm/protocol"
)

// BenchmarkPublish measures the in-process cost of one Publish to N subscribers of one
// channel: encoding the frame once and queueing it on every socket. Sockets are
// discard writers, so kernel write cost is excluded (edgeload measures it end to end).
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			s, err := New(testConfig())
			if err != nil {
				b.Fatal(err)
			}
			ch, _ := protocol.ParseChannel("bench", 0)
			for i := 0; i < n; i++ {
				c := &conn{s: s, nc: discardConn{}, id: protocol.NewSocketID(), connectedAt: time.Now().UnixNano()}
				s.conns[c.id] = c
				if err := s.subscribe(c, ch, nil); err != nil {
					b.Fatal(err)
				}
				c.queued.Store(0)
			}
			m := Message{Channels: []string{"bench"}, Event: "ev", Data: `{"some":"data","n":12345}`}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.Publish(ctx, m); err != nil {
					b.Fatal(err)
				}
				if i%64 == 0 {
					// discard writers never report written bytes; reset the accounting
					// so the slow-consumer cut-off does not trigger.
					b.StopTimer()
					for _, c := range s.conns {
						c.queued.Store(0)
					}
					b.StartTimer()
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
