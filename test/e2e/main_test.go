// Package e2e_test runs the real pushercm binary on free loopback ports and
// talks to it the way users do: gRPC over TCP, WebSocket clients, HTTP.
package e2e_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/milequest/pushercm/internal/pushertest/proctest"
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
	*proctest.Process
	cmd *exec.Cmd
}

// StartServer runs `pushercm serve --dev` on 127.0.0.1:0 listeners, plus
// extra arguments, with extra environment variables ("K=V"), and waits
// until it serves. It is stopped (SIGKILL if still running) at cleanup.
func StartServer(t *testing.T, env []string, args ...string) *Server {
	t.Helper()
	argv := append([]string{"serve", "--dev", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0"}, args...)
	p := proctest.Start(t, binary, append(proctest.CleanEnv(), env...), argv...)
	return &Server{Process: p, cmd: p.Cmd}
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
	case <-s.Exited():
		return s.cmd.ProcessState.ExitCode(), s.Err()
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}
