//go:build linux

package e2e_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestGRPCListenerFailureStopsTheProcess: when the gRPC listener stops
// accepting (here: its socket is shut down under the process, so accept
// fails with EINVAL, an error grpc-go does not retry), pushercm does not
// run on half dead: it shuts down and exits non-zero.
func TestGRPCListenerFailureStopsTheProcess(t *testing.T) {
	s := StartServer(t, nil)
	fd := listenerFD(t, s.cmd.Process.Pid, s.GRPCAddr)
	pidfd, err := unix.PidfdOpen(s.cmd.Process.Pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open: %v", err)
	}
	defer func() { _ = unix.Close(pidfd) }()
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		t.Fatalf("pidfd_getfd: %v", err)
	}
	defer func() { _ = unix.Close(dup) }()
	// The duplicate shares the socket: shutting it down is what a failing
	// listener looks like from inside the process.
	if err := unix.Shutdown(dup, unix.SHUT_RDWR); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	code, err := s.Wait(ctx)
	if ctx.Err() != nil {
		t.Fatalf("still running after the gRPC listener failed\n%s", s.Log())
	}
	if code != 1 {
		t.Fatalf("exit code %d (%v), want 1\n%s", code, err, s.Log())
	}
}

// listenerFD finds the descriptor number of the TCP socket listening on
// addr in process pid, through /proc.
func listenerFD(t *testing.T, pid int, addr string) int {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(host).To4()
	p, _ := strconv.Atoi(port)
	local := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], p)
	table, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		t.Fatal(err)
	}
	inode := ""
	for _, line := range strings.Split(string(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && f[1] == local && f[3] == "0A" { // 0A: LISTEN
			inode = f[9]
		}
	}
	if inode == "" {
		t.Fatalf("no listening socket %s (%s) in /proc/%d/net/tcp", addr, local, pid)
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && target == "socket:["+inode+"]" {
			fd, _ := strconv.Atoi(e.Name())
			return fd
		}
	}
	t.Fatalf("socket inode %s not among the descriptors of %d", inode, pid)
	return -1
}
