// pushercm: not part of upstream nbio v1.6.8 (see third_party/README.md in pushercm).

//go:build linux

package nbio

import "net"

// NewTCPConn returns a Conn for fd, a connected TCP socket in non-blocking
// mode, with laddr and raddr as its LocalAddr and RemoteAddr. The Conn owns fd
// from then on and closes it. A listener that accepts sockets itself (accept4
// with SOCK_NONBLOCK) hands them to an Engine this way without the
// duplicate-and-close NBConn does for a *net.TCPConn: NBConn and the nbhttp
// Engine's listeners take a *Conn as it is.
//
//go:norace
func NewTCPConn(fd int, laddr, raddr net.Addr) *Conn {
	return &Conn{fd: fd, lAddr: laddr, rAddr: raddr, typ: ConnTypeTCP}
}
