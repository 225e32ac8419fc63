package edge

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/lifecycle"
	"github.com/milequest/pushercm/protocol"
)

func TestConnectionsAPI(t *testing.T) {
	cfg := testConfig()
	cfg.UserAuthEnabled = true
	s := startServer(t, cfg)
	var cs []*tclient
	for i := 0; i < 5; i++ {
		cs = append(cs, connect(t, s))
	}
	signin(t, cs[0], `{"id":"u1"}`)
	cs[1].subscribeOK("presence-p", `{"user_id":"u1"}`)
	cs[2].subscribeOK("room", "")
	cs[3].subscribeOK("room", "")

	// Pagination is stable and complete.
	var seen []string
	after := ""
	for {
		page, next := s.Connections(ConnectionFilter{After: after, Limit: 2})
		for _, ci := range page {
			seen = append(seen, ci.SocketID)
		}
		if next == "" {
			break
		}
		after = next
	}
	if len(seen) != 5 {
		t.Fatalf("paged %d connections", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i-1] >= seen[i] {
			t.Fatalf("not sorted: %v", seen)
		}
	}
	tests := []struct {
		name string
		f    ConnectionFilter
		want int
	}{
		{"all", ConnectionFilter{}, 5},
		{"by channel", ConnectionFilter{Channel: "room"}, 2},
		{"by user (signin and presence)", ConnectionFilter{UserID: "u1"}, 2},
		{"unknown channel", ConnectionFilter{Channel: "none"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if list, _ := s.Connections(tc.f); len(list) != tc.want {
				t.Fatalf("got %d, want %d", len(list), tc.want)
			}
		})
	}
	ci, err := s.Connection(cs[0].id)
	if err != nil || ci.UserID != "u1" || ci.RemoteAddr == "" || ci.MessagesIn == 0 || ci.ConnectedAt.IsZero() {
		t.Fatalf("Connection = %+v %v", ci, err)
	}
	if _, err := s.Connection("1.1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown socket: %v", err)
	}
	if err := s.Disconnect("1.1", 4000, "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("disconnect unknown: %v", err)
	}
	if err := s.Disconnect(cs[4].id, 1234, "x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad code: %v", err)
	}
	if err := s.Disconnect(cs[4].id, 4100, "go away"); err != nil {
		t.Fatal(err)
	}
	if m := cs[4].expect(protocol.EventError, ""); m.errCode() != 4100 {
		t.Fatalf("code %d", m.errCode())
	}
	if code := cs[4].waitClose(); code != 4100 {
		t.Fatalf("close %d", code)
	}
	if _, err := s.Connection(cs[4].id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("disconnected socket still listed: %v", err)
	}
}

func TestServerSideSubscribe(t *testing.T) {
	s := startServer(t, testConfig())
	c := connect(t, s)
	if err := s.Subscribe(c.id, "private-srv"); err != nil {
		t.Fatal(err)
	}
	c.expect(protocol.EventSubscriptionSucceeded, "private-srv")
	if n, err := s.Publish(context.Background(), Message{Channels: []string{"private-srv"}, Event: "e", Data: "d"}); err != nil || n != 1 {
		t.Fatalf("publish %d %v", n, err)
	}
	c.expect("e", "private-srv")
	if err := s.Subscribe(c.id, "presence-srv"); err != nil {
		t.Fatal(err)
	}
	if ms, _ := s.PresenceMembers(context.Background(), "presence-srv"); len(ms) != 1 || ms[0].UserID != c.id {
		t.Fatalf("members %+v", ms)
	}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"subscribe unknown socket", s.Subscribe("9.9", "a"), ErrNotFound},
		{"subscribe bad name", s.Subscribe(c.id, "a b"), ErrInvalid},
		{"subscribe other user's channel", s.Subscribe(c.id, "#server-to-user-x"), ErrInvalid},
		{"unsubscribe not subscribed", s.Unsubscribe(c.id, "nope"), ErrNotFound},
		{"unsubscribe unknown socket", s.Unsubscribe("9.9", "a"), ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, tc.want) {
				t.Fatalf("err %v, want %v", tc.err, tc.want)
			}
		})
	}
	if err := s.Unsubscribe(c.id, "private-srv"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Publish(context.Background(), Message{Channels: []string{"private-srv"}, Event: "e2", Data: "d"}); n != 0 {
		t.Fatalf("delivered %d after unsubscribe", n)
	}
	c.quiet("e2")
}

func TestChannelsAPI(t *testing.T) {
	s := startServer(t, testConfig())
	a, b := connect(t, s), connect(t, s)
	a.subscribeOK("presence-a", `{"user_id":"1"}`)
	b.subscribeOK("presence-a", `{"user_id":"2","user_info":{"n":"B"}}`)
	a.subscribeOK("public-b", "")
	list, _ := s.Channels(context.Background(), "")
	if len(list) != 2 || list[0].Name != "presence-a" || list[0].UserCount != 2 || list[0].SubscriptionCount != 2 || list[1].Name != "public-b" {
		t.Fatalf("Channels = %+v", list)
	}
	if got, _ := s.Channels(context.Background(), "presence-"); len(got) != 1 {
		t.Fatalf("prefix filter %+v", got)
	}
	ci, err := s.Channel(context.Background(), "unused")
	if err != nil || ci.Occupied {
		t.Fatalf("unoccupied channel %+v %v", ci, err)
	}
	if _, err := s.Channel(context.Background(), "bad name"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := s.PresenceMembers(context.Background(), "public-b"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("non-presence members: %v", err)
	}
	if ms, err := s.PresenceMembers(context.Background(), "presence-empty"); err != nil || len(ms) != 0 {
		t.Fatalf("empty presence %v %v", ms, err)
	}
	ms, _ := s.PresenceMembers(context.Background(), "presence-a")
	if len(ms) != 2 || string(ms[1].UserInfo) != `{"n":"B"}` {
		t.Fatalf("members %+v", ms)
	}
	st := s.Stats()
	if st.Channels != 2 || st.PresenceMembers != 2 || st.Subscriptions != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWatcher(t *testing.T) {
	s := startServer(t, testConfig())
	w := s.Watch(64)
	defer w.Close()
	lagging := s.Watch(1)
	c := connect(t, s)
	c.subscribeOK("presence-w", `{"user_id":"7"}`)
	_ = c.conn.Close()
	want := []lifecycle.EventType{lifecycle.Connected, lifecycle.ChannelOccupied, lifecycle.MemberAdded, lifecycle.Subscribed, lifecycle.Unsubscribed, lifecycle.MemberRemoved, lifecycle.ChannelVacated, lifecycle.Disconnected}
	for i, typ := range want {
		select {
		case e := <-w.C():
			if e.Type != typ {
				t.Fatalf("event %d = %v, want %v", i, e.Type, typ)
			}
			if e.Time.IsZero() || (typ != lifecycle.ChannelOccupied && typ != lifecycle.ChannelVacated && e.SocketID != c.id) {
				t.Fatalf("event %+v", e)
			}
		case <-time.After(waitFor):
			t.Fatalf("timed out waiting for %v", typ)
		}
	}
	// The slow watcher overflowed and was cut off; the other one was not.
	for range lagging.C() {
	}
	if !errors.Is(lagging.Err(), ErrWatcherLagged) {
		t.Fatalf("lagging watcher err %v", lagging.Err())
	}
	if w.Err() != nil {
		t.Fatalf("healthy watcher err %v", w.Err())
	}
	lagging.Close() // closing a finished watcher is harmless
}

type recordSink struct {
	mu  sync.Mutex
	evs []protocol.WebhookEvent
}

func (r *recordSink) Notify(e protocol.WebhookEvent) {
	r.mu.Lock()
	r.evs = append(r.evs, e)
	r.mu.Unlock()
}

func (r *recordSink) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.evs {
		out = append(out, e.Name)
	}
	return out
}

func TestWebhookSink(t *testing.T) {
	cfg := testConfig()
	cfg.ClientEventsEnabled = true
	sink := &recordSink{}
	s := startServer(t, cfg, WithWebhookSink(sink))
	a, b := connect(t, s), connect(t, s)
	a.subscribeOK("presence-h", `{"user_id":"1"}`)
	b.subscribeOK("presence-h", `{"user_id":"2"}`)
	a.send(map[string]any{"event": "client-x", "channel": "presence-h", "data": map[string]int{"a": 1}})
	b.expect("client-x", "presence-h")
	a.subscribeOK("cache-h", "")
	a.expect(protocol.EventCacheMiss, "cache-h")
	_ = b.conn.Close()
	_ = a.conn.Close()
	want := "channel_occupied member_added member_added client_event channel_occupied cache_miss"
	pushertest.Eventually(t, "webhooks", func() bool { return len(sink.names()) >= 10 })
	got := strings.Join(sink.names()[:6], " ")
	if got != want {
		t.Fatalf("webhooks %q, want %q", got, want)
	}
	sink.mu.Lock()
	ce := sink.evs[3]
	sink.mu.Unlock()
	if ce.Data != `{"a":1}` || ce.UserID != "1" || ce.SocketID != a.id || ce.Event != "client-x" {
		t.Fatalf("client_event webhook %+v", ce)
	}
}

func TestHTTPRoutes(t *testing.T) {
	s, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	s.Handle("GET /extra", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("extra")) }))
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Shutdown(context.Background()) }()
	c := connect(t, s)
	c.subscribeOK("api-ch", "")
	base := "http://" + s.Addr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/extra"); code != 200 || body != "extra" {
		t.Fatalf("extra route %d %s", code, body)
	}
	if code, body := get("/nope"); code != 404 || !strings.HasPrefix(body, "{") {
		t.Fatalf("unknown route %d %s", code, body)
	}
	// A signed trigger through the mounted HTTP API reaches the socket.
	body := []byte(`{"name":"from-http","channels":["api-ch"],"data":"{\"x\":1}"}`)
	path := "/apps/app-id/events"
	q := protocol.SignRequest(testKey, testSecret, "POST", path, nil, body, time.Now())
	resp, err := http.Post(base+path+"?"+protocol.EncodeQuery(q), "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(rb), "{") {
		t.Fatalf("trigger %d %s", resp.StatusCode, rb)
	}
	if m := c.expect("from-http", "api-ch"); m.str() != `{"x":1}` {
		t.Fatalf("data %s", m.str())
	}
	q = protocol.SignRequest(testKey, testSecret, "GET", "/apps/app-id/channels", nil, nil, time.Now())
	if code, body := get("/apps/app-id/channels?" + protocol.EncodeQuery(q)); code != 200 || !strings.Contains(body, "api-ch") {
		t.Fatalf("channels %d %s", code, body)
	}
	q = protocol.SignRequest(testKey, "wrong", "GET", "/apps/app-id/channels", nil, nil, time.Now())
	if code, _ := get("/apps/app-id/channels?" + protocol.EncodeQuery(q)); code != 401 {
		t.Fatalf("bad signature answered %d", code)
	}
}

type recordMetrics struct {
	mu        sync.Mutex
	published []int
	writes    int
	frames    int
}

func (m *recordMetrics) Published(delivered int, _ time.Duration) {
	m.mu.Lock()
	m.published = append(m.published, delivered)
	m.mu.Unlock()
}

func (m *recordMetrics) Written(wait time.Duration, frames int) {
	m.mu.Lock()
	if wait >= 0 {
		m.writes++
		m.frames += frames
	}
	m.mu.Unlock()
}

func TestMetricsHooks(t *testing.T) {
	m := &recordMetrics{}
	s := startServer(t, testConfig(), WithMetrics(m))
	a, b := connect(t, s), connect(t, s)
	a.subscribeOK("m", "")
	b.subscribeOK("m", "")
	m.mu.Lock()
	before := m.frames
	m.mu.Unlock()
	if _, err := s.Publish(context.Background(), Message{Channels: []string{"m"}, Event: "e", Data: "d"}); err != nil {
		t.Fatal(err)
	}
	a.expect("e", "m")
	b.expect("e", "m")
	pushertest.Eventually(t, "write observations", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.frames >= before+2
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.published) != 1 || m.published[0] != 2 {
		t.Fatalf("published %v", m.published)
	}
}

func TestWatchMessages(t *testing.T) {
	cfg := testConfig()
	cfg.ClientEventsEnabled = true
	s := startServer(t, cfg, WithWebhookSink(&recordSink{}))
	plain := s.Watch(64)
	defer plain.Close()
	msgs := s.WatchMessages(64)
	defer msgs.Close()
	a, b := connect(t, s), connect(t, s)
	a.subscribeOK("presence-m", `{"user_id":"1"}`)
	b.subscribeOK("presence-m", `{"user_id":"2"}`)
	if _, err := s.Publish(context.Background(), Message{Channels: []string{"presence-m"}, Event: "hello", Data: "{}"}); err != nil {
		t.Fatal(err)
	}
	a.send(map[string]any{"event": "client-x", "channel": "presence-m", "data": map[string]int{"a": 1}})
	b.expect("client-x", "presence-m")

	seen := map[lifecycle.EventType]lifecycle.Event{}
	deadline := time.After(waitFor)
	for seen[lifecycle.Published].Name == "" || seen[lifecycle.ClientEvent].Name == "" || seen[lifecycle.Webhook].Name == "" {
		select {
		case e := <-msgs.C():
			if _, dup := seen[e.Type]; !dup || e.Type == lifecycle.Webhook {
				seen[e.Type] = e
			}
		case <-deadline:
			t.Fatalf("message events seen: %+v", seen)
		}
	}
	if p := seen[lifecycle.Published]; p.Channel != "presence-m" || p.Name != "hello" || p.Delivered != 2 {
		t.Fatalf("published event %+v", p)
	}
	if c := seen[lifecycle.ClientEvent]; c.Channel != "presence-m" || c.Name != "client-x" || c.SocketID != a.id || c.UserID != "1" {
		t.Fatalf("client event %+v", c)
	}
	// The lifecycle watcher got none of them.
	for {
		select {
		case e := <-plain.C():
			if e.Type.IsMessage() {
				t.Fatalf("lifecycle watcher got %+v", e)
			}
			continue
		default:
		}
		break
	}
}
