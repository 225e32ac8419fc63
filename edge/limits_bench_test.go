package edge

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/milequest/pushercm/protocol"
)

// BenchmarkClientEventLimit measures the per-connection rate check every
// client event passes before it is fanned out, clock read included: on the
// allowed path (a rate the loop cannot reach) and on the refused path (an
// empty bucket under a frozen clock). One connection: a socket's frames are
// handled one at a time.
func BenchmarkClientEventLimit(b *testing.B) {
	for _, tc := range []struct {
		name      string
		perSecond int
		frozen    bool
		allowed   bool
	}{
		{"allowed", 100_000_000, false, true},
		{"refused", 1, true, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := testConfig()
			cfg.Limits.ClientEventsPerSecond = tc.perSecond
			var opts []Option
			if tc.frozen {
				frozen := time.Now()
				opts = append(opts, withClock(func() time.Time { return frozen }))
			}
			s, err := New(cfg, opts...)
			if err != nil {
				b.Fatal(err)
			}
			c := &conn{s: s, id: protocol.NewSocketID()}
			c.events.Init(float64(tc.perSecond), tc.perSecond) // as acceptWS does
			s.allowClientEvent(c, "")
			b.ReportAllocs()
			for b.Loop() {
				if s.allowClientEvent(c, "") != tc.allowed {
					b.Fatalf("allowed != %v", tc.allowed)
				}
			}
		})
	}
}

// BenchmarkConnectionLimitPerIP measures the built-in per-IP check every new
// WebSocket passes in admit, from parallel goroutines as nbio's pollers make
// it, over 1024 addresses at a rate none of them reaches.
func BenchmarkConnectionLimitPerIP(b *testing.B) {
	cfg := testConfig()
	cfg.ConnectionsPerIPPerSecond = 100_000_000
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ips := make([]string, 1024)
	for i := range ips {
		ips[i] = "10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
	}
	var next atomic.Uint32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1) * 97
		for pb.Next() {
			if !s.opts.connections.AllowConnection(ips[i%uint32(len(ips))]) {
				b.Error("refused")
				return
			}
			i++
		}
	})
}
