// End-to-end tests of channel authorization through a real pushercm process
// (app.New + Start on 127.0.0.1:0): the pusher-js HTTP endpoints on the
// realtime listener, signatures the embedded server accepts, CORS, and rules
// reloads (file change and SIGHUP's Reload) under load.

package e2e_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/milequest/pushercm/app"
	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/pushertest/apptest"
	"github.com/milequest/pushercm/protocol"
)

const authWait = 15 * time.Second

// startAuthApp runs dev-mode pushercm. file, when not empty, is the config file
// (rules reload from it).
func startAuthApp(t *testing.T, file string, mutate func(*config.Config)) (*app.App, *pushertest.Buffer) {
	t.Helper()
	a := apptest.StartFile(t, file, func(c *config.Config) {
		// What the files and config.Default say: INFO logs, the default drain.
		c.Log.Level = "INFO"
		c.ShutdownTimeout = config.Default().ShutdownTimeout
		if mutate != nil {
			mutate(c)
		}
	})
	a.CheckShutdown = true
	return a.App, a.Logs
}

func mintUser(t *testing.T, o authz.MintOptions) string {
	t.Helper()
	o.TTL = time.Hour
	return pushertest.Mint(t, config.DevJWTSecret, o)
}

var authHTTP = &http.Client{Timeout: authWait}

// post sends a pusher-js style auth request and returns the status and the
// JSON body.
func authPost(t *testing.T, a *app.App, path, token string, form url.Values, hdr map[string]string) (int, map[string]string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+a.HTTPAddr()+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := authHTTP.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, _ := io.ReadAll(resp.Body)
	body := map[string]string{}
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("POST %s: %d %q is not a JSON object of strings", path, resp.StatusCode, raw)
	}
	return resp.StatusCode, body
}

// dialAuthEdge connects a client whose Expect skips unrelated frames.
func dialAuthEdge(t *testing.T, a *app.App) *pushertest.Client {
	t.Helper()
	c := pushertest.Dial(t, a.HTTPAddr(), config.DevAppKey, config.DevAppSecret)
	c.SkipOther = true
	return c
}

// TestPusherJSEndpointsEndToEnd: what /pusher/auth and /pusher/user-auth
// answer on the realtime listener is accepted by the embedded server.
func TestPusherJSEndpointsEndToEnd(t *testing.T) {
	a, _ := startAuthApp(t, "", nil)
	user := mintUser(t, authz.MintOptions{Subject: "u1", Teams: []string{"t1"}, Name: "Ann"})

	for _, channel := range []string{"private-user-u1", "private-team-t1", "presence-team-t1"} {
		t.Run(channel, func(t *testing.T) {
			c := dialAuthEdge(t, a)
			code, body := authPost(t, a, "/pusher/auth", user, url.Values{"socket_id": {c.SocketID}, "channel_name": {channel}}, nil)
			if code != http.StatusOK {
				t.Fatalf("status %d %v", code, body)
			}
			data := map[string]any{"channel": channel, "auth": body["auth"]}
			if cd, ok := body["channel_data"]; ok {
				data["channel_data"] = cd
			}
			c.Send(protocol.EventSubscribe, "", data)
			c.Expect("pusher_internal:subscription_succeeded", channel)
		})
	}
	t.Run("sign-in", func(t *testing.T) {
		c := dialAuthEdge(t, a)
		code, body := authPost(t, a, "/pusher/user-auth", user, url.Values{"socket_id": {c.SocketID}}, nil)
		if code != http.StatusOK || len(body) != 2 {
			t.Fatalf("status %d %v", code, body)
		}
		c.Send("pusher:signin", "", map[string]any{"auth": body["auth"], "user_data": body["user_data"]})
		c.Expect("pusher:signin_success", "")
	})
}

func TestPusherJSEndpointsRefusals(t *testing.T) {
	a, _ := startAuthApp(t, "", func(c *config.Config) { c.HTTP.AllowedOrigins = []string{"https://app.example.com"} })
	user := mintUser(t, authz.MintOptions{Subject: "u1", Teams: []string{"t1"}})
	form := func(ch string) url.Values { return url.Values{"socket_id": {"1.2"}, "channel_name": {ch}} }
	tests := []struct {
		name       string
		token      string
		form       url.Values
		hdr        map[string]string
		wantStatus int
		wantReason string
	}{
		{"denied by rule", user, form("private-user-u2"), nil, 403, "AUTHORIZATION_FAILED"},
		{"no token", "", form("private-user-u1"), nil, 401, "AUTHENTICATION_FAILED"},
		{"bad token", "x.y.z", form("private-user-u1"), nil, 401, "AUTHENTICATION_FAILED"},
		{"bad socket id", user, url.Values{"socket_id": {"nope"}, "channel_name": {"private-user-u1"}}, nil, 400, "INVALID_ARGUMENT"},
		{"missing channel", user, url.Values{"socket_id": {"1.2"}}, nil, 400, "INVALID_ARGUMENT"},
		{"origin not allowed", user, form("private-user-u1"), map[string]string{"Origin": "https://evil.example"}, 403, "ORIGIN_NOT_ALLOWED"},
		{"origin allowed", user, form("private-user-u1"), map[string]string{"Origin": "https://app.example.com"}, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := authPost(t, a, "/pusher/auth", tc.token, tc.form, tc.hdr)
			if code != tc.wantStatus || body["reason"] != tc.wantReason {
				t.Fatalf("got %d %v, want %d %s", code, body, tc.wantStatus, tc.wantReason)
			}
		})
	}

	t.Run("preflight", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodOptions, "http://"+a.HTTPAddr()+"/pusher/auth", nil)
		req.Header.Set("Origin", "https://app.example.com")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		resp, err := authHTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent ||
			resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
			!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
		}
	})
}

// TestRulesReload: rules follow the config file (fsnotify) and Reload
// (SIGHUP); a bad file keeps the rules in force; requests made throughout
// are all answered.
func TestRulesReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pushercm.yaml")
	write := func(content string) {
		t.Helper()
		// Write then rename, as editors and ConfigMaps do, so the watcher
		// never reads a half-written file.
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	const noRules = "log:\n  level: INFO\n"
	const loungeRule = noRules + `channelRules:
  rules:
    - name: lounge
      pattern: private-lounge-{room}
      expression: "'vip' in roles"
`
	write(noRules)
	a, logs := startAuthApp(t, file, nil)
	vip := mintUser(t, authz.MintOptions{Subject: "u1", Roles: []string{"vip"}})
	status := func(channel string) int {
		code, _ := authPost(t, a, "/pusher/auth", vip, url.Values{"socket_id": {"1.2"}, "channel_name": {channel}}, nil)
		return code
	}

	// Load in the background for the whole test: every answer must be 200
	// (the user's own channel is allowed by every rule set used here).
	var (
		stop     = make(chan struct{})
		done     = make(chan struct{})
		answered atomic.Int64
		bad      atomic.Value
	)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest(http.MethodPost, "http://"+a.HTTPAddr()+"/pusher/auth",
				strings.NewReader("socket_id=1.2&channel_name=private-user-u1"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "Bearer "+vip)
			resp, err := authHTTP.Do(req)
			if err != nil {
				bad.Store(err.Error())
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				bad.Store(resp.Status)
				return
			}
			answered.Add(1)
		}
	}()

	if got := status("private-lounge-1"); got != http.StatusForbidden {
		t.Fatalf("before the rule: %d, want 403", got)
	}
	write(loungeRule)
	pushertest.Eventually(t, "the lounge rule to load from the changed file", func() bool { return status("private-lounge-1") == http.StatusOK })

	write(noRules + "channelRules:\n  rules:\n    - name: broken\n      pattern: private-x-*\n      expression: \"roles.(\"\n")
	pushertest.Eventually(t, "the bad file to be refused", func() bool { return strings.Contains(logs.String(), "channel rules reload failed") })
	if got := status("private-lounge-1"); got != http.StatusOK {
		t.Fatalf("after a bad file: %d, want the previous rules (200)", got)
	}
	if !strings.Contains(logs.String(), "broken") {
		t.Errorf("the refusal does not name the bad rule; logs:\n%s", logs.String())
	}

	// SIGHUP path: Reload reads the file now, with no watcher delay.
	if err := os.WriteFile(file, []byte(noRules), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := status("private-lounge-1"); got != http.StatusForbidden {
		t.Fatalf("after Reload without the rule: %d, want 403", got)
	}

	close(stop)
	<-done
	if v := bad.Load(); v != nil {
		t.Fatalf("a request during reloads failed: %v", v)
	}
	if answered.Load() == 0 {
		t.Fatal("the background load made no requests")
	}
	if strings.Contains(logs.String(), vip) {
		t.Error("logs contain a token")
	}
}

// TestRulesReloadBinary: the real binary reloads its rules on SIGHUP and
// when the config file changes, and keeps them when the new file is bad.
func TestRulesReloadBinary(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pushercm.yaml")
	const lounge = `channelRules:
  rules:
    - name: lounge
      pattern: private-lounge-{room}
      expression: "'vip' in roles"
`
	if err := os.WriteFile(file, []byte("log:\n  level: INFO\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := StartServer(t, nil, "--config", file)
	vip := mintUser(t, authz.MintOptions{Subject: "u1", Roles: []string{"vip"}})
	status := func() int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.HTTPAddr+"/pusher/auth", strings.NewReader("socket_id=1.2&channel_name=private-lounge-1"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+vip)
		resp, err := authHTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != http.StatusForbidden {
		t.Fatalf("before: %d, want 403", got)
	}

	// A file change alone reloads.
	if err := os.WriteFile(file, []byte(lounge), 0o600); err != nil {
		t.Fatal(err)
	}
	pushertest.Eventually(t, "the watcher to load the lounge rule", func() bool { return status() == http.StatusOK })

	// A bad file is refused and the rules stay.
	if err := os.WriteFile(file, []byte("channelRules:\n  rules:\n    - name: broken\n      pattern: \"private-{\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pushertest.Eventually(t, "the bad file to be refused", func() bool { return strings.Contains(s.Log(), "channel rules reload failed") })
	if got := status(); got != http.StatusOK {
		t.Fatalf("after a bad file: %d, want 200 (previous rules)", got)
	}

	// SIGHUP reloads too (app.Reload); with the bad file it fails and keeps
	// the rules. (A good file would be picked up by the watcher as well, so
	// only the refusal tells the two paths apart.)
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	pushertest.Eventually(t, "SIGHUP's reload to fail on the bad file", func() bool { return strings.Contains(s.Log(), "reload failed; keeping the previous state") })
	if got := status(); got != http.StatusOK {
		t.Fatalf("after SIGHUP with a bad file: %d, want 200", got)
	}
	if strings.Contains(s.Log(), vip) {
		t.Error("the log contains a token")
	}
}
