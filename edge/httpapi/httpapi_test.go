package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/milequest/pushercm/edge/httpapi"
	"github.com/milequest/pushercm/protocol"
)

type apiCase struct {
	name   string
	method string
	path   string
	params map[string]string
	body   any // []byte, string, or a value marshalled to JSON; nil = no body
	// target, when set, replaces the signed URL (for crafted auth failures); it may use
	// %s for a correctly signed query of path+params+body.
	rawTarget func(body []byte) string
	mod       func(*httpapi.Config)
	setup     func(*fakeBackend)

	wantStatus int
	want       string // expected JSON body (compared structurally), optional
	check      func(t *testing.T, f *fakeBackend, obj map[string]any, hdr http.Header)
}

func bodyBytes(b any) []byte {
	switch v := b.(type) {
	case nil:
		return nil
	case []byte:
		return v
	case string:
		return []byte(v)
	}
	return mustJSON(b)
}

func runCases(t *testing.T, cases []apiCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.seedState()
			if tc.setup != nil {
				tc.setup(f)
			}
			h := newHandler(t, f, tc.mod)
			body := bodyBytes(tc.body)
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			target := signedURL(method, tc.path, tc.params, body, secret, fixedNow)
			if tc.rawTarget != nil {
				target = tc.rawTarget(body)
			}
			status, obj, hdr := do(t, h, method, target, body)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %v", status, tc.wantStatus, obj)
			}
			if tc.want != "" {
				var want map[string]any
				if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
					t.Fatalf("bad want: %v", err)
				}
				if !reflect.DeepEqual(obj, want) {
					t.Fatalf("body\n got %v\nwant %v", obj, want)
				}
			}
			if tc.check != nil {
				tc.check(t, f, obj, hdr)
			}
		})
	}
}

func publishedNothing(t *testing.T, f *fakeBackend, _ map[string]any, _ http.Header) {
	t.Helper()
	if pub, sends, _ := f.snapshot(); len(pub) != 0 || len(sends) != 0 {
		t.Fatalf("a rejected request published %v %v", pub, sends)
	}
}

func ev(fields map[string]any) map[string]any { return fields }

func manyChannels(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("c%d", i)
	}
	return out
}

func TestEvents(t *testing.T) {
	const p = "/apps/3/events"
	runCases(t, []apiCase{
		{
			name: "trigger to channels", path: p,
			body:       ev(map[string]any{"name": "e", "data": `{"some":"data"}`, "channels": []string{"a", "private-b"}}),
			wantStatus: 200, want: `{}`,
			check: func(t *testing.T, f *fakeBackend, _ map[string]any, _ http.Header) {
				pub, _, _ := f.snapshot()
				want := []httpapi.Message{{Channels: []string{"a", "private-b"}, Event: "e", Data: `{"some":"data"}`}}
				if !reflect.DeepEqual(pub, want) {
					t.Fatalf("published %+v", pub)
				}
			},
		},
		{
			name: "single channel field", path: p,
			body:       ev(map[string]any{"name": "e", "data": "x", "channel": "a"}),
			wantStatus: 200, want: `{}`,
			check: func(t *testing.T, f *fakeBackend, _ map[string]any, _ http.Header) {
				if pub, _, _ := f.snapshot(); len(pub) != 1 || !slices.Equal(pub[0].Channels, []string{"a"}) {
					t.Fatalf("published %+v", pub)
				}
			},
		},
		{
			name: "channels take precedence and duplicates collapse", path: p,
			body:       ev(map[string]any{"name": "e", "data": "x", "channel": "z", "channels": []string{"a", "a", "b"}}),
			wantStatus: 200,
			check: func(t *testing.T, f *fakeBackend, _ map[string]any, _ http.Header) {
				if pub, _, _ := f.snapshot(); len(pub) != 1 || !slices.Equal(pub[0].Channels, []string{"a", "b"}) {
					t.Fatalf("published %+v", pub)
				}
			},
		},
		{
			name: "socket_id excludes the sender", path: p,
			body:       ev(map[string]any{"name": "e", "data": "x", "channels": []string{"a"}, "socket_id": "123.456"}),
			wantStatus: 200,
			check: func(t *testing.T, f *fakeBackend, _ map[string]any, _ http.Header) {
				if pub, _, _ := f.snapshot(); len(pub) != 1 || pub[0].ExcludeSocketID != "123.456" {
					t.Fatalf("published %+v", pub)
				}
			},
		},
		{
			name: "server-to-user channel goes to SendToUser", path: p,
			body:       ev(map[string]any{"name": "hello", "data": `{"a":1}`, "channels": []string{"#server-to-user-7"}}),
			wantStatus: 200, want: `{}`,
			check: func(t *testing.T, f *fakeBackend, _ map[string]any, _ http.Header) {
				pub, sends, _ := f.snapshot()
				if len(pub) != 0 || !reflect.DeepEqual(sends, []userSend{{"7", "hello", `{"a":1}`}}) {
					t.Fatalf("published %+v, sends %+v", pub, sends)
				}
			},
		},
		{
			name: "info attributes", path: p,
			body:       ev(map[string]any{"name": "e", "data": "x", "channels": []string{"presence-room", "public", "nobody"}, "info": "user_count,subscription_count"}),
			wantStatus: 200,
			want:       `{"channels":{"presence-room":{"user_count":2,"subscription_count":3},"public":{"subscription_count":4},"nobody":{"subscription_count":0}}}`,
		},
		{
			name: "non-string data is forwarded as compact JSON", path: p,
			body:       `{"name":"e","channels":["a"],"data":{"k": [1, 2]}}`,
			wantStatus: 200,
			check: func(t *testing.T, f *fakeBackend, _ map[string]any, _ http.Header) {
				if pub, _, _ := f.snapshot(); len(pub) != 1 || pub[0].Data != `{"k":[1,2]}` {
					t.Fatalf("published %+v", pub)
				}
			},
		},
		{
			name: "data at the limit", path: p,
			body:       ev(map[string]any{"name": "e", "data": strings.Repeat("x", protocol.DefaultMaxPayloadBytes), "channels": []string{"a"}}),
			wantStatus: 200,
		},
		{
			name: "data over the limit", path: p,
			body:       ev(map[string]any{"name": "e", "data": strings.Repeat("x", protocol.DefaultMaxPayloadBytes+1), "channels": []string{"a"}}),
			wantStatus: 413, check: publishedNothing,
		},
		{
			name: "configured payload limit", path: p,
			mod:        func(c *httpapi.Config) { c.Limits.MaxPayloadBytes = 4 },
			body:       ev(map[string]any{"name": "e", "data": "12345", "channels": []string{"a"}}),
			wantStatus: 413, check: publishedNothing,
		},
		{name: "missing name", path: p, body: ev(map[string]any{"data": "x", "channels": []string{"a"}}), wantStatus: 400, check: publishedNothing},
		{name: "missing data", path: p, body: ev(map[string]any{"name": "e", "channels": []string{"a"}}), wantStatus: 400, check: publishedNothing},
		{name: "missing channels", path: p, body: ev(map[string]any{"name": "e", "data": "x"}), wantStatus: 400, check: publishedNothing},
		{name: "too many channels", path: p, body: ev(map[string]any{"name": "e", "data": "x", "channels": manyChannels(101)}), wantStatus: 400, check: publishedNothing},
		{name: "100 channels", path: p, body: ev(map[string]any{"name": "e", "data": "x", "channels": manyChannels(100)}), wantStatus: 200},
		{name: "event name too long", path: p, body: ev(map[string]any{"name": strings.Repeat("e", 201), "data": "x", "channels": []string{"a"}}), wantStatus: 400, check: publishedNothing},
		{name: "channel name too long", path: p, body: ev(map[string]any{"name": "e", "data": "x", "channels": []string{strings.Repeat("c", 165)}}), wantStatus: 400, check: publishedNothing},
		{name: "channel name bad characters", path: p, body: ev(map[string]any{"name": "e", "data": "x", "channels": []string{"a b"}}), wantStatus: 400, check: publishedNothing},
		{name: "reserved # channel", path: p, body: ev(map[string]any{"name": "e", "data": "x", "channels": []string{"#other"}}), wantStatus: 400, check: publishedNothing},
		{name: "one bad channel rejects all", path: p, body: ev(map[string]any{"name": "e", "data": "x", "channels": []string{"ok", "bad!"}}), wantStatus: 400, check: publishedNothing},
		{name: "bad socket_id", path: p, body: ev(map[string]any{"name": "e", "data": "x", "channels": []string{"a"}, "socket_id": "abc"}), wantStatus: 400, check: publishedNothing},
		{name: "unknown info attribute", path: p, body: ev(map[string]any{"name": "e", "data": "x", "channels": []string{"a"}, "info": "occupied"}), wantStatus: 400, check: publishedNothing},
		{name: "invalid JSON", path: p, body: `{"name":`, wantStatus: 400, check: publishedNothing},
		{name: "empty body", path: p, body: nil, wantStatus: 400, check: publishedNothing},
		{
			name: "backend invalid maps to 400", path: p,
			setup:      func(f *fakeBackend) { f.publishErr = fmt.Errorf("edge says: %w", httpapi.ErrInvalid) },
			body:       ev(map[string]any{"name": "e", "data": "x", "channels": []string{"a"}}),
			wantStatus: 400,
		},
		{
			name: "backend failure is a 500 without detail", path: p,
			setup:      func(f *fakeBackend) { f.publishErr = errors.New("secret internal detail") },
			body:       ev(map[string]any{"name": "e", "data": "x", "channels": []string{"a"}}),
			wantStatus: 500,
			check: func(t *testing.T, _ *fakeBackend, obj map[string]any, _ http.Header) {
				if strings.Contains(fmt.Sprint(obj["error"]), "secret") {
					t.Fatalf("internal cause leaked: %v", obj)
				}
			},
		},
	})
}

func TestBatchEvents(t *testing.T) {
	const p = "/apps/3/batch_events"
	item := func(ch string, extra ...any) map[string]any {
		m := map[string]any{"channel": ch, "name": "e", "data": "d-" + ch}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i].(string)] = extra[i+1]
		}
		return m
	}
	batch := func(items ...map[string]any) map[string]any { return map[string]any{"batch": items} }
	ten := make([]map[string]any, 10)
	for i := range ten {
		ten[i] = item(fmt.Sprintf("c%d", i))
	}
	runCases(t, []apiCase{
		{
			name: "batch", path: p,
			body:       batch(item("a"), item("private-b", "socket_id", "1.2"), item("#server-to-user-9")),
			wantStatus: 200, want: `{}`,
			check: func(t *testing.T, f *fakeBackend, _ map[string]any, _ http.Header) {
				pub, sends, _ := f.snapshot()
				want := []httpapi.Message{
					{Channels: []string{"a"}, Event: "e", Data: "d-a"},
					{Channels: []string{"private-b"}, Event: "e", Data: "d-private-b", ExcludeSocketID: "1.2"},
				}
				if !reflect.DeepEqual(pub, want) || !reflect.DeepEqual(sends, []userSend{{"9", "e", "d-#server-to-user-9"}}) {
					t.Fatalf("published %+v sends %+v", pub, sends)
				}
			},
		},
		{name: "ten events", path: p, body: batch(ten...), wantStatus: 200},
		{name: "eleven events", path: p, body: batch(append(slices.Clone(ten), item("x"))...), wantStatus: 400, check: publishedNothing},
		{name: "empty batch", path: p, body: batch(), wantStatus: 400},
		{name: "one invalid item publishes nothing", path: p, body: batch(item("a"), item("bad channel")), wantStatus: 400, check: publishedNothing},
		{name: "one oversized item publishes nothing", path: p, body: batch(item("a"), map[string]any{"channel": "b", "name": "e", "data": strings.Repeat("x", 10241)}), wantStatus: 413, check: publishedNothing},
		{
			name: "info per item", path: p,
			body:       batch(item("presence-room", "info", "user_count,subscription_count"), item("public")),
			wantStatus: 200, want: `{"batch":[{"user_count":2,"subscription_count":3},{}]}`,
		},
	})
}

func TestQueries(t *testing.T) {
	runCases(t, []apiCase{
		{name: "channels", method: "GET", path: "/apps/3/channels", wantStatus: 200,
			want: `{"channels":{"cache-x":{},"presence-a@b,c;d=e":{},"presence-room":{},"public":{}}}`},
		{name: "channels with prefix and user_count", method: "GET", path: "/apps/3/channels",
			params:     map[string]string{"filter_by_prefix": "presence-", "info": "user_count"},
			wantStatus: 200, want: `{"channels":{"presence-a@b,c;d=e":{"user_count":1},"presence-room":{"user_count":2}}}`},
		{name: "channels subscription_count", method: "GET", path: "/apps/3/channels",
			params:     map[string]string{"filter_by_prefix": "pub", "info": "subscription_count"},
			wantStatus: 200, want: `{"channels":{"public":{"subscription_count":4}}}`},
		{name: "channels user_count without presence prefix", method: "GET", path: "/apps/3/channels",
			params: map[string]string{"info": "user_count"}, wantStatus: 400},
		{name: "channels unknown attribute", method: "GET", path: "/apps/3/channels",
			params: map[string]string{"info": "cache"}, wantStatus: 400},
		{name: "channels none match", method: "GET", path: "/apps/3/channels",
			params: map[string]string{"filter_by_prefix": "zzz"}, wantStatus: 200, want: `{"channels":{}}`},

		{name: "channel occupied", method: "GET", path: "/apps/3/channels/presence-room",
			params:     map[string]string{"info": "user_count,subscription_count"},
			wantStatus: 200, want: `{"occupied":true,"user_count":2,"subscription_count":3}`},
		{name: "channel without info", method: "GET", path: "/apps/3/channels/public", wantStatus: 200, want: `{"occupied":true}`},
		{name: "channel unoccupied", method: "GET", path: "/apps/3/channels/nobody",
			params: map[string]string{"info": "subscription_count"}, wantStatus: 200, want: `{"occupied":false}`},
		{name: "channel raw special characters", method: "GET", path: "/apps/3/channels/presence-a@b,c;d=e",
			params: map[string]string{"info": "user_count"}, wantStatus: 200, want: `{"occupied":true,"user_count":1}`},
		{name: "channel user_count on public", method: "GET", path: "/apps/3/channels/public",
			params: map[string]string{"info": "user_count"}, wantStatus: 400},
		{name: "channel cache", method: "GET", path: "/apps/3/channels/cache-x",
			params: map[string]string{"info": "cache"}, wantStatus: 200, want: `{"occupied":true,"cache":{"data":"{\"v\":1}","ttl":1800}}`},
		{name: "channel cache empty", method: "GET", path: "/apps/3/channels/cache-empty",
			params: map[string]string{"info": "cache"}, wantStatus: 200, want: `{"occupied":false,"cache":null}`},
		{name: "channel cache on non-cache channel", method: "GET", path: "/apps/3/channels/public",
			params: map[string]string{"info": "cache"}, wantStatus: 400},
		{name: "channel invalid name", method: "GET", path: "/apps/3/channels/bad%21name", wantStatus: 400,
			rawTarget: func([]byte) string {
				return signedURL("GET", "/apps/3/channels/bad!name", nil, nil, secret, fixedNow)
			}},
		{name: "channel server-to-user is not queryable", method: "GET", path: "/apps/3/channels/x",
			rawTarget: func([]byte) string {
				return strings.Replace(signedURL("GET", "/apps/3/channels/#server-to-user-7", nil, nil, secret, fixedNow), "#", "%23", 1)
			}, wantStatus: 400},

		{name: "users", method: "GET", path: "/apps/3/channels/presence-room/users", wantStatus: 200,
			want: `{"users":[{"id":"1"},{"id":"2"}]}`},
		{name: "users of empty presence channel", method: "GET", path: "/apps/3/channels/presence-empty/users", wantStatus: 200,
			want: `{"users":[]}`},
		{name: "users of non-presence channel", method: "GET", path: "/apps/3/channels/public/users", wantStatus: 400},

		{name: "terminate", path: "/apps/3/users/42/terminate_connections", body: `{}`, wantStatus: 200, want: `{}`,
			check: func(t *testing.T, f *fakeBackend, _ map[string]any, _ http.Header) {
				if _, _, term := f.snapshot(); !slices.Equal(term, []string{"42"}) {
					t.Fatalf("terminated %v", term)
				}
			}},
		{name: "terminate without body", path: "/apps/3/users/42/terminate_connections", wantStatus: 200, want: `{}`},
		{name: "terminate user id too long", path: "/apps/3/users/" + strings.Repeat("u", 129) + "/terminate_connections", body: `{}`, wantStatus: 400},
	})
}

func TestRequestErrors(t *testing.T) {
	trig := map[string]any{"name": "e", "data": "x", "channels": []string{"a"}}
	const p = "/apps/3/events"
	resign := func(edit func(map[string]string), sec string) func([]byte) string {
		return func(body []byte) string {
			q := protocol.SignRequest(key, sec, "POST", p, nil, body, fixedNow)
			edit(q)
			return p + "?" + protocol.EncodeQuery(q)
		}
	}
	runCases(t, []apiCase{
		{name: "unknown app id", path: "/apps/4/events", body: trig, wantStatus: 404, check: publishedNothing},
		{name: "unknown route", path: "/apps/3/nope", body: trig, wantStatus: 404},
		{name: "unknown route under channels", method: "GET", path: "/apps/3/channels/a/b/c", wantStatus: 404},
		{name: "not under apps", method: "GET", path: "/other", wantStatus: 404},
		{name: "trailing slash", path: "/apps/3/events/", body: trig, wantStatus: 404},
		{name: "wrong method", method: "GET", path: p, wantStatus: 405,
			check: func(t *testing.T, _ *fakeBackend, _ map[string]any, hdr http.Header) {
				if hdr.Get("Allow") != "POST" {
					t.Fatalf("Allow %q", hdr.Get("Allow"))
				}
			}},
		{name: "bad secret", path: p, body: trig, rawTarget: resign(func(map[string]string) {}, "wrong-secret"), wantStatus: 401, check: publishedNothing},
		{name: "stale timestamp", path: p, body: trig, wantStatus: 401, check: publishedNothing,
			rawTarget: func(body []byte) string {
				return signedURL("POST", p, nil, body, secret, fixedNow.Add(-601*time.Second))
			}},
		{name: "future timestamp", path: p, body: trig, wantStatus: 401, check: publishedNothing,
			rawTarget: func(body []byte) string {
				return signedURL("POST", p, nil, body, secret, fixedNow.Add(601*time.Second))
			}},
		{name: "timestamp inside the window", path: p, body: trig, wantStatus: 200,
			rawTarget: func(body []byte) string {
				return signedURL("POST", p, nil, body, secret, fixedNow.Add(-599*time.Second))
			}},
		{name: "wrong body_md5 (correctly signed)", path: p, body: trig, wantStatus: 401, check: publishedNothing,
			rawTarget: func(body []byte) string {
				// Sign a different body: md5 and signature agree with each other, not with the body sent.
				return signedURL("POST", p, nil, []byte(`{"name":"other"}`), secret, fixedNow)
			}},
		{name: "missing body_md5", path: p, body: trig, wantStatus: 401,
			rawTarget: resign(func(q map[string]string) {
				delete(q, "body_md5")
				q["auth_signature"] = protocol.Sign(secret, protocol.RequestStringToSign("POST", p, q))
			}, secret)},
		{name: "auth_version 2.0", path: p, body: trig, wantStatus: 401,
			rawTarget: resign(func(q map[string]string) {
				q["auth_version"] = "2.0"
				q["auth_signature"] = protocol.Sign(secret, protocol.RequestStringToSign("POST", p, q))
			}, secret)},
		{name: "other auth_key", path: p, body: trig, wantStatus: 401,
			rawTarget: resign(func(q map[string]string) {
				q["auth_key"] = "other"
				q["auth_signature"] = protocol.Sign(secret, protocol.RequestStringToSign("POST", p, q))
			}, secret)},
		{name: "no auth at all", path: p, body: trig, wantStatus: 401, rawTarget: func([]byte) string { return p }},
		{name: "tampered query", method: "GET", path: "/apps/3/channels", wantStatus: 401,
			rawTarget: func([]byte) string {
				return urlWith(signedURL("GET", "/apps/3/channels", nil, nil, secret, fixedNow), func(q url.Values) {
					q["filter_by_prefix"] = []string{"presence-"}
				})
			}},
		{name: "request body over MaxRequestBytes", path: p, wantStatus: 413, check: publishedNothing,
			mod:  func(c *httpapi.Config) { c.MaxRequestBytes = 100 },
			body: map[string]any{"name": "e", "data": strings.Repeat("x", 200), "channels": []string{"a"}}},
		{name: "disabled app", path: p, body: trig, wantStatus: 403, check: publishedNothing,
			mod: func(c *httpapi.Config) { c.Disabled = true }},
		{name: "timestamp check disabled", path: p, body: trig, wantStatus: 200,
			mod: func(c *httpapi.Config) { c.TimestampWindow = -1 },
			rawTarget: func(body []byte) string {
				return signedURL("POST", p, nil, body, secret, fixedNow.Add(-24*time.Hour))
			}},
	})
}

type limiterFunc func(context.Context, httpapi.LimitRequest) (bool, time.Duration)

func (f limiterFunc) Allow(ctx context.Context, r httpapi.LimitRequest) (bool, time.Duration) {
	return f(ctx, r)
}

func TestLimiter(t *testing.T) {
	var seen []httpapi.LimitRequest
	lim := limiterFunc(func(_ context.Context, r httpapi.LimitRequest) (bool, time.Duration) {
		seen = append(seen, r)
		return r.Op != httpapi.OpPublish, 1500 * time.Millisecond
	})
	f := newFake()
	f.seedState()
	h := newHandler(t, f, func(c *httpapi.Config) { c.Limiter = lim })

	body := mustJSON(map[string]any{"batch": []map[string]any{{"channel": "a", "name": "e", "data": "1"}, {"channel": "b", "name": "e", "data": "2"}}})
	status, _, hdr := do(t, h, "POST", signedURL("POST", "/apps/3/batch_events", nil, body, secret, fixedNow), body)
	if status != http.StatusTooManyRequests || hdr.Get("Retry-After") != "2" {
		t.Fatalf("status %d Retry-After %q, want 429 and 2", status, hdr.Get("Retry-After"))
	}
	if pub, _, _ := f.snapshot(); len(pub) != 0 {
		t.Fatalf("limited request published %v", pub)
	}
	if status, _, _ := do(t, h, "GET", signedURL("GET", "/apps/3/channels", nil, nil, secret, fixedNow), nil); status != 200 {
		t.Fatalf("read status %d", status)
	}
	// Unauthenticated requests never reach the limiter.
	if status, _, _ := do(t, h, "GET", signedURL("GET", "/apps/3/channels", nil, nil, "bad", fixedNow), nil); status != 401 {
		t.Fatalf("bad secret status %d", status)
	}
	want := []httpapi.LimitRequest{{AppID: "3", Op: httpapi.OpPublish, Events: 2}, {AppID: "3", Op: httpapi.OpRead}}
	if !reflect.DeepEqual(seen, want) {
		t.Fatalf("limiter saw %+v, want %+v", seen, want)
	}
}

func TestNewValidates(t *testing.T) {
	if err := (httpapi.Config{AppID: "1", Key: "k"}).Validate(); err == nil {
		t.Fatal("missing secret accepted")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("New with a nil backend did not panic")
		}
	}()
	httpapi.New(httpapi.Config{AppID: "1", Key: "k", Secret: "s"}, nil)
}

type panicBackend struct{ *fakeBackend }

func (panicBackend) Channels(context.Context, string) ([]httpapi.ChannelInfo, error) { panic("boom") }

func TestBackendPanicAnswersJSON(t *testing.T) {
	h := httpapi.New(httpapi.Config{AppID: appID, Key: key, Secret: secret, Now: func() time.Time { return fixedNow }}, panicBackend{newFake()})
	status, obj, _ := do(t, h, "GET", signedURL("GET", "/apps/3/channels", nil, nil, secret, fixedNow), nil)
	if status != 500 || strings.Contains(fmt.Sprint(obj), "boom") {
		t.Fatalf("status %d body %v", status, obj)
	}
}
