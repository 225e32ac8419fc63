package deploy_test

import (
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

	"github.com/milequest/pushercm/internal/pushertest/proctest"
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

	cmd := exec.Command("/pushercm", "serve", "--dev",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0")
	cmd.Env, cmd.SysProcAttr, cmd.Dir = proctest.CleanEnv(), &syscall.SysProcAttr{Chroot: root}, "/"
	srv := proctest.StartCmd(t, cmd)

	resp, err := http.Get("http://" + srv.OpsAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %d", resp.StatusCode)
	}
	metrics := get(t, "http://"+srv.OpsAddr+"/metrics")
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
	if code, out := healthcheck(t, bin, nil, "--addr", srv.OpsAddr); code != 0 {
		t.Fatalf("healthcheck --addr %s: exit %d\n%s", srv.OpsAddr, code, out)
	}
	if code, out := healthcheck(t, bin, []string{"PUSHERCM_OPS_ADDR=" + srv.OpsAddr}); code != 0 {
		t.Fatalf("healthcheck with PUSHERCM_OPS_ADDR: exit %d\n%s", code, out)
	}

	if err := srv.Stop(30 * time.Second); err != nil {
		t.Fatalf("%v\n%s", err, srv.Log())
	}
	if code, out := healthcheck(t, bin, nil, "--addr", srv.OpsAddr); code != 1 {
		t.Fatalf("healthcheck against a stopped server: exit %d, want 1\n%s", code, out)
	}
}

func healthcheck(t *testing.T, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"healthcheck", "--timeout", "5s"}, args...)...)
	cmd.Env = append(proctest.CleanEnv(), env...)
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
