package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/milequest/pushercm/client"
)

// The dev-mode app credentials of `pushercm serve --dev`.
const (
	devKey    = "app-key"
	devSecret = "app-secret"
)

// pushercm is a `pushercm serve --dev` process built from this repository.
// The example module does not depend on the server: the test builds the
// binary from the main module, as a developer running both would.
type pushercm struct {
	bin, grpcAddr string
}

var serving = regexp.MustCompile(`msg="pushercm serving".* grpc=(\S+)`)

func startPushercm(t *testing.T) *pushercm {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pushercm")
	build := exec.Command("go", "build", "-o", bin, "./cmd/pushercm")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building pushercm: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "serve", "--dev", "--log-level", "INFO",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0")
	cmd.Env = cleanEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := serving.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatal("pushercm exited before serving")
		}
		return &pushercm{bin: bin, grpcAddr: a}
	case <-time.After(60 * time.Second):
		t.Fatal("pushercm did not start within 60s")
	}
	return nil
}

// token mints a dev-mode JWT with `pushercm token`.
func (p *pushercm) token(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(p.bin, append([]string{"token", "--dev", "--ttl", "1h"}, args...)...)
	cmd.Env = cleanEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pushercm token %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PUSHER") && !strings.HasPrefix(kv, "NEXT_PUBLIC_PUSHER_") && !strings.HasPrefix(kv, "OTEL_") {
			out = append(out, kv)
		}
	}
	return out
}

func sign(parts ...string) string {
	m := hmac.New(sha256.New, []byte(devSecret))
	m.Write([]byte(strings.Join(parts, ":")))
	return devKey + ":" + hex.EncodeToString(m.Sum(nil))
}

// TestProxyToPushercm runs the example's handler, with the Go client,
// against a real pushercm and checks what pusher-js would receive.
func TestProxyToPushercm(t *testing.T) {
	p := startPushercm(t)
	service := p.token(t, "--sub", "web-app", "--scopes", "channels:authorize")
	user := p.token(t, "--sub", "u1", "--teams", "t1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, p.grpcAddr, client.WithToken(service), client.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	srv := httptest.NewServer(NewHandler(c))
	t.Cleanup(srv.Close)

	const socket = "123.456"
	tests := []struct {
		name, path, token string
		form              url.Values
		wantStatus        int
		wantReason        string
	}{
		{"private channel", "/pusher/auth", user, url.Values{"socket_id": {socket}, "channel_name": {"private-user-u1"}}, 200, ""},
		{"presence channel", "/pusher/auth", user, url.Values{"socket_id": {socket}, "channel_name": {"presence-team-t1"}}, 200, ""},
		{"sign-in", "/pusher/user-auth", user, url.Values{"socket_id": {socket}}, 200, ""},
		{"denied", "/pusher/auth", user, url.Values{"socket_id": {socket}, "channel_name": {"private-user-u2"}}, 403, "AUTHORIZATION_FAILED"},
		{"no user token", "/pusher/auth", "", url.Values{"socket_id": {socket}, "channel_name": {"private-user-u1"}}, 401, "AUTHENTICATION_FAILED"},
		{"bad socket id", "/pusher/auth", user, url.Values{"socket_id": {"x"}, "channel_name": {"private-user-u1"}}, 400, "INVALID_ARGUMENT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+tc.path, strings.NewReader(tc.form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			var body map[string]string
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus || body["reason"] != tc.wantReason {
				t.Fatalf("status %d %v, want %d %s", resp.StatusCode, body, tc.wantStatus, tc.wantReason)
			}
			switch {
			case resp.StatusCode == http.StatusForbidden:
				// Why, in words: the refused channel and the deciding rule.
				if !strings.Contains(body["error"], "private-user-u2") || !strings.Contains(body["error"], "user-channel") {
					t.Errorf("403 body does not say why: %v", body)
				}
			case resp.StatusCode != http.StatusOK:
			case tc.path == "/pusher/user-auth":
				if want := sign(socket+"::user:", body["user_data"]); body["auth"] != want {
					t.Errorf("user auth %q does not verify (want %q)", body["auth"], want)
				}
			default:
				parts := []string{socket, tc.form.Get("channel_name")}
				if cd := body["channel_data"]; cd != "" {
					parts = append(parts, cd)
				}
				if want := sign(parts...); body["auth"] != want {
					t.Errorf("channel auth %q does not verify (want %q)", body["auth"], want)
				}
			}
		})
	}
}
