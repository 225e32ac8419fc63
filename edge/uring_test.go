//go:build linux

package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/protocol"
)

// TestIOUringShortSendsKeepOrder: a client that does not read makes the kernel
// take io_uring sends only in part; the rest goes through the event loop, and
// the client still reads every event exactly once and in order.
func TestIOUringShortSendsKeepOrder(t *testing.T) {
	cfg := testConfig()
	cfg.WriteQueueBytes = 16 << 20
	s := startServer(t, cfg)
	if s.flushers[0].ring == nil {
		t.Skip("io_uring is not available on this kernel")
	}
	// A 4 KiB receive buffer fills after a few events.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c := dialRaw(t, s, "/app/"+testKey+"?protocol=7&client=go&version=1", nil, d.DialContext)
	reading := false
	t.Cleanup(func() {
		if !reading {
			close(c.noRead)
		}
	})
	c.send(map[string]any{"event": protocol.EventSubscribe, "data": map[string]string{"channel": "order"}})
	pushertest.Eventually(t, "subscribed", func() bool { ci, _ := s.Channel(context.Background(), "order"); return ci.SubscriptionCount == 1 })
	// And a small send buffer on the server's side of the socket.
	s.hub.mu.Lock()
	for _, sc := range s.hub.conns {
		if err := syscall.SetsockoptInt(sc.sock.fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096); err != nil {
			t.Fatal(err)
		}
	}
	s.hub.mu.Unlock()

	const n = 1500
	pad := strings.Repeat("x", 1000)
	for i := range n {
		// Spread over many flushes so some meet a full socket buffer mid-way.
		if _, err := s.Publish(context.Background(), Message{Channels: []string{"order"}, Event: "e", Data: strconv.Itoa(i) + " " + pad}); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	pushertest.Eventually(t, "a short send", func() bool { return s.flushers[0].ringShort.Load() > 0 })
	reading = true
	close(c.noRead)
	c.expect(protocol.EventConnectionEstablished, "")
	c.expect(protocol.EventSubscriptionSucceeded, "order")
	for i := range n {
		m := c.expect("e", "order")
		var data string
		if err := json.Unmarshal(m.Data, &data); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%d %s", i, pad); data != want {
			t.Fatalf("event %d: got %.20q...", i, data)
		}
	}
	if got := s.flushers[0].ringSent.Load(); got == 0 {
		t.Fatal("no socket was written through io_uring")
	}
	// Once the loop has written everything, the socket goes back to io_uring.
	var sc *conn
	s.hub.mu.Lock()
	for _, x := range s.hub.conns {
		sc = x
	}
	s.hub.mu.Unlock()
	pushertest.Eventually(t, "loop drained", func() bool { return sc.sock.loopBytes.Load() == 0 })
	before := s.flushers[0].ringSent.Load()
	if _, err := s.Publish(context.Background(), Message{Channels: []string{"order"}, Event: "e", Data: "last"}); err != nil {
		t.Fatal(err)
	}
	c.expect("e", "order")
	// (Counted after the send completes, which may be after the client reads it.)
	pushertest.Eventually(t, "the socket back on io_uring sends", func() bool { return s.flushers[0].ringSent.Load() > before })
}

// TestWriteWithoutIOUring: with io_uring off, fan-out still reaches everyone.
func TestWriteWithoutIOUring(t *testing.T) {
	cfg := testConfig()
	cfg.NoIOUring = true
	s := startServer(t, cfg)
	for _, f := range s.flushers {
		if f.ring != nil {
			t.Fatal("NoIOUring set but a flusher has a ring")
		}
	}
	var cs []*tclient
	for range 5 {
		c := connect(t, s)
		c.subscribeOK("plain", "")
		cs = append(cs, c)
	}
	if n, err := s.Publish(context.Background(), Message{Channels: []string{"plain"}, Event: "e", Data: "d"}); err != nil || n != len(cs) {
		t.Fatalf("delivered %d, %v", n, err)
	}
	for _, c := range cs {
		c.expect("e", "plain")
	}
}

// writeCounter counts socket writes and the frames they carried.
type writeCounter struct {
	mu             sync.Mutex
	writes, frames int
	maxWait        time.Duration
}

func (w *writeCounter) Published(int, time.Duration) {}
func (w *writeCounter) Written(wait time.Duration, frames int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	w.frames += frames
	w.maxWait = max(w.maxWait, wait)
}

// TestFlushIntervalCoalesces: with a flush interval, events published in quick
// succession go out in few writes per socket, none later than about the
// interval; without one, each publish to an idle socket is written at once.
func TestFlushIntervalCoalesces(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
	}{{"interval", 200 * time.Millisecond}, {"none", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.FlushInterval = tc.interval
			wc := &writeCounter{}
			s := startServer(t, cfg, WithMetrics(wc))
			c := connect(t, s)
			c.subscribeOK("burst", "")
			// connection_established and subscription_succeeded are counted
			// after their sends complete, which may be after the client read them.
			pushertest.Eventually(t, "handshake frames counted", func() bool { wc.mu.Lock(); defer wc.mu.Unlock(); return wc.frames == 2 })
			// Not a condition to poll: the flusher paces rounds on the real clock,
			// and the burst below must find a round due at once, so one interval
			// passes first.
			time.Sleep(tc.interval)
			wc.mu.Lock()
			wc.writes, wc.frames, wc.maxWait = 0, 0, 0
			wc.mu.Unlock()
			const n = 20
			for i := range n {
				if _, err := s.Publish(context.Background(), Message{Channels: []string{"burst"}, Event: "e", Data: strconv.Itoa(i)}); err != nil {
					t.Fatal(err)
				}
				if tc.interval == 0 {
					c.expect("e", "burst") // one at a time: nothing to coalesce
				}
			}
			if tc.interval > 0 {
				for range n {
					c.expect("e", "burst")
				}
			}
			pushertest.Eventually(t, "all frames counted", func() bool { wc.mu.Lock(); defer wc.mu.Unlock(); return wc.frames == n })
			wc.mu.Lock()
			defer wc.mu.Unlock()
			if tc.interval > 0 {
				// The first publish finds the flusher idle and is written at once;
				// the rest wait for the next round, together.
				if wc.writes > 3 {
					t.Fatalf("%d writes for %d frames, want them coalesced", wc.writes, n)
				}
				if wc.maxWait > tc.interval+waitFor/2 {
					t.Fatalf("a frame waited %v", wc.maxWait)
				}
			} else if wc.writes != n {
				t.Fatalf("%d writes for %d frames one at a time, want %d", wc.writes, n, n)
			}
		})
	}
}

// TestIOUringFailureFallsBack: when io_uring_enter fails, the flusher drops its
// ring and writes through the event loop; nothing is lost.
func TestIOUringFailureFallsBack(t *testing.T) {
	s := startServer(t, testConfig())
	f := s.flushers[0]
	if f.ring == nil {
		t.Skip("io_uring is not available on this kernel")
	}
	c := connect(t, s)
	c.subscribeOK("fallback", "")
	// Swap the ring's descriptor for /dev/null: the next io_uring_enter fails.
	null, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Close(null) }()
	if err := syscall.Dup2(null, f.ring.fd); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if n, err := s.Publish(context.Background(), Message{Channels: []string{"fallback"}, Event: "e", Data: strconv.Itoa(i)}); err != nil || n != 1 {
			t.Fatalf("delivered %d, %v", n, err)
		}
		m := c.expect("e", "fallback")
		var data string
		if err := json.Unmarshal(m.Data, &data); err != nil || data != strconv.Itoa(i) {
			t.Fatalf("event %d: %s", i, m.Data)
		}
	}
	// The ring is dropped before the failed batch is written, so it is gone by
	// now; the flusher takes f.mu after each round, which orders this read.
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ring != nil {
		t.Fatal("the flusher kept its failed ring")
	}
}

// A socket that takes dozens of frames per round (a busy channel under a flush
// interval) reuses its pending lists instead of growing a new one each round,
// while the previous round's list is still being written.
func TestBusySocketReusesPendingLists(t *testing.T) {
	fl := &flusher{wake: make(chan struct{}, 1)}
	c := &conn{s: &Server{}, fl: fl}
	frame := []byte("frame")
	round := func() {
		for range 40 {
			c.push(frame, false)
		}
		p, _ := c.takePending()
		if len(p) != 40 {
			t.Fatalf("took %d frames, want 40", len(p))
		}
		// Publishing goes on while the flusher writes p.
		for range 40 {
			c.push(frame, false)
		}
		c.recycle(p)
		p, _ = c.takePending()
		c.recycle(p)
		fl.dirty = fl.dirty[:0]
	}
	round()
	if n := testing.AllocsPerRun(20, round); n != 0 {
		t.Fatalf("%.1f allocations per round, want 0", n)
	}
	// Once traffic stops, the sweeper's trim lets the lists go.
	c.trimPending()
	if c.spare != nil || cap(c.pending) > 8 {
		t.Fatalf("after trim: spare cap %d, pending cap %d", cap(c.spare), cap(c.pending))
	}
	// A list far over the bound is not kept.
	big := make([][]byte, 0, 4*maxRecycledPending)
	c.spare = nil
	c.recycle(big)
	if c.spare != nil && cap(c.spare) > maxRecycledPending || cap(c.pending) > maxRecycledPending {
		t.Fatal("an oversized pending list was kept")
	}
}
