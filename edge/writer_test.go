package edge

import (
	"bytes"
	"net"
	"syscall"
	"testing"
)

// loopConn records what reaches the event loop's Write.
type loopConn struct {
	net.Conn
	buf bytes.Buffer
}

func (c *loopConn) Write(b []byte) (int, error) { return c.buf.Write(b) }

// TestSockWriterSettle: the kernel's answer to a ring send decides what goes to
// the event loop, for a socket that is fine.
func TestSockWriterSettle(t *testing.T) {
	buf := []byte("0123456789")
	for _, tc := range []struct {
		name     string
		res      int32
		done     bool
		outcome  ringOutcome
		sent     int
		wantLoop string
	}{
		{"all", 10, true, ringSentAll, 10, ""},
		{"part", 4, true, ringSentPart, 4, "456789"},
		{"socket buffer full", -int32(syscall.EAGAIN), true, ringSentPart, 0, "0123456789"},
		{"kernel refused", -int32(syscall.EINVAL), true, ringRefused, 0, "0123456789"},
		{"ring failed before sending", 0, false, ringNotSent, 0, "0123456789"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lc := &loopConn{}
			var w sockWriter
			w.attach(lc)
			outcome, sent := w.settle(buf, tc.res, tc.done, false)
			if outcome != tc.outcome || sent != tc.sent || lc.buf.String() != tc.wantLoop {
				t.Fatalf("outcome %d sent %d loop %q, want %d %d %q", outcome, sent, lc.buf.String(), tc.outcome, tc.sent, tc.wantLoop)
			}
			if got := w.loopBytes.Load(); got != int64(len(tc.wantLoop)) {
				t.Fatalf("loopBytes %d, want %d", got, len(tc.wantLoop))
			}
		})
	}
}

// TestSockWriterClaim: a socket that is not an event-loop conn, or a flusher
// without a ring, always writes through the loop; loopWritten never lets the
// count go below zero.
func TestSockWriterClaim(t *testing.T) {
	var w sockWriter
	w.attach(&loopConn{})
	if r := w.claim(true); r != routeLoop {
		t.Fatalf("non-nbio conn: route %d", r)
	}
	if r := w.claim(false); r != routeLoop {
		t.Fatalf("no ring: route %d", r)
	}
	w.write([]byte("abc"))
	w.loopWritten(5) // 2 bytes nbio wrote itself
	if got := w.loopBytes.Load(); got != 0 {
		t.Fatalf("loopBytes %d", got)
	}
}
