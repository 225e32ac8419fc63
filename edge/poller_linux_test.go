package edge

import (
	"runtime/metrics"
	"testing"
	"time"
)

// TestIdlePollersHoldNoThread: an idle event loop waits in Go's netpoller,
// not in a blocking epoll_wait. A goroutine blocked in a syscall keeps its P
// until the runtime's sysmon retakes it: the handlers a poller started waited
// for that hand-off, and each retake set sysmon to waking every 20 µs (9–17 %
// of the server's CPU in two profiles; see third_party/README.md). Stock nbio
// leaves every poller in epoll_wait, counted in /sched/goroutines/not-in-go.
func TestIdlePollersHoldNoThread(t *testing.T) {
	cfg := testConfig()
	cfg.Pollers = 4
	s := startServer(t, cfg)
	c := connect(t, s) // the pollers have had work
	c.send(map[string]any{"event": "pusher:subscribe", "data": map[string]string{"channel": "idle"}})
	c.expect("pusher_internal:subscription_succeeded", "idle")

	sample := []metrics.Sample{{Name: "/sched/goroutines/not-in-go:goroutines"}}
	least := ^uint64(0)
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			t.Fatalf("%s: %v", sample[0].Name, sample[0].Value.Kind())
		}
		least = min(least, sample[0].Value.Uint64())
	}
	if least >= uint64(cfg.Pollers) {
		t.Fatalf("idle server: at least %d goroutines in syscalls all along, want fewer than its %d pollers", least, cfg.Pollers)
	}
}
