package edge

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
)

// sockWriter is the one place a socket's bytes are written, and the one place
// that decides between nbio's event loop and a flusher's io_uring:
//
//   - write hands bytes to the event loop, which copies what the kernel does
//     not take at once; loopBytes counts them until the loop reports them
//     written (loopWritten).
//   - claim grants a socket to the io_uring only while the event loop holds
//     none of its bytes (a direct send must not overtake them), and only on
//     an nbio conn whose descriptor is known. It holds the socket's nbio lock
//     until release. That rests on an nbio internal (v1.6, Conn.closeWithError):
//     nbio marks a conn closed under that lock before it closes the
//     descriptor, so a descriptor seen open under the lock cannot be closed
//     and reused by another socket before release.
//   - settle applies the kernel's answer to a ring send: the rest of a short
//     send, or all of a send the ring did not make, goes to the event loop
//     (after which claim keeps the socket on the loop until the loop has
//     written it all); a send that failed because of the socket closes it.
type sockWriter struct {
	nc        net.Conn
	nbc       *nbio.Conn   // nc as the event loop's conn; nil when it is not one (no io_uring sends)
	fd        int          // nbc's descriptor, valid while nbc is open
	loopBytes atomic.Int64 // bytes handed to the event loop's Write not yet reported written
}

// attach sets the connection the writer writes to, finding the event loop's
// conn and its descriptor under an upgraded socket when there is one.
func (w *sockWriter) attach(nc net.Conn) {
	w.nc = nc
	if hc, ok := nc.(*nbhttp.Conn); ok {
		nc = hc.Conn
	}
	nbc, ok := nc.(*nbio.Conn)
	if !ok {
		return
	}
	if rc, err := nbc.SyscallConn(); err == nil && rc.Control(func(fd uintptr) { w.fd = int(fd) }) == nil {
		w.nbc = nbc
	}
}

// write writes b through the event loop.
func (w *sockWriter) write(b []byte) {
	w.loopBytes.Add(int64(len(b)))
	if n, err := w.nc.Write(b); err != nil && n <= 0 {
		w.loopBytes.Add(-int64(len(b)))
	}
}

// loopWritten records n bytes the event loop reported written (nbio's
// OnWrittenSize).
func (w *sockWriter) loopWritten(n int) {
	if v := w.loopBytes.Add(-int64(n)); v < 0 {
		// Bytes that reached the socket without passing through write
		// (close frames nbio sends itself): they were never counted.
		w.loopBytes.CompareAndSwap(v, 0)
	}
}

// route is how a socket's next write goes.
type route uint8

const (
	routeLoop   route = iota // through the event loop (write)
	routeRing                // in the flusher's io_uring batch; the socket is claimed until release
	routeClosed              // nowhere: the socket is closed
)

// claim decides the route of the next write; ring says whether the flusher
// has an io_uring. routeRing holds the socket's nbio lock until release.
func (w *sockWriter) claim(ring bool) route {
	if !ring || w.nbc == nil {
		return routeLoop
	}
	w.nbc.Lock()
	if closed, _ := w.nbc.IsClosed(); closed {
		w.nbc.Unlock()
		return routeClosed
	}
	if w.loopBytes.Load() > 0 {
		// The loop still holds bytes of ours: queue behind them.
		w.nbc.Unlock()
		return routeLoop
	}
	return routeRing
}

// release ends a claim, once the ring's io_uring_enter has returned.
func (w *sockWriter) release() { w.nbc.Unlock() }

// ringOutcome is what became of a ring send.
type ringOutcome uint8

const (
	ringSentAll  ringOutcome = iota // the kernel took all of it
	ringSentPart                    // it took part; the rest went to the event loop
	ringNotSent                     // the ring did not make the send; all went to the event loop
	ringRefused                     // the kernel refused the send itself (not the socket's fault); all went to the event loop
	ringClosed                      // the send failed because of the socket, or its result was lost: the socket is closed
)

// settle applies the result of a ring send of buf: res as the kernel reported
// it (done), or no result when the ring failed (taken: whether the kernel had
// taken the send). It returns the outcome and how many bytes the kernel took.
// Call it after release.
func (w *sockWriter) settle(buf []byte, res int32, done, taken bool) (ringOutcome, int) {
	switch {
	case !done && taken:
		// The kernel took the send but its result was lost with the ring:
		// writing the buffer again could put its bytes on the wire twice.
		_ = w.nbc.CloseWithError(errRingLost)
		return ringClosed, 0
	case !done:
		w.write(buf)
		return ringNotSent, 0
	case int(res) == len(buf):
		return ringSentAll, int(res)
	case res >= 0 || res == -int32(syscall.EAGAIN):
		// The socket buffer is full: the event loop writes the rest when the
		// client reads, and this socket goes through the loop until it has.
		sent := max(int(res), 0)
		w.write(buf[sent:])
		return ringSentPart, sent
	case socketFault(syscall.Errno(-res)):
		_ = w.nbc.CloseWithError(syscall.Errno(-res))
		return ringClosed, 0
	default:
		// The kernel refused the send itself and sent nothing: the socket is
		// fine, the ring is not.
		w.write(buf)
		return ringRefused, 0
	}
}

// errRingLost closes a socket whose io_uring send had no reported result.
var errRingLost = errors.New("edge: io_uring send result lost")

// socketFault reports whether a failed send is the socket's fault (the peer or
// the network went away), which closes the socket. Any other error (-EINVAL and
// -EOPNOTSUPP from a kernel without the operation, -ENOMEM, -ENOBUFS...) means
// the kernel did not take the send at all, so the bytes can still go through
// the event loop.
func socketFault(e syscall.Errno) bool {
	switch e {
	case syscall.EPIPE, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.ENOTCONN,
		syscall.ESHUTDOWN, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
		syscall.ENETDOWN, syscall.EHOSTDOWN, syscall.EBADF, syscall.ENOTSOCK:
		return true
	}
	return false
}
