package proctest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/milequest/pushercm/internal/pushertest"
)

// Process is a running pushercm.
type Process struct {
	GRPCAddr, HTTPAddr, OpsAddr string
	Cmd                         *exec.Cmd

	exited chan struct{}
	err    error // Cmd.Wait's, set before exited is closed

	mu          sync.Mutex
	log, stdout strings.Builder
}

var servingLine = regexp.MustCompile(`msg="pushercm serving".* grpc=(\S+) http=(\S+) ops=(\S+)`)

// Start runs bin with args and exactly the environment env, and waits until
// it serves.
func Start(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	return StartCmd(t, cmd)
}

// StartCmd is Start for a command the test prepared itself (a chroot, a
// working directory); cmd.Env is used as it is (nil: this process's
// environment, see CleanEnv), and cmd.Stdout and cmd.Stderr must be nil.
func StartCmd(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
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
	p := &Process{Cmd: cmd, exited: make(chan struct{})}
	ready := make(chan []string, 1)
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() {
		defer pipes.Done()
		p.scan(stderr, &p.log, func(line string) {
			if m := servingLine.FindStringSubmatch(line); m != nil {
				select {
				case ready <- m[1:]:
				default:
				}
			}
		})
	}()
	go func() {
		defer pipes.Done()
		p.scan(stdout, &p.stdout, nil)
	}()
	go func() {
		pipes.Wait()
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited: // stopped by the test (SIGTERM, SIGKILL)
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("pushercm log:\n%s", p.Log())
		}
	})
	select {
	case a := <-ready:
		p.GRPCAddr, p.HTTPAddr, p.OpsAddr = a[0], a[1], a[2]
	case <-p.exited:
		t.Fatalf("pushercm exited before serving: %v\n%s", p.err, p.Log())
	case <-time.After(60 * time.Second):
		t.Fatalf("pushercm did not start within 60s\n%s", p.Log())
	}
	return p
}

func (p *Process) scan(r io.Reader, into *strings.Builder, each func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		into.WriteString(line + "\n")
		p.mu.Unlock()
		if each != nil {
			each(line)
		}
	}
}

// Log is what the process logged (stderr) so far.
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Stdout is what the process printed on stdout so far.
func (p *Process) Stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

// Exited is closed once the process has exited and been waited for.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is the process's exit error; read it after Exited.
func (p *Process) Err() error { return p.err }

// WaitLog waits up to d for the log to contain what.
func (p *Process) WaitLog(t testing.TB, what string, d time.Duration) {
	t.Helper()
	pushertest.EventuallyWithin(t, d, fmt.Sprintf("%q in the log", what), func() bool {
		return strings.Contains(p.Log(), what)
	})
}

// Stop sends SIGTERM (the graceful path) and waits up to d for the process
// to exit; it is an error when the process exits with a failure or has to be
// killed after d.
func (p *Process) Stop(d time.Duration) error {
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.exited:
		if p.err != nil {
			return fmt.Errorf("pushercm exit: %w", p.err)
		}
		return nil
	case <-time.After(d):
		_ = p.Cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("pushercm did not stop within %s", d)
	}
}

// CleanEnv is this process's environment without pushercm, Pusher and OTEL
// settings, so that a developer's shell cannot change what a test sees.
func CleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PUSHERCM_") || strings.HasPrefix(kv, "PUSHER_") || strings.HasPrefix(kv, "NEXT_PUBLIC_PUSHER_") || strings.HasPrefix(kv, "OTEL_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}
