//go:build linux

package edge

import (
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/lesismal/nbio"
)

// acceptListener accepts sockets with accept4 and hands them to nbio as they
// are. A *net.TCPConn from Go's listener would be registered with Go's
// netpoller, then duplicated by nbio, closed and unregistered, and the copy
// registered with nbio's poller: the accept goroutine took 21 % of the
// server's CPU while clients connected, 11 % this way (BENCHMARKS.md,
// "Accepting into the event loops").
//
// Accept waits in Go's netpoller on the listening socket. It retries what
// Go's listener retries (EINTR, ECONNABORTED) and, unlike it, waits out any
// other failure (a shortage of descriptors or memory: EMFILE, ENFILE,
// ENOBUFS, ENOMEM) with a backoff of 5 ms doubling to 1 s, logged once per
// episode: nbhttp's accept loop would spin on a returned error, logging each
// time. It returns an error only once the listener is closed (or if Go can no
// longer wait on it).
type acceptListener struct {
	f    *os.File // the listening socket, waited on in Go's netpoller
	rc   syscall.RawConn
	addr *net.TCPAddr
	log  *slog.Logger

	closeOnce sync.Once
	closed    chan struct{}
}

// directAccept returns a listener that accepts ln's connections straight into
// nbio, or ln itself when ln is not a TCP listener whose socket Go can wait
// on. It takes ln over: closing the returned listener closes the socket.
func directAccept(ln net.Listener, log *slog.Logger) net.Listener {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return ln
	}
	// A *net.TCPListener's RawConn cannot wait for readability, an *os.File's
	// can: keep a duplicate of the socket (non-blocking like the original)
	// and close Go's listener.
	f, err := tl.File()
	if err != nil {
		return ln
	}
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return ln
	}
	a := tl.Addr().(*net.TCPAddr)
	_ = tl.Close()
	return &acceptListener{f: f, rc: rc, addr: a, log: log, closed: make(chan struct{})}
}

// Addr is the listening address.
func (l *acceptListener) Addr() net.Addr { return l.addr }

// Accept returns the next connection as an *nbio.Conn.
func (l *acceptListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		var (
			nfd  int
			sa   syscall.Sockaddr
			aerr error
		)
		err := l.rc.Read(func(fd uintptr) bool {
			for {
				nfd, sa, aerr = syscall.Accept4(int(fd), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
				if aerr != syscall.EINTR {
					return aerr != syscall.EAGAIN
				}
			}
		})
		if err != nil {
			select {
			case <-l.closed:
				err = net.ErrClosed
			default:
			}
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: err}
		}
		switch aerr {
		case nil:
		case syscall.ECONNABORTED: // the client left before it was accepted
			continue
		default:
			// EMFILE, ENFILE, ENOBUFS, ENOMEM, or a firewall's EPERM:
			// nbhttp's accept loop would spin on a returned error, so wait.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
				l.log.Warn("edge: accept failed; new connections wait until it succeeds",
					"err", os.NewSyscallError("accept4", aerr),
					"hint", "EMFILE: raise the open-file limit (ulimit -n) or lower edge.maxConnections")
			} else {
				backoff = min(2*backoff, time.Second)
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.closed:
				t.Stop()
			}
			continue
		}
		if backoff != 0 {
			l.log.Info("edge: accepting again")
		}
		// Go's listener sets TCP_NODELAY on every socket it accepts; small
		// frames go out at once.
		_ = syscall.SetsockoptInt(nfd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		laddr := l.addr
		if laddr.IP.IsUnspecified() { // the socket's own address
			if lsa, err := syscall.Getsockname(nfd); err == nil {
				laddr = sockaddrTCP(lsa)
			}
		}
		return nbio.NewTCPConn(nfd, laddr, sockaddrTCP(sa)), nil
	}
}

// Close stops Accept, also during a backoff.
func (l *acceptListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.f.Close()
}

// sockaddrTCP is net's TCPAddr for sa, as Go's listener would report it.
func sockaddrTCP(sa syscall.Sockaddr) *net.TCPAddr {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
	case *syscall.SockaddrInet6:
		a := &net.TCPAddr{IP: sa.Addr[:], Port: sa.Port}
		if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				a.Zone = ifi.Name
			} else {
				a.Zone = strconv.FormatUint(uint64(sa.ZoneId), 10)
			}
		}
		return a
	}
	return &net.TCPAddr{}
}
