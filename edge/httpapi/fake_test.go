package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/milequest/pushercm/edge/httpapi"
	"github.com/milequest/pushercm/protocol"
)

const (
	appID  = "3"
	key    = "278d425bdf160c739803"
	secret = "7ad3773142a6692b25b8"
)

// fixedNow keeps signed seeds valid in unit and fuzz tests.
var fixedNow = time.Unix(1353088179, 0)

type userSend struct{ UserID, Event, Data string }

// fakeBackend records calls and serves canned channel state.
type fakeBackend struct {
	mu         sync.Mutex
	published  []httpapi.Message
	userSends  []userSend
	terminated []string
	channels   map[string]httpapi.ChannelInfo
	members    map[string][]httpapi.Member
	publishErr error
}

func newFake() *fakeBackend {
	return &fakeBackend{channels: map[string]httpapi.ChannelInfo{}, members: map[string][]httpapi.Member{}}
}

func (f *fakeBackend) Publish(_ context.Context, m httpapi.Message) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.publishErr != nil {
		return 0, f.publishErr
	}
	f.published = append(f.published, m)
	return len(m.Channels), nil
}

func (f *fakeBackend) SendToUser(_ context.Context, userID, event, data string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.userSends = append(f.userSends, userSend{userID, event, data})
	return 1, nil
}

func (f *fakeBackend) Channels(_ context.Context, prefix string) ([]httpapi.ChannelInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []httpapi.ChannelInfo
	for name, c := range f.channels {
		if c.Occupied && strings.HasPrefix(name, prefix) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b httpapi.ChannelInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (f *fakeBackend) Channel(_ context.Context, name string) (httpapi.ChannelInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.channels[name]
	if !ok {
		return httpapi.ChannelInfo{}, httpapi.ErrNotFound
	}
	return c, nil
}

func (f *fakeBackend) PresenceMembers(_ context.Context, channel string) ([]httpapi.Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.members[channel]
	if !ok {
		return nil, httpapi.ErrNotFound
	}
	return m, nil
}

func (f *fakeBackend) TerminateUser(_ context.Context, userID string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.terminated = append(f.terminated, userID)
	return 1, nil
}

func (f *fakeBackend) snapshot() (pub []httpapi.Message, sends []userSend, term []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.published), slices.Clone(f.userSends), slices.Clone(f.terminated)
}

// seedState gives the fake a few occupied channels.
func (f *fakeBackend) seedState() {
	f.channels["presence-room"] = httpapi.ChannelInfo{Name: "presence-room", Occupied: true, SubscriptionCount: 3, UserCount: 2}
	f.channels["presence-a@b,c;d=e"] = httpapi.ChannelInfo{Name: "presence-a@b,c;d=e", Occupied: true, SubscriptionCount: 1, UserCount: 1}
	f.channels["public"] = httpapi.ChannelInfo{Name: "public", Occupied: true, SubscriptionCount: 4}
	f.channels["cache-x"] = httpapi.ChannelInfo{Name: "cache-x", Occupied: true, SubscriptionCount: 1,
		Cache: &httpapi.CachedEvent{Event: "e", Data: `{"v":1}`, TTL: 1799500 * time.Millisecond}}
	f.channels["cache-empty"] = httpapi.ChannelInfo{Name: "cache-empty", Occupied: false}
	f.channels["#server-to-user-7"] = httpapi.ChannelInfo{Name: "#server-to-user-7", Occupied: true, SubscriptionCount: 1}
	f.members["presence-room"] = []httpapi.Member{{UserID: "1", UserInfo: json.RawMessage(`{"n":1}`)}, {UserID: "2"}}
}

// signedURL returns path?query signed with secret at now.
func signedURL(method, path string, params map[string]string, body []byte, sec string, now time.Time) string {
	q := protocol.SignRequest(key, sec, method, path, params, body, now)
	return path + "?" + protocol.EncodeQuery(q)
}

// do runs one request through h and checks that the answer is a JSON object.
func do(t testing.TB, h http.Handler, method, target string, body []byte) (int, map[string]any, http.Header) {
	t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	raw, _ := io.ReadAll(res.Body)
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		t.Fatalf("%s %s: status %d, body %q is not a JSON object", method, target, res.StatusCode, raw)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	// One plain body, not chunked (see writeJSON).
	if cl := res.Header.Get("Content-Length"); cl != strconv.Itoa(len(raw)) {
		t.Fatalf("%s %s: Content-Length %q for a %d-byte body", method, target, cl, len(raw))
	}
	if res.StatusCode >= 400 {
		if code, _ := obj["code"].(float64); int(code) != res.StatusCode {
			t.Fatalf("error body %s: code does not match status %d", raw, res.StatusCode)
		}
		if _, ok := obj["error"].(string); !ok {
			t.Fatalf("error body %s has no error string", raw)
		}
	}
	return res.StatusCode, obj, res.Header
}

func newHandler(t testing.TB, f *fakeBackend, mod func(*httpapi.Config)) http.Handler {
	t.Helper()
	cfg := httpapi.Config{AppID: appID, Key: key, Secret: secret, Now: func() time.Time { return fixedNow }}
	if mod != nil {
		mod(&cfg)
	}
	return httpapi.New(cfg, f)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func urlWith(target string, edit func(url.Values)) string {
	path, rawq, _ := strings.Cut(target, "?")
	q, _ := url.ParseQuery(rawq)
	edit(q)
	return path + "?" + q.Encode()
}
