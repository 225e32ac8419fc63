package edge

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawHTTP is a plain TCP client: it writes a request head and as much body as
// a test wants, and reads the answer while it is still writing.
type rawHTTP struct {
	t    *testing.T
	conn net.Conn
	resp chan int
	err  chan error
}

func dialHTTP(t *testing.T, s *Server, head string) *rawHTTP {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.Addr().String(), waitFor)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &rawHTTP{t: t, conn: conn, resp: make(chan int, 1), err: make(chan error, 1)}
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatalf("write head: %v", err)
	}
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			c.err <- err
			return
		}
		_ = resp.Body.Close()
		c.resp <- resp.StatusCode
	}()
	return c
}

// answer waits for the response's status; a connection closed without one is
// an error.
func (c *rawHTTP) answer() (int, error) {
	select {
	case r := <-c.resp:
		return r, nil
	case err := <-c.err:
		return 0, err
	case <-time.After(waitFor):
		return 0, fmt.Errorf("no answer within %v", waitFor)
	}
}

func postHead(path, extra string) string {
	return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n" + extra + "\r\n"
}

// A declared body over the route's limit is refused with 413 as soon as the
// headers are read, before the body arrives: the client has sent 64 KiB of
// the 60 MiB it announced.
func TestBodyOverLimitRefusedBeforeBody(t *testing.T) {
	s := startServer(t, testConfig())
	s.HandleLimit("/small", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }), 16<<10)
	for _, path := range []string{"/apps/app-id/events", "/small", "/nowhere"} {
		t.Run(path, func(t *testing.T) {
			c := dialHTTP(t, s, postHead(path, "Content-Length: 62914560\r\n"))
			if _, err := c.conn.Write(make([]byte, 64<<10)); err != nil {
				t.Fatalf("write body: %v", err)
			}
			status, err := c.answer()
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413", status)
			}
		})
	}
	if got := s.Stats().HTTPRequestsRefused; got != 3 {
		t.Fatalf("HTTPRequestsRefused = %d, want 3", got)
	}
	// Within the limit the route's handler answers.
	c := dialHTTP(t, s, postHead("/small", "Content-Length: 10\r\n")+"0123456789")
	if status, err := c.answer(); err != nil || status != http.StatusNoContent {
		t.Fatalf("small body: %d %v", status, err)
	}
}

// A chunked body is counted as it arrives and refused once over the limit.
func TestChunkedBodyOverLimit(t *testing.T) {
	s := startServer(t, testConfig())
	s.HandleLimit("/small", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }), 16<<10)
	c := dialHTTP(t, s, postHead("/small", "Transfer-Encoding: chunked\r\n"))
	const total = 60 << 20
	var sent atomic.Int64
	stop := make(chan struct{})
	go func() {
		chunk := []byte(fmt.Sprintf("%x\r\n%s\r\n", 4096, strings.Repeat("a", 4096)))
		for sent.Load() < total {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.conn.Write(chunk); err != nil {
				return
			}
			sent.Add(4096)
		}
		_, _ = io.WriteString(c.conn, "0\r\n\r\n")
	}()
	status, err := c.answer()
	at := sent.Load()
	close(stop)
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", status)
	}
	// Only what sits in the socket buffers may have gone out before the answer.
	if at > total/4 {
		t.Fatalf("413 came after %d of %d bytes", at, total)
	}
}

// Header lines are bounded too: one over-long line, or many short ones, get
// 431 while the head is still arriving.
func TestHeaderOverLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxHeaderBytes = 8 << 10
	s := startServer(t, cfg)
	tests := []struct {
		name string
		head string
	}{
		{"one long line", "GET /app/" + testKey + "?protocol=7 HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 1<<20)},
		{"many lines", "GET /app/" + testKey + "?protocol=7 HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Many: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 30000)},
		{"long target", "GET /app/" + testKey + "?protocol=7&x=" + strings.Repeat("a", 1<<20)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialHTTP(t, s, "")
			go func() { _, _ = io.WriteString(c.conn, tc.head) }()
			status, err := c.answer()
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusRequestHeaderFieldsTooLarge {
				t.Fatalf("status %d, want 431", status)
			}
		})
	}
	// A head within the limit still upgrades.
	connect(t, s)
}

// Memory stays bounded under several parallel uploaders: once refused, their
// bytes are read and dropped, never kept.
func TestParallelUploadsDoNotGrowHeap(t *testing.T) {
	s := startServer(t, testConfig())
	const attackers, each = 8, 8 << 20
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	conns := make([]net.Conn, attackers)
	for i := range attackers {
		conn, err := net.DialTimeout("tcp", s.Addr().String(), waitFor)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = conn
		t.Cleanup(func() { _ = conn.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = conn.SetWriteDeadline(time.Now().Add(waitFor))
			if _, err := io.WriteString(conn, postHead("/apps/app-id/events", "Content-Length: 62914560\r\n")); err != nil {
				return
			}
			buf := make([]byte, 64<<10)
			for n := 0; n < each; n += len(buf) {
				if _, err := conn.Write(buf); err != nil {
					return // closed by the server after its answer: fine
				}
			}
		}()
	}
	wg.Wait()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 16<<20 {
		t.Fatalf("heap grew by %d MiB while %d clients uploaded %d MiB each", grown>>20, attackers, each>>20)
	}
}
