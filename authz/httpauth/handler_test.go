package httpauth_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/authz/authsvc"
	"github.com/milequest/pushercm/authz/httpauth"
	"github.com/milequest/pushercm/protocol"
)

var jwtSecret = []byte("httpauth-test-secret-0123456789-abcdef")

const (
	appKey    = "key"
	appSecret = "app-secret"
)

// newServer serves the endpoints; browserKeys are the user_info keys a
// browser may set (none by default).
func newServer(t *testing.T, origins []string, browserKeys ...string) *httptest.Server {
	t.Helper()
	v, err := authz.NewVerifier(authz.VerifierConfig{Secret: jwtSecret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	rules, err := authz.NewRules(authz.RulesConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	az, err := authz.NewAuthorizer(authz.AuthorizerConfig{AppKey: appKey, AppSecret: appSecret, BrowserUserInfoKeys: browserKeys}, rules)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := authsvc.New(authsvc.Config{Verifier: v, Authorizer: az})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpauth.New(svc, httpauth.Config{AllowedOrigins: origins, MaxBodyBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux.Handle)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func mint(t *testing.T, o authz.MintOptions) string {
	t.Helper()
	o.TTL = time.Hour
	tok, err := authz.Mint(jwtSecret, o)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type request struct {
	method, path, contentType, body string
	header                          map[string]string
}

// reply is what a test looks at in a response.
type reply struct {
	StatusCode int
	Header     http.Header
}

func do(t *testing.T, srv *httptest.Server, r request) (reply, map[string]string) {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	if r.contentType == "" && r.method == http.MethodPost {
		r.contentType = "application/x-www-form-urlencoded"
	}
	req, err := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	body := map[string]string{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Fatalf("body %q is not a JSON object of strings: %v", raw, err)
		}
	}
	return reply{StatusCode: resp.StatusCode, Header: resp.Header}, body
}

func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

func TestEndpoints(t *testing.T) {
	srv := newServer(t, nil)
	user := mint(t, authz.MintOptions{Subject: "u1", Teams: []string{"t1"}, Name: "Ann"})
	bearer := map[string]string{"Authorization": "Bearer " + user}
	const socket = "123.456"

	tests := []struct {
		name       string
		req        request
		wantStatus int
		wantReason string
		wantBody   map[string]string // exact keys and values on success
	}{
		{name: "private channel", req: request{path: "/pusher/auth", body: form("socket_id", socket, "channel_name", "private-user-u1"), header: bearer},
			wantStatus: 200, wantBody: map[string]string{"auth": protocol.ChannelAuth(appKey, appSecret, socket, "private-user-u1", "")}},
		// The browser's user_info is not signed: it comes from the token.
		{name: "presence channel with user_info", req: request{path: "/pusher/auth", body: form("socket_id", socket, "channel_name", "presence-team-t1", "user_info", `{"emoji":"x","name":"Bob (admin)"}`), header: bearer},
			wantStatus: 200, wantBody: map[string]string{
				"auth":         protocol.ChannelAuth(appKey, appSecret, socket, "presence-team-t1", `{"user_id":"u1","user_info":{"name":"Ann"}}`),
				"channel_data": `{"user_id":"u1","user_info":{"name":"Ann"}}`}},
		{name: "user sign-in with user_info", req: request{path: "/pusher/user-auth", body: form("socket_id", socket, "user_info", `{"name":"Mallory"}`), header: bearer},
			wantStatus: 200, wantBody: map[string]string{
				"auth":      protocol.UserAuth(appKey, appSecret, socket, `{"id":"u1","user_info":{"name":"Ann"}}`),
				"user_data": `{"id":"u1","user_info":{"name":"Ann"}}`}},
		{name: "extra params", req: request{path: "/pusher/auth", body: form("socket_id", socket, "channel_name", "private-team-t1", "foo", "bar"), header: bearer},
			wantStatus: 200, wantBody: map[string]string{"auth": protocol.ChannelAuth(appKey, appSecret, socket, "private-team-t1", "")}},
		{name: "content type with charset", req: request{path: "/pusher/auth", contentType: "application/x-www-form-urlencoded; charset=UTF-8",
			body: form("socket_id", socket, "channel_name", "private-user-u1"), header: bearer},
			wantStatus: 200, wantBody: map[string]string{"auth": protocol.ChannelAuth(appKey, appSecret, socket, "private-user-u1", "")}},
		{name: "user sign-in", req: request{path: "/pusher/user-auth", body: form("socket_id", socket), header: bearer},
			wantStatus: 200, wantBody: map[string]string{
				"auth":      protocol.UserAuth(appKey, appSecret, socket, `{"id":"u1","user_info":{"name":"Ann"}}`),
				"user_data": `{"id":"u1","user_info":{"name":"Ann"}}`}},
		{name: "other user's channel", req: request{path: "/pusher/auth", body: form("socket_id", socket, "channel_name", "private-user-u2"), header: bearer},
			wantStatus: 403, wantReason: "AUTHORIZATION_FAILED"},
		{name: "no rule", req: request{path: "/pusher/auth", body: form("socket_id", socket, "channel_name", "private-nothing"), header: bearer},
			wantStatus: 403, wantReason: "AUTHORIZATION_FAILED"},
		{name: "encrypted without master key", req: request{path: "/pusher/auth", body: form("socket_id", socket, "channel_name", "private-encrypted-x"), header: bearer},
			wantStatus: 403, wantReason: "AUTHORIZATION_FAILED"},
		{name: "no token", req: request{path: "/pusher/auth", body: form("socket_id", socket, "channel_name", "private-user-u1")},
			wantStatus: 401, wantReason: "AUTHENTICATION_FAILED"},
		{name: "bad token", req: request{path: "/pusher/auth", body: form("socket_id", socket, "channel_name", "private-user-u1"), header: map[string]string{"Authorization": "Bearer " + user + "x"}},
			wantStatus: 401, wantReason: "AUTHENTICATION_FAILED"},
		{name: "basic auth scheme", req: request{path: "/pusher/auth", body: form("socket_id", socket, "channel_name", "private-user-u1"), header: map[string]string{"Authorization": "Basic dTpw"}},
			wantStatus: 401, wantReason: "AUTHENTICATION_FAILED"},
		{name: "sign-in without token", req: request{path: "/pusher/user-auth", body: form("socket_id", socket)},
			wantStatus: 401, wantReason: "AUTHENTICATION_FAILED"},
		{name: "bad socket id", req: request{path: "/pusher/auth", body: form("socket_id", "1", "channel_name", "private-user-u1"), header: bearer},
			wantStatus: 400, wantReason: "INVALID_ARGUMENT"},
		{name: "user_info not an object", req: request{path: "/pusher/auth", body: form("socket_id", socket, "channel_name", "presence-team-t1", "user_info", `[1]`), header: bearer},
			wantStatus: 400, wantReason: "INVALID_ARGUMENT"},
		{name: "malformed form", req: request{path: "/pusher/auth", body: "socket_id=%zz", header: bearer},
			wantStatus: 400, wantReason: "INVALID_ARGUMENT"},
		{name: "duplicate channel", req: request{path: "/pusher/auth", body: form("socket_id", socket, "channel_name", "private-user-u1", "channel_name", "private-user-u2"), header: bearer},
			wantStatus: 400, wantReason: "INVALID_ARGUMENT"},
		{name: "JSON body", req: request{path: "/pusher/auth", contentType: "application/json", body: `{"socket_id":"1.2"}`, header: bearer},
			wantStatus: 415, wantReason: "INVALID_ARGUMENT"},
		{name: "body too large", req: request{path: "/pusher/auth", body: form("socket_id", socket, "channel_name", "private-user-u1", "pad", strings.Repeat("x", 5000)), header: bearer},
			wantStatus: 413, wantReason: "INVALID_ARGUMENT"},
		{name: "GET", req: request{method: http.MethodGet, path: "/pusher/auth?socket_id=1.2&channel_name=private-user-u1", header: bearer},
			wantStatus: 405, wantReason: "INVALID_ARGUMENT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, srv, tc.req)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (%v)", resp.StatusCode, tc.wantStatus, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			if tc.wantBody != nil {
				if len(body) != len(tc.wantBody) {
					t.Errorf("body %v, want exactly %v", body, tc.wantBody)
				}
				for k, v := range tc.wantBody {
					if body[k] != v {
						t.Errorf("%s = %q, want %q", k, body[k], v)
					}
				}
				return
			}
			if body["reason"] != tc.wantReason || body["error"] == "" {
				t.Errorf("error body %v, want reason %s", body, tc.wantReason)
			}
			for _, v := range body {
				if strings.Contains(v, "user-channel") || strings.Contains(v, user) {
					t.Errorf("error body leaks the rule or the token: %v", body)
				}
			}
			if tc.wantStatus == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge")
			}
		})
	}
}

func TestCORS(t *testing.T) {
	user := mint(t, authz.MintOptions{Subject: "u1"})
	post := func(origin string) request {
		h := map[string]string{"Authorization": "Bearer " + user}
		if origin != "" {
			h["Origin"] = origin
		}
		return request{path: "/pusher/auth", body: form("socket_id", "1.2", "channel_name", "private-user-u1"), header: h}
	}
	preflight := func(origin, method, headers string) request {
		return request{method: http.MethodOptions, path: "/pusher/auth", header: map[string]string{
			"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}}
	}
	listed := []string{"https://app.example.com", "*.example.org"}
	tests := []struct {
		name        string
		origins     []string
		req         request
		wantStatus  int
		wantACAO    string
		wantHeaders string // Access-Control-Allow-Headers
	}{
		{name: "preflight from a listed origin", origins: listed, req: preflight("https://app.example.com", "POST", "authorization,content-type,x-csrf-token"),
			wantStatus: 204, wantACAO: "https://app.example.com", wantHeaders: "Authorization, Content-Type, x-csrf-token"},
		{name: "preflight from a suffix origin", origins: listed, req: preflight("https://web.example.org", "POST", "authorization"),
			wantStatus: 204, wantACAO: "https://web.example.org", wantHeaders: "Authorization, Content-Type"},
		{name: "preflight from another origin", origins: listed, req: preflight("https://evil.example", "POST", "authorization"), wantStatus: 403},
		{name: "preflight for another method", origins: listed, req: preflight("https://app.example.com", "PUT", "authorization"),
			wantStatus: 403, wantACAO: "https://app.example.com"},
		{name: "preflight with a malformed header name", origins: listed, req: preflight("https://app.example.com", "POST", "x bad"),
			wantStatus: 403, wantACAO: "https://app.example.com"},
		{name: "post from a listed origin", origins: listed, req: post("https://app.example.com"), wantStatus: 200, wantACAO: "https://app.example.com"},
		{name: "post from another origin", origins: listed, req: post("https://evil.example"), wantStatus: 403},
		{name: "post without origin", origins: listed, req: post(""), wantStatus: 200},
		{name: "any origin when none listed", req: post("https://anything.example"), wantStatus: 200, wantACAO: "*"},
		{name: "preflight when none listed", req: preflight("https://anything.example", "POST", "authorization"),
			wantStatus: 204, wantACAO: "*", wantHeaders: "Authorization, Content-Type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.origins)
			resp, body := do(t, srv, tc.req)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (%v)", resp.StatusCode, tc.wantStatus, body)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tc.wantACAO {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.wantACAO)
			}
			if tc.wantHeaders != "" {
				if got := resp.Header.Get("Access-Control-Allow-Headers"); got != tc.wantHeaders {
					t.Errorf("Access-Control-Allow-Headers %q, want %q", got, tc.wantHeaders)
				}
				if got := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(got, "POST") {
					t.Errorf("Access-Control-Allow-Methods %q", got)
				}
			}
			if resp.Header.Get("Access-Control-Allow-Credentials") != "" {
				t.Error("credentials must never be allowed")
			}
		})
	}
}

// TestBrowserUserInfoAllowList: a browser sets only the allowed keys, and
// never over the token's claims.
func TestBrowserUserInfoAllowList(t *testing.T) {
	srv := newServer(t, nil, "emoji", "name")
	bearer := map[string]string{"Authorization": "Bearer " + mint(t, authz.MintOptions{Subject: "u1", Teams: []string{"t1"}, Name: "Ann"})}
	noName := map[string]string{"Authorization": "Bearer " + mint(t, authz.MintOptions{Subject: "u1", Teams: []string{"t1"}})}
	const socket = "123.456"
	const sent = `{"emoji":"x","name":"Bob (admin)","role":"admin"}`
	tests := []struct {
		name     string
		path     string
		header   map[string]string
		wantData string
	}{
		{name: "presence", path: "/pusher/auth", header: bearer, wantData: `{"user_id":"u1","user_info":{"emoji":"x","name":"Ann"}}`},
		{name: "sign-in", path: "/pusher/user-auth", header: bearer, wantData: `{"id":"u1","user_info":{"emoji":"x","name":"Ann"}}`},
		{name: "token without a name", path: "/pusher/auth", header: noName, wantData: `{"user_id":"u1","user_info":{"emoji":"x","name":"Bob (admin)"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := form("socket_id", socket, "channel_name", "presence-team-t1", "user_info", sent)
			key, sign := "channel_data", protocol.ChannelAuth(appKey, appSecret, socket, "presence-team-t1", tc.wantData)
			if tc.path == "/pusher/user-auth" {
				f = form("socket_id", socket, "user_info", sent)
				key, sign = "user_data", protocol.UserAuth(appKey, appSecret, socket, tc.wantData)
			}
			resp, body := do(t, srv, request{path: tc.path, body: f, header: tc.header})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %v", resp.StatusCode, body)
			}
			if body[key] != tc.wantData || body["auth"] != sign {
				t.Fatalf("%s = %q (auth %q), want %q", key, body[key], body["auth"], tc.wantData)
			}
		})
	}
}
