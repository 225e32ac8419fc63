// pushercm: not part of upstream nbio v1.6.8 (see third_party/README.md in pushercm).

//go:build linux

package nbio

import (
	"errors"
	"os"
	"syscall"
)

// errNotPollable reports that Go's netpoller cannot wait on the epoll fd.
var errNotPollable = errors.New("nbio: epoll fd not pollable")

// epollWaiter waits for a poller's epoll fd to have events in Go's
// netpoller (which watches a duplicate of it) instead of in a blocking
// epoll_wait.
type epollWaiter struct {
	f  *os.File
	rc syscall.RawConn
}

// netpollWaiter returns a waiter for epfd, or nil when Go's netpoller cannot
// watch it.
func netpollWaiter(epfd int) *epollWaiter {
	dfd, err := syscall.Dup(epfd)
	if err != nil {
		return nil
	}
	syscall.CloseOnExec(dfd)
	if err := syscall.SetNonblock(dfd, true); err != nil {
		_ = syscall.Close(dfd)
		return nil
	}
	// A non-blocking fd makes os.NewFile register it with the netpoller.
	f := os.NewFile(uintptr(dfd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil
	}
	return &epollWaiter{f: f, rc: rc}
}

// Wait returns the next events of epfd, parking the goroutine (not its
// thread in a syscall) until there are some. It returns errNotPollable when
// the netpoller cannot wait on the fd; the caller then waits in epoll_wait.
func (w *epollWaiter) Wait(epfd int, events []syscall.EpollEvent) (n int, err error) {
	rerr := w.rc.Read(func(uintptr) bool {
		n, err = syscall.EpollWait(epfd, events, 0)
		// With no events and no error, wait until the epoll fd is
		// readable again; an error (EINTR too) goes back to the loop.
		return n > 0 || err != nil
	})
	if rerr != nil {
		return 0, errNotPollable
	}
	return n, err
}

// Close stops watching the duplicate fd and closes it.
func (w *epollWaiter) Close() error { return w.f.Close() }
