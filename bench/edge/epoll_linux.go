package edgebench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Receiver reads many clients' sockets with a few epoll loops instead of a goroutine
// per socket, so the load tool spends less of the shared CPU than the server it
// measures.
type Receiver struct {
	loops    []*loop
	Received atomic.Int64
	LastRecv atomic.Int64 // unix nanos
	Closed   atomic.Int64 // sockets closed by the server (close frame or EOF)
	lat      *Latencies
	wg       sync.WaitGroup
	// frames, when set, counts the messages of another protocol's text frame
	// (see NewReceiverFor).
	frames Framing
	// spans, when set, gets every message's delivery (see TrackSpans).
	spans atomic.Pointer[Spans]
}

// TrackSpans records every message read from now on into s, by the publish
// request it belongs to (see Spans). s is complete once Close returns.
func (r *Receiver) TrackSpans(s *Spans) { r.spans.Store(s) }

type loop struct {
	r     *Receiver
	epfd  int
	mu    sync.Mutex
	conns map[int32]*rconn
	stop  atomic.Bool

	sample uint64 // frames seen, for latency sampling
	spans  *SpanRecorder
}

// latencySample: one text frame in latencySample has its latency recorded.
const latencySample = 8

type rconn struct {
	fd  int
	buf []byte // unparsed bytes
}

// NewReceiver starts n epoll loops recording latencies into lat.
func NewReceiver(n int, lat *Latencies) (*Receiver, error) {
	r := &Receiver{lat: lat}
	for i := 0; i < n; i++ {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return nil, err
		}
		l := &loop{r: r, epfd: epfd, conns: make(map[int32]*rconn)}
		r.loops = append(r.loops, l)
		r.wg.Add(1)
		go l.run()
	}
	return r, nil
}

// NewReceiverFor is NewReceiver for sockets that speak another protocol after
// their handshake (see AddConn), counted by f.
func NewReceiverFor(n int, lat *Latencies, f Framing) (*Receiver, error) {
	r, err := NewReceiver(n, lat)
	if err != nil {
		return nil, err
	}
	r.frames = f
	return r, nil
}

// Add hands a connected, subscribed client to the receiver; the Client must not be
// used afterwards.
func (r *Receiver) Add(i int, c *Client) error {
	if c.br.Buffered() > 0 {
		return errors.New("client has unread buffered bytes")
	}
	return r.AddConn(i, c.conn)
}

// AddConn hands over a connected socket (a *net.TCPConn) whose owner holds no
// unread bytes of it; conn must not be used afterwards.
func (r *Receiver) AddConn(i int, conn net.Conn) error {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return fmt.Errorf("not a TCP conn: %T", conn)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var fd int
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = syscall.Dup(int(s)) }); err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	_ = conn.Close() // the dup keeps the socket open, outside Go's poller
	if err := syscall.SetNonblock(fd, true); err != nil {
		return err
	}
	l := r.loops[i%len(r.loops)]
	l.mu.Lock()
	l.conns[int32(fd)] = &rconn{fd: fd}
	l.mu.Unlock()
	return syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)})
}

// Close stops the loops and closes every socket.
func (r *Receiver) Close() {
	for _, l := range r.loops {
		l.stop.Store(true)
	}
	r.wg.Wait()
	for _, l := range r.loops {
		for _, c := range l.conns {
			_ = syscall.Close(c.fd)
		}
		_ = syscall.Close(l.epfd)
	}
}

func (l *loop) run() {
	defer l.r.wg.Done()
	events := make([]syscall.EpollEvent, 256)
	rbuf := make([]byte, 64<<10)
	rec := l.r.lat.Recorder()
	defer rec.Flush()
	defer func() {
		if l.spans != nil {
			l.spans.Flush()
		}
	}()
	for !l.stop.Load() {
		n, err := syscall.EpollWait(l.epfd, events, 100)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return
		}
		var got int64
		for i := 0; i < n; i++ {
			l.mu.Lock()
			c := l.conns[events[i].Fd]
			l.mu.Unlock()
			if c == nil {
				continue
			}
			got += l.readAll(c, rbuf, rec)
		}
		if got > 0 {
			l.r.Received.Add(got)
			l.r.LastRecv.Store(time.Now().UnixNano())
		}
	}
}

// readAll drains a socket and parses complete frames; it returns text frames seen.
func (l *loop) readAll(c *rconn, rbuf []byte, rec *Recorder) int64 {
	var got int64
	for {
		n, err := syscall.Read(c.fd, rbuf)
		if n > 0 {
			// Parse straight from the read buffer; only a partial frame at the
			// end is kept (copied) for the next read.
			data := rbuf[:n]
			if len(c.buf) > 0 {
				c.buf = append(c.buf, data...)
				data = c.buf
			}
			rest, k := l.parse(c, data, rec)
			got += k
			c.buf = append(c.buf[:0], rest...)
		}
		if err == syscall.EAGAIN {
			return got
		}
		if err != nil || n == 0 {
			l.drop(c)
			return got
		}
		if n < len(rbuf) {
			return got
		}
	}
}

func (l *loop) drop(c *rconn) {
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	l.mu.Lock()
	delete(l.conns, int32(c.fd))
	l.mu.Unlock()
	_ = syscall.Close(c.fd)
	l.r.Closed.Add(1)
}

var pongFrame = func() []byte {
	// A masked client text frame {"event":"pusher:pong","data":{}} with a zero mask.
	p := []byte(`{"event":"pusher:pong","data":{}}`)
	return append([]byte{0x81, 0x80 | byte(len(p)), 0, 0, 0, 0}, p...)
}()

// parse handles the complete frames at the start of b and returns the rest.
func (l *loop) parse(c *rconn, b []byte, rec *Recorder) ([]byte, int64) {
	var got int64
	now := time.Now().UnixNano()
	if l.spans == nil {
		if s := l.r.spans.Load(); s != nil {
			l.spans = s.Recorder()
		}
	}
	for len(b) >= 2 {
		op := b[0] & 0x0f
		ln := int(b[1] & 0x7f)
		h := 2
		switch ln {
		case 126:
			if len(b) < 4 {
				goto done
			}
			ln = int(binary.BigEndian.Uint16(b[2:]))
			h = 4
		case 127:
			if len(b) < 10 {
				goto done
			}
			ln = int(binary.BigEndian.Uint64(b[2:]))
			h = 10
		}
		if len(b) < h+ln {
			break
		}
		p := b[h : h+ln]
		switch op {
		case 0x1:
			if f := l.r.frames; f != nil {
				k, reply := f(p)
				if reply != nil {
					_, _ = syscall.Write(c.fd, reply)
				}
				got += int64(k)
				if k > 0 {
					l.latency(p, now, rec)
				}
			} else if containsPing(p) {
				_, _ = syscall.Write(c.fd, pongFrame)
			} else {
				got++
				l.latency(p, now, rec)
			}
		case 0x9:
			_, _ = syscall.Write(c.fd, []byte{0x8A, 0x80, 0, 0, 0, 0})
		}
		b = b[h+ln:]
	}
done:
	return b, got
}

// latency records the latency of a message read at now. Without spans it is
// sampled, one message in latencySample: finding and parsing the timestamp
// cost the tool more than reading the frame in the fastest runs, and it
// shares the CPUs with the server it measures (counting stays exact). While
// spans are tracked every timestamp is parsed for them anyway, so every
// message's latency is recorded.
func (l *loop) latency(p []byte, now int64, rec *Recorder) {
	if l.spans != nil {
		if ts := parseTS(p); ts > 0 {
			l.spans.Add(ts, now)
			rec.Add(time.Duration(now - ts))
		}
		return
	}
	if l.sample++; l.sample%latencySample == 0 {
		if ts := parseTS(p); ts > 0 {
			rec.Add(time.Duration(now - ts))
		}
	}
}

func containsPing(p []byte) bool {
	return len(p) > 20 && string(p[:22]) == `{"event":"pusher:ping"`
}
