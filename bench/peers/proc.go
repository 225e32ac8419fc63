package peers

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"time"
)

// Proc is one running server.
type Proc struct {
	Name string
	PID  int
	// WSAddr serves the subscribers, APIAddr the HTTP publish API (the same
	// listener for pushercm and soketi), GRPCAddr the gRPC API ("" for none).
	WSAddr, APIAddr, GRPCAddr string
	// OpsAddr serves pushercm's /metrics ("" for the other servers).
	OpsAddr string

	cmd  *exec.Cmd
	done chan struct{}
	dir  string
	log  *tailBuffer
}

// Stop interrupts the server, kills it after 10 s and removes its files.
func (p *Proc) Stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
}

// start runs cmd with its output kept (the tail is shown when it fails),
// never outliving this process.
func start(name string, cmd *exec.Cmd, dir string) (*Proc, error) {
	cmd.SysProcAttr = procAttr()
	tb := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = tb, tb
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &Proc{Name: name, PID: cmd.Process.Pid, cmd: cmd, done: make(chan struct{}), dir: dir, log: tb}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// startPiped is start for a server whose ready line (matched by re on its
// stderr) names its addresses.
func startPiped(name string, cmd *exec.Cmd, dir string, re *regexp.Regexp) (*Proc, []string, error) {
	cmd.SysProcAttr = procAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, nil, err
	}
	tb := &tailBuffer{}
	cmd.Stdout = tb
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &Proc{Name: name, PID: cmd.Process.Pid, cmd: cmd, done: make(chan struct{}), dir: dir, log: tb}
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			_, _ = tb.Write(append(sc.Bytes(), '\n'))
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	select {
	case m := <-found:
		return p, m, nil
	case <-p.done:
		return nil, nil, fmt.Errorf("%s exited before it was ready: %s", name, tb.String())
	case <-time.After(60 * time.Second):
		p.Stop()
		return nil, nil, fmt.Errorf("%s not ready within 60s: %s", name, tb.String())
	}
}

// waitListening waits until every address accepts TCP connections.
func (p *Proc) waitListening(addrs ...string) error {
	deadline := time.Now().Add(60 * time.Second)
	for _, a := range addrs {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				_ = c.Close()
				break
			}
			select {
			case <-p.done:
				return fmt.Errorf("%s exited before it was ready: %s", p.Name, p.log.String())
			default:
			}
			if time.Now().After(deadline) {
				p.Stop()
				return fmt.Errorf("%s: %s not listening within 60s: %s", p.Name, a, p.log.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// freePorts returns n distinct loopback ports free at the time of the call.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// tailBuffer keeps the last 4 KiB written to it.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = append(t.b[:0], t.b[len(t.b)-4096:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
