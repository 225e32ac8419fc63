package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/protocol"
)

func TestHandshakeAndPing(t *testing.T) {
	s := startServer(t, testConfig())
	c := connect(t, s)
	c.send(map[string]any{"event": protocol.EventPing, "data": map[string]any{}})
	c.expect(protocol.EventPong, "")
	// data as a string holding JSON is accepted too.
	c.send(map[string]any{"event": protocol.EventPing, "data": "{}"})
	c.expect(protocol.EventPong, "")
	c2 := connect(t, s)
	if c.id == c2.id {
		t.Fatal("socket ids must be unique")
	}
	if st := s.Stats(); st.ConnectionsActive != 2 || st.ConnectionsTotal != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestConnectionRefusals(t *testing.T) {
	cfg := testConfig()
	cfg.AllowedOrigins = []string{"https://ok.example", "*.good.example"}
	s := startServer(t, cfg)
	tests := []struct {
		name   string
		path   string
		origin string
		code   int
		reason string
	}{
		{"unknown key", "/app/nope?protocol=7", "", protocol.CodeAppNotFound, RefusedUnknownApp},
		{"no protocol", "/app/" + testKey, "", protocol.CodeNoProtocol, RefusedVersion},
		{"bad protocol format", "/app/" + testKey + "?protocol=seven", "", protocol.CodeInvalidVersion, RefusedVersion},
		{"old protocol", "/app/" + testKey + "?protocol=3", "", protocol.CodeUnsupportedProtocol, RefusedVersion},
		{"origin refused", "/app/" + testKey + "?protocol=7", "https://evil.example", protocol.CodeUnauthorized, RefusedOrigin},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats().ConnectionsRefused[tc.reason]
			var hdr map[string]string
			if tc.origin != "" {
				hdr = map[string]string{"Origin": tc.origin}
			}
			c := dialRaw(t, s, tc.path, hdr, nil)
			close(c.noRead)
			m := c.expect(protocol.EventError, "")
			if m.errCode() != tc.code {
				t.Fatalf("error code %d, want %d", m.errCode(), tc.code)
			}
			if got := c.waitClose(); int(got) != tc.code {
				t.Fatalf("close code %d, want %d", got, tc.code)
			}
			if got := s.Stats().ConnectionsRefused[tc.reason]; got != before+1 {
				t.Fatalf("refused[%s] = %d, want %d", tc.reason, got, before+1)
			}
		})
	}
	for _, origin := range []string{"https://ok.example", "https://a.good.example"} {
		c := dialRaw(t, s, "/app/"+testKey+"?protocol=7", map[string]string{"Origin": origin}, nil)
		close(c.noRead)
		if m := c.next(); m.Event != protocol.EventConnectionEstablished {
			t.Fatalf("origin %s refused: %s", origin, m.Event)
		}
	}
}

func TestPublicPublishAndExclude(t *testing.T) {
	s := startServer(t, testConfig())
	a, b := connect(t, s), connect(t, s)
	a.subscribeOK("my-channel", "")
	b.subscribeOK("my-channel", "")
	n, err := s.Publish(context.Background(), Message{Channels: []string{"my-channel"}, Event: "greet", Data: `{"x":"abc/d"}`})
	if err != nil || n != 2 {
		t.Fatalf("Publish = %d, %v", n, err)
	}
	for _, c := range []*tclient{a, b} {
		m := c.expect("greet", "my-channel")
		if m.str() != `{"x":"abc/d"}` {
			t.Fatalf("data %q", m.str())
		}
	}
	n, err = s.Publish(context.Background(), Message{Channels: []string{"my-channel"}, Event: "second", Data: "x", ExcludeSocketID: a.id})
	if err != nil || n != 1 {
		t.Fatalf("Publish excluding = %d, %v", n, err)
	}
	b.expect("second", "my-channel")
	a.quiet("second")
	// Unsubscribe stops delivery.
	a.send(map[string]any{"event": protocol.EventUnsubscribe, "data": map[string]any{"channel": "my-channel"}})
	pushertest.Eventually(t, "unsubscribe", func() bool { ci, _ := s.Channel(context.Background(), "my-channel"); return ci.SubscriptionCount == 1 })
}

func TestPublishValidation(t *testing.T) {
	s := startServer(t, testConfig())
	ctx := context.Background()
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf("c%d", i)
	}
	tests := []struct {
		name string
		m    Message
		want error
	}{
		{"no channels", Message{Event: "e"}, ErrInvalid},
		{"no event", Message{Channels: []string{"a"}}, ErrInvalid},
		{"bad channel", Message{Channels: []string{"a b"}, Event: "e"}, ErrInvalid},
		{"too many channels", Message{Channels: many, Event: "e"}, ErrLimit},
		{"payload too big", Message{Channels: []string{"a"}, Event: "e", Data: strings.Repeat("x", 10241)}, ErrLimit},
		{"event name too long", Message{Channels: []string{"a"}, Event: strings.Repeat("e", 201)}, ErrLimit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Publish(ctx, tc.m); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestPrivateAndEncryptedAuth(t *testing.T) {
	s := startServer(t, testConfig())
	c := connect(t, s)
	for _, ch := range []string{"private-x", "private-encrypted-x", "presence-x"} {
		t.Run(ch, func(t *testing.T) {
			cd := ""
			if strings.HasPrefix(ch, "presence-") {
				cd = `{"user_id":"1"}`
			}
			// Signed for another socket: refused on the channel, socket stays open.
			c.subscribe(ch, protocol.ChannelAuth(testKey, testSecret, "1.1", ch, cd), cd)
			m := c.expect(protocol.EventSubscriptionError, ch)
			if m.errCode() != 401 || !strings.Contains(m.str(), protocol.SubErrAuth) {
				t.Fatalf("subscription_error %s", m.Data)
			}
			c.subscribe(ch, "", cd)
			c.expect(protocol.EventSubscriptionError, ch)
			c.subscribeOK(ch, cd)
		})
	}
	if st := s.Stats(); st.ConnectionsActive != 1 || st.Subscriptions != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func presenceData(t *testing.T, m msg) (ids []string, count int) {
	var d struct {
		Presence struct {
			IDs   []string                   `json:"ids"`
			Hash  map[string]json.RawMessage `json:"hash"`
			Count int                        `json:"count"`
		} `json:"presence"`
	}
	if err := json.Unmarshal([]byte(m.str()), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Presence.Hash) != d.Presence.Count {
		t.Fatalf("hash %v count %d", d.Presence.Hash, d.Presence.Count)
	}
	return d.Presence.IDs, d.Presence.Count
}

func TestPresenceSameUserTwice(t *testing.T) {
	s := startServer(t, testConfig())
	const ch = "presence-room"
	observer := connect(t, s)
	observer.subscribeOK(ch, `{"user_id":"obs"}`)
	u1a, u1b := connect(t, s), connect(t, s)
	m := u1a.subscribeOK(ch, `{"user_id":7,"user_info":{"name":"A"}}`)
	if ids, n := presenceData(t, m); n != 2 || len(ids) != 2 {
		t.Fatalf("presence %v %d", ids, n)
	}
	added := observer.expect(protocol.EventMemberAdded, ch)
	if added.str() != `{"user_id":"7","user_info":{"name":"A"}}` {
		t.Fatalf("member_added %s", added.str())
	}
	if _, n := presenceData(t, u1b.subscribeOK(ch, `{"user_id":7,"user_info":{"name":"A"}}`)); n != 2 {
		t.Fatalf("count %d after same user twice", n)
	}
	observer.quiet(protocol.EventMemberAdded)
	ms, err := s.PresenceMembers(context.Background(), ch)
	if err != nil || len(ms) != 2 || ms[0].UserID != "7" || string(ms[0].UserInfo) != `{"name":"A"}` {
		t.Fatalf("members %+v %v", ms, err)
	}
	_ = u1a.conn.Close()
	pushertest.Eventually(t, "first connection gone", func() bool { ci, _ := s.Channel(context.Background(), ch); return ci.SubscriptionCount == 2 })
	observer.quiet(protocol.EventMemberRemoved)
	_ = u1b.conn.Close()
	removed := observer.expect(protocol.EventMemberRemoved, ch)
	if removed.str() != `{"user_id":"7"}` {
		t.Fatalf("member_removed %s", removed.str())
	}
	if ci, _ := s.Channel(context.Background(), ch); ci.UserCount != 1 {
		t.Fatalf("user count %d", ci.UserCount)
	}
}

func TestPresenceLimits(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxPresenceMembers = 1
	cfg.Limits.MaxMemberInfoBytes = 16
	s := startServer(t, cfg)
	a, b := connect(t, s), connect(t, s)
	a.subscribeOK("presence-full", `{"user_id":"a"}`)
	cd := `{"user_id":"b"}`
	b.subscribe("presence-full", protocol.ChannelAuth(testKey, testSecret, b.id, "presence-full", cd), cd)
	if m := b.expect(protocol.EventSubscriptionError, "presence-full"); m.errCode() != protocol.CodeOverCapacity || !strings.Contains(m.str(), protocol.SubErrLimitReached) {
		t.Fatalf("limit error %s", m.Data)
	}
	// The same user again is not a new member.
	b.subscribeOK("presence-full", `{"user_id":"a"}`)
	big := `{"user_id":"c","user_info":{"n":"0123456789abcdef"}}`
	b.subscribe("presence-big", protocol.ChannelAuth(testKey, testSecret, b.id, "presence-big", big), big)
	if m := b.expect(protocol.EventSubscriptionError, "presence-big"); m.errCode() != protocol.CodeClientEventRejected {
		t.Fatalf("info limit error %s", m.Data)
	}
}

func TestSubscriptionsPerConnection(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxSubscriptionsPerConnection = 2
	s := startServer(t, cfg)
	c := connect(t, s)
	c.subscribeOK("a", "")
	c.subscribeOK("b", "")
	c.subscribeOK("a", "") // idempotent, not a third subscription
	c.subscribe("c", "", "")
	if m := c.expect(protocol.EventSubscriptionError, "c"); !strings.Contains(m.str(), protocol.SubErrLimitReached) {
		t.Fatalf("error %s", m.Data)
	}
	if err := s.Subscribe(c.id, "d"); !errors.Is(err, ErrLimit) {
		t.Fatalf("server-side subscribe over limit: %v", err)
	}
}

func TestCacheChannels(t *testing.T) {
	s := startServer(t, testConfig())
	for _, ch := range []string{"cache-x", "private-cache-x", "presence-cache-x", "private-encrypted-cache-x"} {
		t.Run(ch, func(t *testing.T) {
			cd := ""
			if strings.HasPrefix(ch, "presence-") {
				cd = `{"user_id":"1"}`
			}
			a := connect(t, s)
			a.subscribeOK(ch, cd)
			miss := a.expect(protocol.EventCacheMiss, ch)
			if miss.hasData {
				t.Fatal("cache_miss must carry no data")
			}
			if _, err := s.Publish(context.Background(), Message{Channels: []string{ch}, Event: "ev", Data: "cached"}); err != nil {
				t.Fatal(err)
			}
			a.expect("ev", ch)
			b := connect(t, s)
			b.subscribeOK(ch, cd)
			if m := b.next(); m.Event != "ev" || m.str() != "cached" {
				t.Fatalf("replay %+v", m)
			}
			b.quiet(protocol.EventCacheMiss)
			if ci, _ := s.Channel(context.Background(), ch); ci.Cache == nil || ci.Cache.Data != "cached" {
				t.Fatalf("channel cache %+v", ci.Cache)
			}
		})
	}
}

func TestCacheTTL(t *testing.T) {
	cfg := testConfig()
	cfg.CacheTTL = 50 * time.Millisecond
	s := startServer(t, cfg)
	if _, err := s.Publish(context.Background(), Message{Channels: []string{"cache-t"}, Event: "ev", Data: "x"}); err != nil {
		t.Fatal(err)
	}
	pushertest.Eventually(t, "cache expiry", func() bool { ci, _ := s.Channel(context.Background(), "cache-t"); return ci.Cache == nil })
	c := connect(t, s)
	c.subscribeOK("cache-t", "")
	c.expect(protocol.EventCacheMiss, "cache-t")
}

func TestClientEvents(t *testing.T) {
	cfg := testConfig()
	cfg.ClientEventsEnabled = true
	s := startServer(t, cfg)
	a, b := connect(t, s), connect(t, s)
	a.subscribeOK("private-chat", "")
	b.subscribeOK("private-chat", "")
	a.send(map[string]any{"event": "client-hi", "channel": "private-chat", "data": map[string]any{"a": 1}})
	if m := b.expect("client-hi", "private-chat"); m.str() != `{"a":1}` || m.UserID != "" {
		t.Fatalf("client event %+v", m)
	}
	a.quiet("client-hi") // never echoed

	a.subscribeOK("presence-chat", `{"user_id":"u-a"}`)
	b.subscribeOK("presence-chat", `{"user_id":"u-b"}`)
	a.send(map[string]any{"event": "client-hi", "channel": "presence-chat", "data": "x"})
	if m := b.expect("client-hi", "presence-chat"); m.UserID != "u-a" {
		t.Fatalf("presence client event user_id %q", m.UserID)
	}

	tests := []struct {
		name    string
		channel string
		event   string
		data    any
	}{
		{"public channel", "public", "client-x", "d"},
		{"encrypted channel", "private-encrypted-chat", "client-x", "d"},
		{"not subscribed", "private-other", "client-x", "d"},
		{"name too long", "private-chat", "client-" + strings.Repeat("n", 200), "d"},
		{"payload too big", "private-chat", "client-x", strings.Repeat("p", 10241)},
	}
	a.subscribeOK("public", "")
	a.subscribeOK("private-encrypted-chat", "")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a.send(map[string]any{"event": tc.event, "channel": tc.channel, "data": tc.data})
			m := a.expect(protocol.EventError, tc.channel)
			if m.errCode() != protocol.CodeClientEventRejected {
				t.Fatalf("code %d", m.errCode())
			}
		})
	}
}

// A subscribe-only grant lets a socket listen but not send client events, on
// private and presence channels, and a later plain grant lifts it.
func TestSubscribeOnlyGrant(t *testing.T) {
	cfg := testConfig()
	cfg.ClientEventsEnabled = true
	s := startServer(t, cfg)
	tests := []struct {
		name, channel, channelData string
	}{
		{name: "private", channel: "private-ro-1"},
		{name: "presence", channel: "presence-ro-1", channelData: `{"user_id":"u-a"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := connect(t, s), connect(t, s)
			a.subscribe(tc.channel, protocol.SubscribeOnlyChannelAuth(testKey, testSecret, a.id, tc.channel, tc.channelData), tc.channelData)
			a.expect(protocol.EventSubscriptionSucceeded, tc.channel)
			bData := ""
			if tc.channelData != "" {
				bData = `{"user_id":"u-b"}`
			}
			b.subscribeOK(tc.channel, bData)

			a.send(map[string]any{"event": "client-chat", "channel": tc.channel, "data": "x"})
			if m := a.expect(protocol.EventError, tc.channel); m.errCode() != protocol.CodeClientEventRejected {
				t.Fatalf("code %d, want %d", m.errCode(), protocol.CodeClientEventRejected)
			}
			b.quiet("client-chat")

			// b holds a plain grant: its client events still flow, to a too.
			b.send(map[string]any{"event": "client-chat", "channel": tc.channel, "data": "y"})
			a.expect("client-chat", tc.channel)

			// Subscribing again with a plain grant replaces the restriction.
			a.subscribeOK(tc.channel, tc.channelData)
			a.send(map[string]any{"event": "client-chat", "channel": tc.channel, "data": "z"})
			b.expect("client-chat", tc.channel)
		})
	}
	t.Run("tag stripped", func(t *testing.T) {
		a := connect(t, s)
		ro := protocol.SubscribeOnlyChannelAuth(testKey, testSecret, a.id, "private-ro-2", "")
		a.subscribe("private-ro-2", strings.Replace(ro, protocol.SubscribeOnlyTag, "", 1), "")
		if m := a.expect(protocol.EventSubscriptionError, "private-ro-2"); m.Event != protocol.EventSubscriptionError {
			t.Fatalf("got %s", m.Event)
		}
	})
}

func TestClientEventRateLimit(t *testing.T) {
	cfg := testConfig()
	cfg.ClientEventsEnabled = true
	// A frozen clock: the bucket never refills, so exactly 10 of 20 pass on any machine.
	frozen := time.Now()
	s := startServer(t, cfg, withClock(func() time.Time { return frozen }))
	a, b := connect(t, s), connect(t, s)
	a.subscribeOK("private-r", "")
	b.subscribeOK("private-r", "")
	for i := 0; i < 20; i++ {
		a.send(map[string]any{"event": "client-n", "channel": "private-r", "data": fmt.Sprint(i)})
	}
	rejected := 0
	for rejected < 10 {
		m := a.next()
		if m.Event == protocol.EventError {
			if m.errCode() != protocol.CodeClientEventRejected {
				t.Fatalf("code %d", m.errCode())
			}
			rejected++
		}
	}
	a.quiet("none") // still connected and answering
	for i := 0; i < 10; i++ {
		b.expect("client-n", "private-r")
	}
	b.quiet("client-n")
	if st := s.Stats(); st.ClientEventsLimited != 10 || st.ClientEvents != 10 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClientEventsDisabled(t *testing.T) {
	s := startServer(t, testConfig())
	a := connect(t, s)
	a.subscribeOK("private-d", "")
	a.send(map[string]any{"event": "client-x", "channel": "private-d", "data": "d"})
	if m := a.expect(protocol.EventError, "private-d"); m.errCode() != protocol.CodeClientEventRejected {
		t.Fatalf("code %d", m.errCode())
	}
}

type denyAll struct{}

func (denyAll) AllowClientEvent(string, string) bool { return false }
func (denyAll) AllowConnection(string) bool          { return false }

func TestHooks(t *testing.T) {
	cfg := testConfig()
	cfg.ClientEventsEnabled = true
	s := startServer(t, cfg, withClientEventLimiter(denyAll{}), withConnectionLimiter(denyAll{}))
	c := dialRaw(t, s, "/app/"+testKey+"?protocol=7", nil, nil)
	close(c.noRead)
	if m := c.expect(protocol.EventError, ""); m.errCode() != protocol.CodeOverCapacity {
		t.Fatalf("code %d", m.errCode())
	}
	if code := c.waitClose(); code != protocol.CodeOverCapacity {
		t.Fatalf("close %d", code)
	}
	if s.Stats().ConnectionsRefused[RefusedRateLimited] != 1 {
		t.Fatal("not counted")
	}
}

func signin(t *testing.T, c *tclient, userData string) msg {
	t.Helper()
	c.send(map[string]any{"event": protocol.EventSignin, "data": map[string]any{
		"auth": protocol.UserAuth(testKey, testSecret, c.id, userData), "user_data": userData}})
	return c.expect(protocol.EventSigninSuccess, "")
}

func TestSigninSendToUserTerminate(t *testing.T) {
	cfg := testConfig()
	cfg.UserAuthEnabled = true
	s := startServer(t, cfg)
	a, b, other := connect(t, s), connect(t, s), connect(t, s)
	m := signin(t, a, `{"id":"7","user_info":{"n":1}}`)
	var d struct {
		UserData string `json:"user_data"`
	}
	if err := json.Unmarshal([]byte(m.str()), &d); err != nil || d.UserData != `{"id":"7","user_info":{"n":1}}` {
		t.Fatalf("signin_success %s %v", m.Data, err)
	}
	signin(t, b, `{"id":"7"}`)
	// Bad signature: error frame, socket stays open.
	other.send(map[string]any{"event": protocol.EventSignin, "data": map[string]any{"auth": testKey + ":00", "user_data": `{"id":"8"}`}})
	if m := other.expect(protocol.EventError, ""); m.errCode() != protocol.CodeUnauthorized {
		t.Fatalf("code %d", m.errCode())
	}
	// Only the signed-in user may join its channel.
	other.subscribe("#server-to-user-7", "", "")
	other.expect(protocol.EventSubscriptionError, "#server-to-user-7")
	a.subscribeOK("#server-to-user-7", "")

	n, err := s.SendToUser(context.Background(), "7", "hello", `{"x":1}`)
	if err != nil || n != 2 {
		t.Fatalf("SendToUser = %d %v", n, err)
	}
	for _, c := range []*tclient{a, b} {
		if m := c.expect("hello", "#server-to-user-7"); m.str() != `{"x":1}` {
			t.Fatalf("data %s", m.str())
		}
	}
	// Publishing to the #server-to-user channel routes to the user too.
	if n, err := s.Publish(context.Background(), Message{Channels: []string{"#server-to-user-7"}, Event: "via-publish", Data: "d"}); err != nil || n != 2 {
		t.Fatalf("Publish to user = %d %v", n, err)
	}
	if got, _ := s.TerminateUser(context.Background(), "7"); got != 2 {
		t.Fatalf("TerminateUser = %d", got)
	}
	for _, c := range []*tclient{a, b} {
		if m := c.expect(protocol.EventError, ""); m.errCode() != protocol.CodeUnauthorized {
			t.Fatalf("code %d", m.errCode())
		}
		if code := c.waitClose(); code != protocol.CodeUnauthorized {
			t.Fatalf("close %d", code)
		}
	}
	other.quiet("none")
	if st := s.Stats(); st.SignedInUsers != 0 || st.ConnectionsActive != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSigninDisabled(t *testing.T) {
	s := startServer(t, testConfig())
	c := connect(t, s)
	c.send(map[string]any{"event": protocol.EventSignin, "data": map[string]any{"auth": protocol.UserAuth(testKey, testSecret, c.id, `{"id":"1"}`), "user_data": `{"id":"1"}`}})
	if m := c.expect(protocol.EventError, ""); m.errCode() != protocol.CodeUnauthorized {
		t.Fatalf("code %d", m.errCode())
	}
	c.quiet("none")
}

func TestMaxConnections(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxConnections = 2
	s := startServer(t, cfg)
	connect(t, s)
	connect(t, s)
	c := dialRaw(t, s, "/app/"+testKey+"?protocol=7", nil, nil)
	close(c.noRead)
	if m := c.expect(protocol.EventError, ""); m.errCode() != protocol.CodeOverQuota {
		t.Fatalf("code %d", m.errCode())
	}
	if code := c.waitClose(); code != protocol.CodeOverQuota {
		t.Fatalf("close %d", code)
	}
	if got := s.Stats().ConnectionsRefused[RefusedPoolExhausted]; got != 1 {
		t.Fatalf("CONNECTION_POOL_EXHAUSTED = %d", got)
	}
}

func TestActivityTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.ActivityTimeout = 200 * time.Millisecond
	cfg.PongTimeout = 2 * time.Second // room for the answering client on a loaded machine
	s := startServer(t, cfg)
	alive := connect(t, s)
	alive.AnswerPings(true)
	dead := connect(t, s)
	dead.expect(protocol.EventPing, "")
	if m := dead.expect(protocol.EventError, ""); m.errCode() != protocol.CodePongTimeout {
		t.Fatalf("code %d", m.errCode())
	}
	if code := dead.waitClose(); code != protocol.CodePongTimeout {
		t.Fatalf("close %d", code)
	}
	// The client that answers survives several rounds.
	for i := 0; i < 3; i++ {
		alive.expect(protocol.EventPing, "")
	}
	if _, err := s.Connection(alive.id); err != nil {
		t.Fatal(err)
	}
	if s.Stats().StaleClosed != 1 {
		t.Fatalf("stale %d", s.Stats().StaleClosed)
	}
}

// smallRecvBuf dials with a tiny receive buffer so a non-reading client backs up fast.
func smallRecvBuf(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	return d.DialContext(ctx, network, addr)
}

func TestSlowConsumerClosed(t *testing.T) {
	cfg := testConfig()
	cfg.WriteQueueBytes = 64 << 10
	cfg.CloseGrace = 5 * time.Second
	s := startServer(t, cfg)
	fast := connect(t, s)
	fast.subscribeOK("firehose", "")
	slow := dialRaw(t, s, "/app/"+testKey+"?protocol=7", nil, smallRecvBuf)
	pushertest.Eventually(t, "slow socket registered", func() bool { return s.Stats().ConnectionsActive == 2 })
	var slowID string
	for _, ci := range func() []ConnectionInfo { l, _ := s.Connections(ConnectionFilter{}); return l }() {
		if ci.SocketID != fast.id {
			slowID = ci.SocketID
		}
	}
	if err := s.Subscribe(slowID, "firehose"); err != nil {
		t.Fatal(err)
	}
	payload := strings.Repeat("x", 8000)
	deadline := time.Now().Add(waitFor)
	sent := 0
	for s.Stats().SlowConsumersClosed == 0 {
		if time.Now().After(deadline) {
			t.Fatal("slow consumer never detected")
		}
		if _, err := s.Publish(context.Background(), Message{Channels: []string{"firehose"}, Event: "e", Data: payload}); err != nil {
			t.Fatal(err)
		}
		sent++
		// The fast client keeps up, so the publisher is never stalled by the slow one.
		fast.expect("e", "firehose")
	}
	close(slow.noRead)
	if code := slow.waitClose(); code != protocol.CodeOverCapacity {
		t.Fatalf("slow consumer close code %d, want 4100", code)
	}
	fast.quiet("none")
	if _, err := s.Connection(slowID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("slow socket still registered: %v", err)
	}
	t.Logf("slow consumer cut after %d publishes", sent)
}

func TestInboundFrameLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxFrameBytes = 1024
	s := startServer(t, cfg)
	c := connect(t, s)
	c.send(map[string]any{"event": "client-big", "channel": "private-x", "data": strings.Repeat("x", 2000)})
	if m := c.expect(protocol.EventError, ""); m.errCode() != 0 {
		t.Fatalf("code %d", m.errCode())
	}
	c.quiet("none")
	c.send(map[string]any{"event": "client-huge", "data": strings.Repeat("x", 5000)})
	// nbio sends 1009 and closes at once; the client may see the close frame or a reset
	// (unread data on the server side), but the socket must end either way.
	if code := c.waitClose(); code != ws.StatusMessageTooBig && code != 0 {
		t.Fatalf("close %d", code)
	}
}

func TestMalformedFrames(t *testing.T) {
	s := startServer(t, testConfig())
	c := connect(t, s)
	for _, raw := range []string{"nope", "[]", `{"data":1}`, `{"event":"pusher:subscribe","data":{}}`, `{"event":"pusher:subscribe","data":"not json"}`} {
		_ = c.WriteRaw(func(conn net.Conn) error { return ws.WriteFrame(conn, ws.MaskFrame(ws.NewTextFrame([]byte(raw)))) })
		if m := c.expect(protocol.EventError, ""); m.errCode() != 0 {
			t.Fatalf("%s: code %d", raw, m.errCode())
		}
	}
	c.subscribe("bad channel", "", "")
	c.expect(protocol.EventSubscriptionError, "bad channel")
	c.subscribe(strings.Repeat("a", 165), "", "")
	if m := c.expect(protocol.EventSubscriptionError, ""); !strings.Contains(m.str(), protocol.SubErrLimitReached) {
		t.Fatalf("too long name %s", m.Data)
	}
	c.quiet("none")
}

func TestShutdownDrains(t *testing.T) {
	s, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	a, b := connect(t, s), connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*tclient{a, b} {
		if code := c.waitClose(); code != protocol.CodeReconnect {
			t.Fatalf("drain close %d", code)
		}
	}
	if _, err := s.Publish(ctx, Message{Channels: []string{"a"}, Event: "e"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after shutdown: %v", err)
	}
}

// TestShutdownPaced: DrainRate spreads the 4200 closes so clients do not reconnect all
// at once; 6 clients at 10/s cannot all be closed in less than half a second.
func TestShutdownPaced(t *testing.T) {
	cfg := testConfig()
	cfg.DrainRate = 10
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	var cs []*tclient
	for i := 0; i < 6; i++ {
		cs = append(cs, connect(t, s))
	}
	start := time.Now()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 500*time.Millisecond {
		t.Fatalf("drained 6 clients in %s at 10/s", el)
	}
	for _, c := range cs {
		if code := c.waitClose(); code != protocol.CodeReconnect {
			t.Fatalf("close %d", code)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"ok", testConfig(), true},
		{"missing secret", Config{AppID: "a", Key: "k"}, false},
		{"bad key chars", Config{AppID: "a", Key: "k/x", Secret: "s"}, false},
		{"negative queue", Config{AppID: "a", Key: "k", Secret: "s", WriteQueueBytes: -1}, false},
		{"negative payload limit", Config{AppID: "a", Key: "k", Secret: "s", Limits: protocol.Limits{MaxPayloadBytes: -1}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrConfig)) {
				t.Fatalf("Validate = %v", err)
			}
		})
	}
}

func TestUserAuthTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.UserAuthEnabled = true
	cfg.UserAuthTimeout = time.Second
	s := startServer(t, cfg)
	signed := connect(t, s)
	signin(t, signed, `{"id":"1"}`)
	private := connect(t, s)
	private.subscribeOK("private-ok", "")
	idle := connect(t, s)
	if m := idle.expect(protocol.EventError, ""); m.errCode() != protocol.CodeUnauthorized {
		t.Fatalf("code %d", m.errCode())
	}
	if code := idle.waitClose(); code != protocol.CodeUnauthorized {
		t.Fatalf("close %d", code)
	}
	signed.quiet("none")
	private.quiet("none")
}

// TestNoLeakAfterClose is soketi's "does not leak memory" case: after many clients join
// public, presence and cache channels and then go away (cleanly or abruptly), the hub is
// empty again.
func TestNoLeakAfterClose(t *testing.T) {
	cfg := testConfig()
	cfg.UserAuthEnabled = true
	s := startServer(t, cfg)
	for i := 0; i < 30; i++ {
		c := connect(t, s)
		c.subscribeOK("public-leak", "")
		c.subscribeOK("presence-leak", fmt.Sprintf(`{"user_id":"%d"}`, i%7))
		c.subscribeOK("cache-leak", "")
		signin(t, c, fmt.Sprintf(`{"id":"%d","watchlist":["%d"]}`, i, i+1))
		if i%2 == 0 {
			c.send(map[string]any{"event": protocol.EventUnsubscribe, "data": map[string]any{"channel": "public-leak"}})
		}
		_ = c.conn.Close()
	}
	pushertest.Eventually(t, "hub empty", func() bool {
		st := s.Stats()
		return st.ConnectionsActive == 0 && st.Channels == 0 && st.Subscriptions == 0 && st.PresenceMembers == 0 && st.SignedInUsers == 0
	})
	if st := s.Stats(); st.ConnectionsTotal != 30 {
		t.Fatalf("stats %+v", st)
	}
	if s.active.Load() != 0 {
		t.Fatalf("admitted count %d", s.active.Load())
	}
	s.hub.mu.RLock()
	defer s.hub.mu.RUnlock()
	if len(s.hub.watching) != 0 || len(s.hub.users) != 0 {
		t.Fatalf("watching %d users %d", len(s.hub.watching), len(s.hub.users))
	}
}

// TestIdleSocketsSurviveHandshakeDeadline: the HTTP keep-alive read deadline nbio arms
// at accept must not close an upgraded socket that stays silent.
func TestIdleSocketsSurviveHandshakeDeadline(t *testing.T) {
	cfg := testConfig()
	cfg.HandshakeTimeout = 400 * time.Millisecond
	s := startServer(t, cfg)
	var cs []*tclient
	for i := 0; i < 20; i++ {
		c := connect(t, s)
		c.subscribeOK("quiet", "")
		cs = append(cs, c)
	}
	// Not a condition to poll: the point is that the deadline nbio arms on the
	// real clock passes (three times over) while the sockets stay silent.
	time.Sleep(3 * cfg.HandshakeTimeout)
	if n, err := s.Publish(context.Background(), Message{Channels: []string{"quiet"}, Event: "still-here", Data: "x"}); err != nil || n != len(cs) {
		t.Fatalf("delivered %d of %d: %v", n, len(cs), err)
	}
	for _, c := range cs {
		c.expect("still-here", "quiet")
	}
}

func watchlistEvents(t *testing.T, m msg) map[string][]string {
	t.Helper()
	var d struct {
		Events []struct {
			Name    string   `json:"name"`
			UserIDs []string `json:"user_ids"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(m.str()), &d); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, e := range d.Events {
		out[e.Name] = e.UserIDs
	}
	return out
}

func TestWatchlist(t *testing.T) {
	cfg := testConfig()
	cfg.UserAuthEnabled = true
	s := startServer(t, cfg)
	b1 := connect(t, s)
	signin(t, b1, `{"id":"b"}`)
	a := connect(t, s)
	signin(t, a, `{"id":"a","watchlist":["b","c"]}`)
	ev := watchlistEvents(t, a.expect(protocol.EventWatchlist, ""))
	if fmt.Sprint(ev["online"]) != "[b]" || fmt.Sprint(ev["offline"]) != "[c]" {
		t.Fatalf("initial status %v", ev)
	}
	c := connect(t, s)
	signin(t, c, `{"id":"c"}`)
	if ev := watchlistEvents(t, a.expect(protocol.EventWatchlist, "")); fmt.Sprint(ev["online"]) != "[c]" {
		t.Fatalf("online %v", ev)
	}
	// A second socket of b is not a change; b goes offline only with its last socket.
	b2 := connect(t, s)
	signin(t, b2, `{"id":"b"}`)
	_ = b1.conn.Close()
	pushertest.Eventually(t, "b1 gone", func() bool { return s.Stats().ConnectionsActive == 3 })
	a.quiet(protocol.EventWatchlist)
	_ = b2.conn.Close()
	if ev := watchlistEvents(t, a.expect(protocol.EventWatchlist, "")); fmt.Sprint(ev["offline"]) != "[b]" {
		t.Fatalf("offline %v", ev)
	}
	// Over 100 ids: sign-in succeeds, 4302 is sent, the first 100 are kept.
	ids := make([]string, 101)
	for i := range ids {
		ids[i] = fmt.Sprintf("%q", fmt.Sprint("w", i))
	}
	d := connect(t, s)
	signin(t, d, `{"id":"d","watchlist":[`+strings.Join(ids, ",")+`]}`)
	if m := d.expect(protocol.EventError, ""); m.errCode() != protocol.CodeWatchlistLimit {
		t.Fatalf("code %d", m.errCode())
	}
	if ev := watchlistEvents(t, d.expect(protocol.EventWatchlist, "")); len(ev["offline"]) != 100 {
		t.Fatalf("kept %d ids", len(ev["offline"]))
	}
}

func TestStartErrors(t *testing.T) {
	s := startServer(t, testConfig())
	other, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(s.Addr().String()); err == nil {
		t.Fatal("second listener on the same address started")
	}
	if err := other.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown after failed start: %v", err)
	}
	if err := s.Start("127.0.0.1:0"); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Start: %v", err)
	}
}

func TestConnectionsPerIP(t *testing.T) {
	cfg := testConfig()
	cfg.ConnectionsPerIPPerSecond = 2
	frozen := time.Now()
	s := startServer(t, cfg, withClock(func() time.Time { return frozen }))
	connect(t, s)
	connect(t, s)
	c := dialRaw(t, s, "/app/"+testKey+"?protocol=7", nil, nil)
	close(c.noRead)
	if m := c.expect(protocol.EventError, ""); m.errCode() != protocol.CodeOverCapacity {
		t.Fatalf("code %d", m.errCode())
	}
	if got := s.Stats().ConnectionsRefused[RefusedRateLimited]; got != 1 {
		t.Fatalf("RATE_LIMITED = %d", got)
	}
}

// The cache-channel map is bounded: when full, a new channel's event evicts
// the entry nearest to expiry, the one written longest ago.
func TestCacheChannelsBounded(t *testing.T) {
	cfg := testConfig()
	cfg.MaxCacheChannels = 2
	s := startServer(t, cfg)
	publish := func(ch string) {
		t.Helper()
		if _, err := s.Publish(context.Background(), Message{Channels: []string{ch}, Event: "ev", Data: ch}); err != nil {
			t.Fatal(err)
		}
	}
	publish("cache-a")
	publish("cache-b")
	publish("cache-a") // rewritten: now b expires first
	publish("cache-c")
	for ch, want := range map[string]bool{"cache-a": true, "cache-b": false, "cache-c": true} {
		if ci, _ := s.Channel(context.Background(), ch); (ci.Cache != nil) != want {
			t.Errorf("%s cached = %v, want %v", ch, ci.Cache != nil, want)
		}
	}
	if st := s.Stats(); st.CacheEntries != 2 || st.CacheEvicted != 1 {
		t.Fatalf("entries %d evicted %d, want 2 and 1", st.CacheEntries, st.CacheEvicted)
	}
	// An evicted channel answers cache_miss like an expired one.
	c := connect(t, s)
	c.subscribeOK("cache-b", "")
	c.expect(protocol.EventCacheMiss, "cache-b")
}

// TestCloseDeliversWhatWasCounted: a socket closed by Disconnect or by the
// drain first gets every event a publish counted it for, even while the
// events still wait in the outbox (a long flush interval keeps them there),
// then the pusher:error (Disconnect), then the close frame.
func TestCloseDeliversWhatWasCounted(t *testing.T) {
	const events = 5
	cfg := testConfig()
	cfg.FlushInterval = 200 * time.Millisecond
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	cs := []*tclient{connect(t, s), connect(t, s), connect(t, s)}
	for _, c := range cs {
		c.subscribeOK("feed", "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for i := range events {
		if n, err := s.Publish(ctx, Message{Channels: []string{"feed"}, Event: "tick", Data: strconv.Itoa(i)}); err != nil || n != len(cs) {
			t.Fatalf("publish %d: %d, %v", i, n, err)
		}
	}
	if err := s.Disconnect(cs[0].id, 4100, "moving you"); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for i, c := range cs {
		for n := range events {
			if m := c.next(); m.Event != "tick" || m.str() != strconv.Itoa(n) {
				t.Fatalf("client %d: frame %d is %s %s, want tick %d", i, n, m.Event, m.Data, n)
			}
		}
		want := ws.StatusCode(protocol.CodeReconnect)
		if i == 0 {
			want = 4100
			if m := c.next(); m.Event != protocol.EventError || m.errCode() != 4100 {
				t.Fatalf("client 0: %s %s after the events, want pusher:error 4100", m.Event, m.Data)
			}
		}
		if code := c.waitClose(); code != want {
			t.Fatalf("client %d: close %d, want %d", i, code, want)
		}
	}
}
