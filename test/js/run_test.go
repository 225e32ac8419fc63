// Package jsinterop_test runs the real pusher-js 8.6.0 and npm pusher 5.3.4 SDKs
// (pinned by package-lock.json) against the edge server. It is part of `make test`:
// a missing node/npm or a failing `npm ci` is a test failure, never a skip.
//
// By default it builds and runs the real pushercm binary (`serve --dev`) on
// 127.0.0.1:0 listeners. To test a server that is already running, set PUSHERCM_TEST_WS_PORT (and optionally
// PUSHERCM_TEST_WS_HOST, PUSHERCM_TEST_APP_ID, PUSHERCM_TEST_KEY, PUSHERCM_TEST_SECRET);
// that server must have client events and user sign-in enabled. The webhook tests need
// PUSHERCM_TEST_WEBHOOK_LOG (a URL listing received webhooks as GET /received does here)
// and are skipped without it.
package jsinterop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pusher "github.com/pusher/pusher-http-go/v5"

	"github.com/milequest/pushercm/internal/pushertest/proctest"
	"github.com/milequest/pushercm/internal/redistest"
	"github.com/milequest/pushercm/protocol"
)

const (
	appID  = "app-id"
	appKey = "app-key"
	secret = "app-secret"

	npmTimeout  = 5 * time.Minute
	nodeTimeout = 5 * time.Minute

	// testMasterKey is the encryption master key of the JS tests (helpers.js default).
	testMasterKey = "nxzvbGF+f8FGhk/jOaZvgMle1tqxzF/VfUZLBLhhaH0="

	// webhookLeaveDelay is the server's channel_vacated / member_removed delay
	// (Pusher's 3 s, the default of the binary under test).
	webhookLeaveDelay = 3 * time.Second
)

func TestPusherJSInterop(t *testing.T) {
	runSuite(t, func() []string { return serverEnv(t, 1) })
}

// TestPusherJSInteropCluster runs the same suite against three pushercm
// processes sharing one Redis: each pusher-js client connects to the next
// node in turn, the npm pusher SDK publishes through the last one, and every
// node posts its webhooks to the one receiver. Every test then crosses nodes:
// public, private, encrypted, presence and cache channels, client events,
// sign-in, SendToUser, terminate_connections, the HTTP API's queries and the
// webhooks' once-per-cluster transitions.
func TestPusherJSInteropCluster(t *testing.T) {
	if os.Getenv("PUSHERCM_TEST_WS_PORT") != "" {
		t.Skip("a server from the environment is tested by TestPusherJSInterop")
	}
	runSuite(t, func() []string { return serverEnv(t, 3) })
}

func runSuite(t *testing.T, start func() []string) {
	node := mustLookPath(t, "node")
	npm := mustLookPath(t, "npm")
	dir, err := os.Getwd() // go test runs in the package directory: test/js
	if err != nil {
		t.Fatal(err)
	}
	ensureNodeModules(t, npm, dir)

	env := start()

	files, err := filepath.Glob(filepath.Join(dir, "tests", "*.test.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no JS tests found under %s/tests (%v)", dir, err)
	}
	sort.Strings(files)

	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	args := append([]string{"--test", "--test-reporter=spec"}, files...)
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 10 * time.Second // a wedged child must not hang go test
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("node --test output:\n%s", out.String())
	if ctx.Err() != nil {
		t.Fatalf("node --test did not finish within %s", nodeTimeout)
	}
	if err != nil {
		t.Fatalf("node --test failed: %v", err)
	}
}

func mustLookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is required for the pusher-js interop tests (make test runs them): %v", name, err)
	}
	return p
}

// ensureNodeModules runs `npm ci` unless node_modules is already an install of the
// current package-lock.json: npm ci writes node_modules/.package-lock.json, which must be
// newer than the lockfile, and every package must have the locked version.
func ensureNodeModules(t *testing.T, npm, dir string) {
	t.Helper()
	why := nodeModulesStale(dir)
	if why == "" {
		return
	}
	t.Logf("running npm ci: %s", why)
	ctx, cancel := context.WithTimeout(context.Background(), npmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm ci failed: %v\n%s", err, out)
	}
	if why := nodeModulesStale(dir); why != "" {
		t.Fatalf("node_modules still stale after npm ci: %s", why)
	}
}

// nodeModulesStale says why node_modules does not match package-lock.json, or "".
func nodeModulesStale(dir string) string {
	lockPath := filepath.Join(dir, "package-lock.json")
	lockInfo, err := os.Stat(lockPath)
	if err != nil {
		return err.Error()
	}
	hidden, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err != nil {
		return "node_modules is missing or was not installed by npm"
	}
	if hidden.ModTime().Before(lockInfo.ModTime()) {
		return "package-lock.json is newer than node_modules"
	}
	raw, err := os.ReadFile(lockPath)
	if err != nil {
		return err.Error()
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(raw, &lock); err != nil {
		return "package-lock.json: " + err.Error()
	}
	for path, p := range lock.Packages {
		if path == "" || p.Version == "" {
			continue
		}
		var installed struct {
			Version string `json:"version"`
		}
		b, err := os.ReadFile(filepath.Join(dir, path, "package.json"))
		if err != nil || json.Unmarshal(b, &installed) != nil {
			return path + " is not installed"
		}
		if installed.Version != p.Version {
			return fmt.Sprintf("%s is %s, locked %s", path, installed.Version, p.Version)
		}
	}
	return ""
}

// serverEnv returns the PUSHERCM_TEST_* variables for nodes, starting the real
// pushercm binary (`serve --dev`, so client events and sign-in are on, with
// webhooks posted to a receiver here and the test encryption master key) unless
// a server is given in the environment. nodes > 1 starts that many processes
// sharing the Redis of these machines under a prefix of the test's own.
func serverEnv(t *testing.T, nodes int) []string {
	t.Helper()
	if port := os.Getenv("PUSHERCM_TEST_WS_PORT"); port != "" {
		t.Logf("using the server at %s:%s from the environment", envOr("PUSHERCM_TEST_WS_HOST", "127.0.0.1"), port)
		return nil // already in os.Environ
	}
	hooks := startWebhookReceiver(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "pushercm")
	build := exec.Command("go", "build", "-o", bin, "github.com/milequest/pushercm/cmd/pushercm")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building pushercm: %v\n%s", err, out)
	}
	cfgFile := filepath.Join(dir, "pushercm.yaml")
	cfgYAML := fmt.Sprintf("edge:\n  webhooks:\n    urls: [%q]\n", hooks.URL+"/webhook")
	if err := os.WriteFile(cfgFile, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	var extra []string
	if nodes > 1 {
		extra = []string{
			"PUSHERCM_REDIS_URL=redis://" + redistest.Addr(t),
			"PUSHERCM_REDIS_PREFIX=" + redistest.Prefix(t),
			"PUSHERCM_CLUSTER_HEARTBEAT=250ms",
			"PUSHERCM_CLUSTER_NODE_TTL=1500ms",
		}
	}
	var host string
	ports := make([]string, nodes)
	for i := range ports {
		var port string
		host, port = startNode(t, bin, cfgFile, extra)
		ports[i] = port
	}
	return []string{
		"PUSHERCM_TEST_WS_HOST=" + host,
		"PUSHERCM_TEST_WS_PORT=" + ports[0],
		"PUSHERCM_TEST_WS_PORTS=" + strings.Join(ports, ","),
		"PUSHERCM_TEST_HTTP_PORT=" + ports[len(ports)-1],
		"PUSHERCM_TEST_APP_ID=" + appID,
		"PUSHERCM_TEST_KEY=" + appKey,
		"PUSHERCM_TEST_SECRET=" + secret,
		"PUSHERCM_TEST_ENCRYPTION_MASTER_KEY_BASE64=" + testMasterKey,
		"PUSHERCM_TEST_WEBHOOK_LOG=" + hooks.URL + "/received",
		"PUSHERCM_TEST_WEBHOOK_LEAVE_DELAY_MS=" + strconv.Itoa(int(webhookLeaveDelay/time.Millisecond)),
	}
}

// startNode runs one pushercm process and returns its realtime host and
// port; it is stopped with SIGTERM at cleanup.
func startNode(t *testing.T, bin, cfgFile string, env []string) (host, port string) {
	t.Helper()
	p := proctest.Start(t, bin, append(append(proctest.CleanEnv(), "PUSHER_ENCRYPTION_MASTER_KEY_BASE64="+testMasterKey), env...),
		"serve", "--dev", "--config", cfgFile,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0")
	t.Cleanup(func() {
		// SIGTERM: the graceful path, which also flushes pending webhooks.
		if err := p.Stop(30 * time.Second); err != nil {
			t.Error(err)
		}
	})
	host, port, err := net.SplitHostPort(p.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) > 0 {
		// A cluster node serves only once it reached Redis.
		p.WaitLog(t, "connected to redis", 20*time.Second)
	}
	return host, port
}

// receivedWebhook is one request the receiver got, as the JS tests read it back.
type receivedWebhook struct {
	Headers map[string]string `json:"headers"` // lower-case names, as the npm SDK wants
	Body    string            `json:"body"`
	// GoValid says whether pusher-http-go's Client.Webhook accepted the request.
	GoValid bool   `json:"go_valid"`
	GoError string `json:"go_error,omitempty"`
}

// startWebhookReceiver serves POST /webhook (verifying with pusher-http-go) and
// GET /received (everything received so far, for the JS tests to check with the npm SDK).
func startWebhookReceiver(t *testing.T) *httptest.Server {
	t.Helper()
	// pusher-http-go refuses any webhook that mentions a private-encrypted- channel unless
	// it has the master key (it tries to decrypt client_event data), so give it the key the
	// JS tests encrypt with.
	verifier := pusher.Client{AppID: appID, Key: appKey, Secret: secret, EncryptionMasterKeyBase64: testMasterKey}
	var (
		mu       sync.Mutex
		received []receivedWebhook
	)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhook", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rec := receivedWebhook{Headers: map[string]string{}, Body: string(body)}
		for name, vals := range r.Header {
			rec.Headers[strings.ToLower(name)] = strings.Join(vals, ", ")
		}
		if _, err := verifier.Webhook(r.Header, body); err == nil {
			rec.GoValid = true
		} else if encryptedWithoutData(body) {
			// pusher-http-go v5.1.1 tries to decrypt every event of a private-encrypted-
			// channel, including channel_occupied/vacated and member events that carry no
			// data, and fails. Check the signature the way it would have instead.
			verr := protocol.VerifyWebhook(appKey, secret, r.Header.Get(protocol.WebhookHeaderKey), r.Header.Get(protocol.WebhookHeaderSignature), body)
			rec.GoValid = verr == nil
			rec.GoError = fmt.Sprintf("pusher-http-go: %v; protocol.VerifyWebhook: %v", err, verr)
		} else {
			rec.GoError = err.Error()
		}
		mu.Lock()
		received = append(received, rec)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /received", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		body, _ := json.Marshal(map[string]any{"webhooks": received})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// encryptedWithoutData reports whether a webhook body has an event on a
// private-encrypted- channel with no data, which pusher-http-go cannot parse.
func encryptedWithoutData(body []byte) bool {
	var wb protocol.WebhookBody
	if json.Unmarshal(body, &wb) != nil {
		return false
	}
	for _, e := range wb.Events {
		if strings.HasPrefix(e.Channel, "private-encrypted-") && e.Data == "" {
			return true
		}
	}
	return false
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
