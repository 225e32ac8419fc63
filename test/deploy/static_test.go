package deploy_test

import (
	"bufio"
	"context"
	"debug/elf"
	"errors"
	"io"
	"net/http"
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

// Values the test passes to `make build`, so it can find them again.
const (
	testVersion   = "v0.0.0-deploytest"
	testCommit    = "0123456789abcdef0123456789abcdef01234567"
	testBuildDate = "2026-01-02T03:04:05Z"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

// staticBinary runs `make build` once for the package, with the test's
// version, commit and date, into a temporary directory.
func staticBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "pushercm-deploy-")
		if buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "pushercm")
		cmd := exec.Command("make", "-C", repoRoot(t), "build", "BIN="+builtBin,
			"VERSION="+testVersion, "COMMIT="+testCommit, "BUILD_DATE="+testBuildDate)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = errors.New("make build: " + err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}

// TestStaticBinaryHasNoDynamicSection: `make build` links statically, so
// the binary needs no loader and no shared libraries.
func TestStaticBinaryHasNoDynamicSection(t *testing.T) {
	f, err := elf.Open(staticBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("program header %v present: the binary is dynamically linked", p.Type)
		}
	}
	if s := f.Section(".dynamic"); s != nil {
		t.Error("the binary has a .dynamic section")
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("imported libraries %v (%v)", libs, err)
	}
}

// TestVersionCommand: the ldflags of `make build` reach `pushercm version`.
func TestVersionCommand(t *testing.T) {
	out, err := exec.Command(staticBinary(t), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("version: %v\n%s", err, out)
	}
	for _, want := range []string{"pushercm " + testVersion, "commit: " + testCommit, "built: " + testBuildDate, "go: go1."} {
		if !strings.Contains(string(out), want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
}

// TestServesFromEmptyRoot starts the static binary chrooted into a
// directory holding only itself: it serves --dev, answers /readyz, exports
// pushercm_build_info, and `pushercm healthcheck` exits 0 against it and 1
// once it has stopped.
func TestServesFromEmptyRoot(t *testing.T) {
	bin := staticBinary(t)
	root := t.TempDir()
	inRoot := filepath.Join(root, "pushercm")
	copyFile(t, bin, inRoot)
	entries, err := os.ReadDir(root)
	if err != nil || len(entries) != 1 {
		t.Fatalf("root holds %v (%v), want only the binary", entries, err)
	}

	srv := startServer(t, exec.Command("/pushercm", "serve", "--dev",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0"),
		func(c *exec.Cmd) { c.SysProcAttr = &syscall.SysProcAttr{Chroot: root}; c.Dir = "/" })

	resp, err := http.Get("http://" + srv.ops + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %d", resp.StatusCode)
	}
	metrics := get(t, "http://"+srv.ops+"/metrics")
	info := regexp.MustCompile(`(?m)^pushercm_build_info\{([^}]*)\} 1$`).FindStringSubmatch(metrics)
	if info == nil {
		t.Fatalf("no pushercm_build_info series in /metrics")
	}
	for _, want := range []string{`version="` + testVersion + `"`, `commit="` + testCommit + `"`, `build_date="` + testBuildDate + `"`, `goversion="go1.`} {
		if !strings.Contains(info[1], want) {
			t.Errorf("pushercm_build_info{%s} lacks %s", info[1], want)
		}
	}

	// Against the running server: by flag, and by the server's own variable.
	if code, out := healthcheck(t, bin, nil, "--addr", srv.ops); code != 0 {
		t.Fatalf("healthcheck --addr %s: exit %d\n%s", srv.ops, code, out)
	}
	if code, out := healthcheck(t, bin, []string{"PUSHERCM_OPS_ADDR=" + srv.ops}); code != 0 {
		t.Fatalf("healthcheck with PUSHERCM_OPS_ADDR: exit %d\n%s", code, out)
	}

	srv.stop(t)
	if code, out := healthcheck(t, bin, nil, "--addr", srv.ops); code != 1 {
		t.Fatalf("healthcheck against a stopped server: exit %d, want 1\n%s", code, out)
	}
}

func healthcheck(t *testing.T, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"healthcheck", "--timeout", "5s"}, args...)...)
	cmd.Env = append(cleanEnv(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("healthcheck: %v", err)
	return -1, ""
}

// server is a pushercm process started by a test.
type server struct {
	grpc, http, ops string
	cmd             *exec.Cmd
	done            chan error
	mu              sync.Mutex
	log             strings.Builder
}

var servingLine = regexp.MustCompile(`msg="pushercm serving".* grpc=(\S+) http=(\S+) ops=(\S+)`)

// startServer starts cmd (adjusted by each of adjust) with a clean
// environment plus env, and waits for the log line that says it serves.
// It is killed at cleanup if still running.
func startServer(t *testing.T, cmd *exec.Cmd, adjust ...func(*exec.Cmd)) *server {
	t.Helper()
	if cmd.Env == nil {
		cmd.Env = cleanEnv()
	}
	for _, f := range adjust {
		f(cmd)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, done: make(chan error, 1)}
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if m := servingLine.FindStringSubmatch(line); m != nil {
				select {
				case ready <- m[1:]:
				default:
				}
			}
		}
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-s.done //nolint:errcheck // killed just above: the exit error is expected
		}
		if t.Failed() {
			t.Logf("pushercm log:\n%s", s.logText())
		}
	})
	select {
	case m := <-ready:
		s.grpc, s.http, s.ops = m[0], m[1], m[2]
	case err := <-s.done:
		t.Fatalf("pushercm exited before serving: %v\n%s", err, s.logText())
	case <-time.After(60 * time.Second):
		t.Fatalf("pushercm did not serve within 60s:\n%s", s.logText())
	}
	return s
}

func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("pushercm exit: %v\n%s", err, s.logText())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("pushercm did not stop within 30s")
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil { //nolint:gosec // an executable
		t.Fatal(err)
	}
}

// cleanEnv is the environment without pushercm, Pusher and OTEL settings,
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
