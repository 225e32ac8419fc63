// Package e2e_test runs the real pushercm binary on free loopback ports and
// talks to it the way users do: gRPC over TCP, WebSocket clients, HTTP.
package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the pushercm binary built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pushercm-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "pushercm")
	build := exec.Command("go", "build", "-race", "-o", binary, "github.com/milequest/pushercm/cmd/pushercm")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building pushercm:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// Server is a running pushercm process.
type Server struct {
	GRPCAddr, HTTPAddr, OpsAddr string
	cmd                         *exec.Cmd
	done                        chan error
	exited                      chan struct{} // closed once cmd.Wait returned
	mu                          sync.Mutex
	log                         strings.Builder
	stdout                      strings.Builder
}

var servingLine = regexp.MustCompile(`msg="pushercm serving".* grpc=(\S+) http=(\S+) ops=(\S+)`)

// StartServer runs `pushercm serve --dev` on 127.0.0.1:0 listeners, plus
// extra arguments, with extra environment variables ("K=V"), and waits
// until it serves. It is stopped (SIGKILL if still running) at cleanup.
func StartServer(t *testing.T, env []string, args ...string) *Server {
	t.Helper()
	argv := append([]string{"serve", "--dev", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0"}, args...)
	cmd := exec.Command(binary, argv...)
	cmd.Env = append(cleanEnv(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &Server{cmd: cmd, done: make(chan error, 1), exited: make(chan struct{})}
	ready := make(chan [3]string, 1)
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() {
		defer pipes.Done()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if m := servingLine.FindStringSubmatch(line); m != nil {
				select {
				case ready <- [3]string{m[1], m[2], m[3]}:
				default:
				}
			}
		}
	}()
	go func() {
		defer pipes.Done()
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.stdout.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
		}
	}()
	go func() {
		pipes.Wait()
		s.done <- cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		// Not cmd.ProcessState: Wait writes it on another goroutine when the
		// process exits on its own (a test's SIGKILL).
		select {
		case <-s.exited:
		default:
			_ = cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("pushercm log:\n%s", s.Log())
		}
	})
	select {
	case a := <-ready:
		s.GRPCAddr, s.HTTPAddr, s.OpsAddr = a[0], a[1], a[2]
	case err := <-s.done:
		t.Fatalf("pushercm exited before serving: %v\n%s", err, s.Log())
	case <-time.After(60 * time.Second):
		t.Fatalf("pushercm did not start within 60s\n%s", s.Log())
	}
	return s
}

// Log is what the process logged so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// Stdout is what the process printed on stdout so far.
func (s *Server) Stdout() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stdout.String()
}

// Signal sends sig to the process.
func (s *Server) Signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// Wait waits for the process to exit, at most d.
func (s *Server) Wait(ctx context.Context) (exitCode int, err error) {
	select {
	case err := <-s.done:
		return s.cmd.ProcessState.ExitCode(), err
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

// cleanEnv is the test's environment without pushercm and Pusher settings,
// so a developer's shell cannot change what the tests see.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PUSHERCM_") || strings.HasPrefix(kv, "PUSHER_") || strings.HasPrefix(kv, "NEXT_PUBLIC_PUSHER_") || strings.HasPrefix(kv, "OTEL_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}
