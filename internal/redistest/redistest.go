package redistest

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/milequest/pushercm/internal/pushertest"
)

// DefaultAddr is where these machines run Redis.
const DefaultAddr = "127.0.0.1:6379"

var shared struct {
	once sync.Once
	addr string
	err  error
}

// Addr is the address of a Redis the test may use, shared with the other tests
// of the binary: DefaultAddr when it answers, else a server started once for the
// test binary. Use Prefix to keep keys apart.
func Addr(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() {
		if Ping(DefaultAddr) == nil {
			shared.addr = DefaultAddr
			return
		}
		var s *Server
		s, shared.err = start("")
		if shared.err == nil {
			shared.addr = s.Addr
		}
	})
	if shared.err != nil {
		t.Fatalf("redistest: no Redis at %s and none could be started: %v", DefaultAddr, shared.err)
	}
	return shared.addr
}

// Prefix is a key prefix of the test's own ("pushercm-test-<name>-<random>").
// Every key under it is deleted when the test ends.
func Prefix(t testing.TB) string {
	t.Helper()
	addr := Addr(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.NewReplacer("/", "-", " ", "_", ":", "_").Replace(t.Name())
	p := "pushercm-test-" + name + "-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		if err := DeletePrefix(addr, p); err != nil {
			t.Logf("redistest: cleaning up prefix %s: %v", p, err)
		}
	})
	return p
}

// Server is a redis-server process started by this package.
type Server struct {
	Addr string
	port int
	dir  string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start runs a redis-server of the test's own on a free loopback port, stopped at
// cleanup. Stop and Restart let a test take it away and bring it back on the same
// address.
func Start(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	s, err := start(dir)
	if err != nil {
		t.Fatalf("redistest: starting redis-server: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Stop kills the server; the address stops answering.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same address and waits until it
// answers: empty (nothing is kept on disk), unless the test saved a snapshot
// (SAVE), which it then loads.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("redistest: server is running")
	}
	cmd, err := run(s.port, s.dir)
	if err != nil {
		return err
	}
	s.cmd = cmd
	return nil
}

// RefuseWrites puts the server in the state Redis calls MISCONF: a snapshot
// failed while stop-writes-on-bgsave-error is on, so it refuses every write and
// PING, and answers the rest. The snapshot fails because its file name is taken
// by a directory. AllowWrites lifts it.
func (s *Server) RefuseWrites() error {
	if err := os.Mkdir(filepath.Join(s.dir, "dump.rdb"), 0o755); err != nil && !os.IsExist(err) {
		return err
	}
	for _, cmd := range [][]string{
		{"CONFIG", "SET", "stop-writes-on-bgsave-error", "yes"},
		{"CONFIG", "SET", "save", "3600 1"},
		{"SET", "redistest:refuse-writes", "1"},
		{"BGSAVE"},
	} {
		if _, err := Do(s.Addr, cmd...); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(cmd, " "), err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := Do(s.Addr, "PING")
		if err != nil && strings.HasPrefix(err.Error(), "MISCONF") {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				return fmt.Errorf("redis-server on %s still answers PING after a failed snapshot", s.Addr)
			}
			return fmt.Errorf("redis-server on %s: PING after a failed snapshot: %w, want MISCONF", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// AllowWrites ends RefuseWrites: writes and PING are answered again.
func (s *Server) AllowWrites() error {
	_, err := Do(s.Addr, "CONFIG", "SET", "stop-writes-on-bgsave-error", "no")
	return err
}

func start(dir string) (*Server, error) {
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "redistest-"); err != nil {
			return nil, err
		}
	}
	if err := ensureInstalled(); err != nil {
		return nil, err
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		cmd, err := run(port, dir)
		if err != nil {
			lastErr = err
			continue
		}
		return &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, dir: dir, cmd: cmd}, nil
	}
	return nil, lastErr
}

func run(port int, dir string, extra ...string) (*exec.Cmd, error) {
	args := append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log")}, extra...)
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := Ping(addr)
		if err == nil {
			return cmd, nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			return nil, fmt.Errorf("redis-server on %s did not answer: %w\n%s", addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var install struct {
	once sync.Once
	err  error
}

// ensureInstalled installs Debian's redis-server when the command is missing.
func ensureInstalled() error {
	install.once.Do(func() {
		if _, err := exec.LookPath("redis-server"); err == nil {
			return
		}
		if os.Geteuid() != 0 {
			install.err = errors.New("redis-server is not installed and installing it needs root: apt-get install -y redis-server")
			return
		}
		for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", "redis-server"}} {
			cmd := exec.Command("apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := cmd.CombinedOutput(); err != nil {
				install.err = fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
				return
			}
		}
		if _, err := exec.LookPath("redis-server"); err != nil {
			install.err = fmt.Errorf("redis-server still missing after apt-get install: %w", err)
		}
	})
	return install.err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Ping is nil when a Redis answers PING at addr within a second.
func Ping(addr string) error {
	v, err := Do(addr, "PING")
	if err != nil {
		return err
	}
	if v != "PONG" {
		return fmt.Errorf("PING answered %v", v)
	}
	return nil
}

// CommandCalls reads INFO commandstats: the calls of each command the server
// has run since it started (or CONFIG RESETSTAT), by lower-case name.
func CommandCalls(addr string) (map[string]int, error) {
	v, err := Do(addr, "INFO", "commandstats")
	if err != nil {
		return nil, err
	}
	info, _ := v.(string)
	calls := map[string]int{}
	for _, line := range strings.Split(info, "\r\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok || !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		if c, err := strconv.Atoi(n); err == nil {
			calls[name] = c
		}
	}
	return calls, nil
}

// DeletePrefix deletes every key that starts with prefix.
func DeletePrefix(addr, prefix string) error {
	_, err := Do(addr, "EVAL", deletePrefixScript, "0", prefix+"*")
	return err
}

// deletePrefixScript deletes the keys matching ARGV[1] with SCAN, so it does not
// block the server the way KEYS would on a big shared instance.
const deletePrefixScript = `
local cursor = "0"
repeat
  local r = redis.call("SCAN", cursor, "MATCH", ARGV[1], "COUNT", 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do redis.call("UNLINK", k) end
until cursor == "0"
return 0`

// Do sends one command over a fresh connection and returns its reply: a string
// for simple and bulk strings, an int64, nil, or a []any for arrays. A Redis
// error reply is returned as an error. It exists so that test set-up needs no
// client library; tests of the product use the product's client.
func Do(addr string, args ...string) (any, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	return readReply(bufio.NewReader(c))
}

func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return nil, fmt.Errorf("redistest: bad reply line %q", line)
	}
	kind, body := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return body, nil
	case '-':
		return nil, errors.New(body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("redistest: unknown reply type %q", kind)
}

// StartCluster runs a Redis Cluster of its own for the test: three masters
// (no replicas) on free loopback ports, all 16384 slots assigned, stopped at
// cleanup. It returns the seed addresses.
func StartCluster(t testing.TB) []string {
	t.Helper()
	return startCluster(t, 3, 0).Addrs
}

// Cluster is a Redis Cluster StartClusterWithReplicas started.
type Cluster struct {
	Addrs []string // every node, masters and replicas

	mu    sync.Mutex
	procs map[string]*exec.Cmd
}

// Kill ends the node at addr with SIGKILL, as a crash would.
func (c *Cluster) Kill(addr string) {
	c.mu.Lock()
	cmd := c.procs[addr]
	delete(c.procs, addr)
	c.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// StartClusterWithReplicas is StartCluster with a replica for each master and
// a cluster-node-timeout of one second, so that a replica takes over from a
// killed master within a few seconds. It returns once every replica is in
// sync with its master.
func StartClusterWithReplicas(t testing.TB) *Cluster {
	t.Helper()
	c := startCluster(t, 6, 1, "--cluster-node-timeout", "1000")
	EventuallyReplicated(t, c.Addrs)
	return c
}

// SlotOwner is the address of the master that owns slot, as the first node of
// addrs that answers CLUSTER SLOTS says; "" when none answers or none owns it.
func SlotOwner(addrs []string, slot int64) string {
	for _, a := range addrs {
		v, err := Do(a, "CLUSTER", "SLOTS")
		if err != nil {
			continue
		}
		for _, r := range v.([]any) {
			r := r.([]any)
			if r[0].(int64) <= slot && slot <= r[1].(int64) {
				m := r[2].([]any)
				return net.JoinHostPort(m[0].(string), strconv.FormatInt(m[1].(int64), 10))
			}
		}
		return ""
	}
	return ""
}

// EventuallyReplicated waits until every replica among addrs has its master's
// link up and has read everything its master has written.
func EventuallyReplicated(t testing.TB, addrs []string) {
	t.Helper()
	pushertest.EventuallyWithin(t, 20*time.Second, "redistest: every replica in sync", func() error {
		offsets := map[string]string{} // master address -> its offset
		var replicas [][3]string       // address, master address, offset
		for _, a := range addrs {
			v, err := Do(a, "INFO", "replication")
			if err != nil {
				return fmt.Errorf("%s: %w", a, err)
			}
			info := map[string]string{}
			for _, line := range strings.Split(v.(string), "\r\n") {
				if k, val, ok := strings.Cut(line, ":"); ok {
					info[k] = val
				}
			}
			switch info["role"] {
			case "master":
				offsets[a] = info["master_repl_offset"]
			case "slave":
				if info["master_link_status"] != "up" {
					return fmt.Errorf("replica %s: link to its master %s", a, info["master_link_status"])
				}
				replicas = append(replicas, [3]string{a, net.JoinHostPort(info["master_host"], info["master_port"]), info["slave_repl_offset"]})
			}
		}
		for _, r := range replicas {
			if want, ok := offsets[r[1]]; ok && r[2] != want {
				return fmt.Errorf("replica %s at offset %s, its master at %s", r[0], r[2], want)
			}
		}
		return nil
	})
}

func startCluster(t testing.TB, nodes, replicas int, extra ...string) *Cluster {
	t.Helper()
	if err := ensureInstalled(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	c := &Cluster{procs: map[string]*exec.Cmd{}}
	t.Cleanup(func() {
		for _, a := range c.Addrs {
			c.Kill(a)
		}
	})
	for i := 0; len(c.Addrs) < nodes; i++ {
		if i > 50 {
			t.Fatal("redistest: no free port pair for a cluster node")
		}
		port, err := freePort()
		// The cluster bus listens on port+10000.
		if err != nil || port > 55000 || !portFree(port+10000) {
			continue
		}
		dir := t.TempDir()
		args := append([]string{"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf")}, extra...)
		cmd, err := run(port, dir, args...)
		if err != nil {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		c.procs[addr] = cmd
		c.Addrs = append(c.Addrs, addr)
	}
	args := append(append([]string{"--cluster", "create"}, c.Addrs...), "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	pushertest.EventuallyWithin(t, 20*time.Second, "redistest: every cluster node ready", func() error {
		for _, a := range c.Addrs {
			v, err := Do(a, "CLUSTER", "INFO")
			if err != nil {
				return fmt.Errorf("cluster node %s: %w", a, err)
			}
			if s, ok := v.(string); !ok || !strings.Contains(s, "cluster_state:ok") {
				return fmt.Errorf("cluster node %s not ready: %v", a, v)
			}
		}
		return nil
	})
	return c
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}
