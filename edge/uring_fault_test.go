//go:build linux

package edge

import (
	"context"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
)

// ringFlushers returns the flushers that write with io_uring. Without io_uring
// on this kernel the tests below check the write(2) path only.
func ringFlushers(s *Server) []*flusher {
	var fs []*flusher
	for _, f := range s.flushers {
		f.mu.Lock()
		if f.ring != nil {
			fs = append(fs, f)
		}
		f.mu.Unlock()
	}
	return fs
}

// expectExactly reads the next frames and fails unless they are events named
// want[i] with data want[i] on channel, in that order.
func (c *tclient) expectExactly(channel string, want ...string) {
	c.t.Helper()
	for _, w := range want {
		m := c.next()
		if m.Event != "e" || m.Channel != channel || m.str() != w {
			c.t.Fatalf("got %s on %q data %s, want e on %q data %q", m.Event, m.Channel, m.Data, channel, w)
		}
	}
}

// TestIOUringRefusedSendFallsBack: a kernel that refuses the send operation itself
// (here an opcode it does not know, as a kernel without IORING_OP_SEND answers
// -EINVAL) makes the flusher drop its ring and write through the event loop: the
// socket stays open and the client gets its handshake, subscription and events.
func TestIOUringRefusedSendFallsBack(t *testing.T) {
	s := startServer(t, testConfig())
	rings := ringFlushers(s)
	for _, f := range rings {
		// Under f.mu: the flusher takes it before its next round.
		f.mu.Lock()
		f.ring.sendOp = 255
		f.mu.Unlock()
	}
	c := connect(t, s)
	c.subscribeOK("refused", "")
	for i := range 3 {
		if n, err := s.Publish(context.Background(), Message{Channels: []string{"refused"}, Event: "e", Data: strconv.Itoa(i)}); err != nil || n != 1 {
			t.Fatalf("delivered %d, %v", n, err)
		}
	}
	c.expectExactly("refused", "0", "1", "2")
	if len(rings) == 0 {
		return
	}
	s.hub.mu.RLock()
	var fl *flusher
	for _, sc := range s.hub.conns {
		fl = sc.fl
	}
	s.hub.mu.RUnlock()
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.ring != nil {
		t.Fatal("the flusher kept a ring whose sends the kernel refuses")
	}
}

// TestIOUringProbe: set-up probes for the send operation and refuses a ring
// without it, so such kernels write with write(2) from the start.
func TestIOUringProbe(t *testing.T) {
	r, err := newURing(8, ioringOpSend)
	if err != nil {
		// No io_uring here at all: newFlushers then writes with write(2).
		t.Logf("io_uring unavailable: %v", err)
		return
	}
	r.close()
	if r, err := newURing(8, 255); err == nil {
		r.close()
		t.Fatal("a ring without the send operation was set up")
	}
}

// TestIOUringEnterFailureAfterPartialSend: io_uring_enter fails after the kernel
// has already sent to some sockets of a batch. Those sends are settled from their
// completions and only the others are written again, so every client reads each
// event exactly once.
func TestIOUringEnterFailureAfterPartialSend(t *testing.T) {
	var armed atomic.Bool
	var injected atomic.Int32
	enter := ringEnter
	ringEnter = func(fd int, toSubmit, minComplete, flags uint32) (uint32, syscall.Errno) {
		if toSubmit >= 2 && armed.CompareAndSwap(true, false) {
			// The kernel takes (and completes) the first send, then the call fails.
			if _, errno := enter(fd, 1, 0, flags); errno != 0 {
				t.Errorf("io_uring_enter: %v", errno)
			}
			injected.Add(1)
			return 0, syscall.EBUSY
		}
		return enter(fd, toSubmit, minComplete, flags)
	}
	// Registered before startServer, so it runs after the flushers have stopped.
	t.Cleanup(func() { ringEnter = enter })
	s := startServer(t, testConfig())
	rings := len(ringFlushers(s))
	// Two sockets per flusher, so each fan-out is a batch of at least two.
	var cs []*tclient
	for range 2 * len(s.flushers) {
		c := connect(t, s)
		c.subscribeOK("dup", "")
		cs = append(cs, c)
	}
	var sent []string
	publish := func(data string) {
		t.Helper()
		if n, err := s.Publish(context.Background(), Message{Channels: []string{"dup"}, Event: "e", Data: data}); err != nil || n != len(cs) {
			t.Fatalf("delivered %d, %v", n, err)
		}
		sent = append(sent, data)
	}
	if rings > 0 {
		armed.Store(true)
		// A fan-out normally goes out in one batch; retry in case a round
		// split it into single sends.
		for i := 0; injected.Load() == 0 && i < 100; i++ {
			publish("before-" + strconv.Itoa(i))
			for _, c := range cs {
				c.expectExactly("dup", sent[len(sent)-1])
			}
			sent = sent[:0]
		}
		if injected.Load() == 0 {
			t.Fatal("no batch of two or more sends to fail")
		}
	}
	for i := range 5 {
		publish("after-" + strconv.Itoa(i))
	}
	for _, c := range cs {
		c.expectExactly("dup", sent...)
		c.quiet("e")
	}
	if rings > 0 && len(ringFlushers(s)) != rings-1 {
		t.Fatalf("%d flushers with a ring, want %d (the failed one dropped)", len(ringFlushers(s)), rings-1)
	}
}
