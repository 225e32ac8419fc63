package edge

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lesismal/nbio"
	"github.com/milequest/pushercm/internal/pushertest"
)

// TestAcceptListenerConns: the listener hands nbio a socket of its own with
// the addresses Go's listener would report and TCP_NODELAY set, also when it
// is bound to an unspecified address (the local address is then the socket's).
func TestAcceptListenerConns(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", ":0"} {
		t.Run(addr, func(t *testing.T) {
			ln := listen(t, addr, slog.New(slog.DiscardHandler))
			defer func() { _ = ln.Close() }()
			if _, ok := ln.(*acceptListener); !ok {
				t.Fatalf("directAccept gave a %T, want *acceptListener", ln)
			}
			port := ln.Addr().(*net.TCPAddr).Port
			client, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = client.Close() }()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			nc, ok := c.(*nbio.Conn)
			if !ok {
				t.Fatalf("Accept gave a %T, want *nbio.Conn", c)
			}
			if got, want := nc.RemoteAddr().String(), client.LocalAddr().String(); got != want {
				t.Errorf("RemoteAddr %s, want %s", got, want)
			}
			if got, want := nc.LocalAddr().String(), client.RemoteAddr().String(); got != want {
				t.Errorf("LocalAddr %s, want %s", got, want)
			}
			rc, err := nc.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var nodelay, flags int
			var serr, ferr error
			if err := rc.Control(func(fd uintptr) {
				nodelay, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
				flags, ferr = fcntl(int(fd), syscall.F_GETFL)
			}); err != nil {
				t.Fatal(err)
			}
			if serr != nil || nodelay == 0 {
				t.Errorf("TCP_NODELAY %d (%v), want set", nodelay, serr)
			}
			if ferr != nil || flags&syscall.O_NONBLOCK == 0 {
				t.Errorf("file status flags %#x (%v), want O_NONBLOCK", flags, ferr)
			}
		})
	}
}

// TestAcceptListenerClose: Close ends a waiting Accept with net.ErrClosed,
// which nbhttp's accept loop takes as the end.
func TestAcceptListenerClose(t *testing.T) {
	ln := listen(t, "127.0.0.1:0", slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	_ = ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still waiting 5 s after Close")
	}
}

// TestAcceptListenerWaitsOutEMFILE: out of descriptors, Accept waits (and
// logs it once) instead of returning EMFILE, on which nbhttp's accept loop
// would spin; once a descriptor is free it accepts the waiting client. It
// runs in a child process, whose open-file limit it lowers.
func TestAcceptListenerWaitsOutEMFILE(t *testing.T) {
	if os.Getenv("EDGE_EMFILE_CHILD") == "1" {
		emfileChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcceptListenerWaitsOutEMFILE$", "-test.v")
	cmd.Env = append(os.Environ(), "EDGE_EMFILE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func emfileChild(t *testing.T) {
	var logs pushertest.Buffer
	ln := listen(t, "127.0.0.1:0", slog.New(slog.NewTextHandler(&logs, nil)))
	defer func() { _ = ln.Close() }()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = 64
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// Take every descriptor but one, for the client.
	var fill []int
	defer func() {
		for _, fd := range fill {
			_ = syscall.Close(fd)
		}
	}()
	for {
		fd, err := syscall.Dup(0)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		fill = append(fill, fd)
	}
	_ = syscall.Close(fill[len(fill)-1])
	fill = fill[:len(fill)-1]
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Close() }()

	got := make(chan net.Conn, 1)
	failed := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			failed <- err
			return
		}
		got <- c
	}()
	select {
	case c := <-got:
		_ = c.Close()
		t.Fatal("accepted with no descriptor free")
	case err := <-failed:
		t.Fatalf("Accept out of descriptors: %v, want it to wait", err)
	case <-time.After(200 * time.Millisecond):
	}
	if n := strings.Count(logs.String(), "accept failed"); n != 1 {
		t.Fatalf("%d warnings in 200 ms, want 1:\n%s", n, logs.String())
	}
	_ = syscall.Close(fill[len(fill)-1])
	fill = fill[:len(fill)-1]
	select {
	case c := <-got:
		if c.RemoteAddr().String() != client.LocalAddr().String() {
			t.Errorf("accepted %s, want the waiting client %s", c.RemoteAddr(), client.LocalAddr())
		}
		_ = c.Close()
	case err := <-failed:
		t.Fatalf("Accept: %v", err)
	case <-time.After(3 * time.Second):
		t.Fatal("a descriptor is free, but Accept still waits after 3 s")
	}
	if !strings.Contains(logs.String(), "accepting again") {
		t.Errorf("no log that accepting resumed:\n%s", logs.String())
	}
}

func fcntl(fd, cmd int) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(cmd), 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// listen is the edge's listener on addr, as Server.Start makes it.
func listen(t *testing.T, addr string, log *slog.Logger) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return directAccept(ln, log)
}
