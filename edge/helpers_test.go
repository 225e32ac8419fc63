package edge

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"go.uber.org/goleak"

	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/protocol"
)

func TestMain(m *testing.M) {
	// nbio starts a package-level default engine (and its task pool) at init; only
	// goroutines started by the tests are checked.
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

const (
	testKey    = "app-key"
	testSecret = "app-secret"
	waitFor    = pushertest.Wait
)

func testConfig() Config {
	return Config{AppID: "app-id", Key: testKey, Secret: testSecret, CloseGrace: 300 * time.Millisecond}
}

func startServer(t *testing.T, cfg Config, opts ...Option) *Server {
	t.Helper()
	s, err := New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

type msg struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	UserID  string          `json:"user_id"`
	hasData bool
}

// str returns data as the string clients see (decoding a JSON string once).
func (m msg) str() string {
	var s string
	if json.Unmarshal(m.Data, &s) == nil {
		return s
	}
	return string(m.Data)
}

func (m msg) errCode() int {
	var d struct {
		Code   *int `json:"code"`
		Status int  `json:"status"`
	}
	_ = json.Unmarshal([]byte(m.str()), &d)
	if d.Code != nil {
		return *d.Code
	}
	return d.Status
}

// tclient is the edge tests' view of a pushertest.Client: frames as msg, and
// expect that skips (rather than refuses) other frames. Pings are handed to
// the test and left unanswered unless it calls AnswerPings.
type tclient struct {
	*pushertest.Client
	t      *testing.T
	conn   net.Conn
	id     string
	noRead chan struct{} // closed to let the reader start (slow consumer tests)
}

func dialRaw(t *testing.T, s *Server, path string, hdr map[string]string, netDial func(ctx context.Context, n, a string) (net.Conn, error)) *tclient {
	t.Helper()
	h := make(http.Header)
	for k, v := range hdr {
		h.Set(k, v)
	}
	noRead := make(chan struct{})
	pc := pushertest.Open(t, s.Addr().String(), testKey, testSecret, pushertest.Options{
		Path: path, Header: h, NetDial: netDial, Hold: noRead, KeepPings: true, NoPong: true,
	})
	return &tclient{Client: pc, t: t, conn: pc.Conn(), noRead: noRead}
}

// connect dials and reads connection_established.
func connect(t *testing.T, s *Server) *tclient {
	t.Helper()
	c := dialRaw(t, s, "/app/"+testKey+"?protocol=7&client=go&version=1", nil, nil)
	close(c.noRead)
	m := c.next()
	if m.Event != protocol.EventConnectionEstablished {
		t.Fatalf("first frame %s, want connection_established", m.Event)
	}
	var d struct {
		SocketID        string `json:"socket_id"`
		ActivityTimeout int    `json:"activity_timeout"`
	}
	if err := json.Unmarshal([]byte(m.str()), &d); err != nil {
		t.Fatal(err)
	}
	if !protocol.ValidSocketID(d.SocketID) || d.ActivityTimeout < 1 {
		t.Fatalf("bad handshake %+v", d)
	}
	c.id = d.SocketID
	return c
}

func (c *tclient) send(v any) { c.SendJSON(v) }

func (c *tclient) next() msg {
	c.t.Helper()
	f := c.Next()
	return msg{Event: f.Event, Channel: f.Channel, Data: f.Data, UserID: f.UserID, hasData: f.Data != nil}
}

// expect skips frames until one with event (and channel, when not empty) arrives.
func (c *tclient) expect(event, channel string) msg {
	c.t.Helper()
	for {
		m := c.next()
		if m.Event == event && (channel == "" || m.Channel == channel) {
			return m
		}
	}
}

// quiet asserts no frame with event arrives before a ping round trip completes.
func (c *tclient) quiet(event string) {
	c.t.Helper()
	c.send(map[string]any{"event": protocol.EventPing, "data": map[string]any{}})
	for {
		m := c.next()
		if m.Event == event {
			c.t.Fatalf("unexpected %s: %s", event, m.Data)
		}
		if m.Event == protocol.EventPong {
			return
		}
	}
}

// waitClose reads until the server ends the connection and returns its close
// code (0 when it sent no close frame).
func (c *tclient) waitClose() ws.StatusCode {
	c.t.Helper()
	deadline := time.After(pushertest.Wait)
	for {
		select {
		case _, ok := <-c.Frames():
			if !ok {
				ce, _ := c.CloseFrame()
				return ce.Code
			}
		case <-deadline:
			c.t.Fatal("timed out waiting for close")
		}
	}
}

func (c *tclient) subscribe(channel, auth, channelData string) {
	d := map[string]any{"channel": channel, "auth": auth}
	if channelData != "" {
		d["channel_data"] = channelData
	}
	c.send(map[string]any{"event": protocol.EventSubscribe, "data": d})
}

func (c *tclient) subscribeOK(channel, channelData string) msg {
	c.t.Helper()
	auth := ""
	kind, _ := protocol.KindOf(channel)
	if kind.NeedsAuth() {
		auth = protocol.ChannelAuth(testKey, testSecret, c.id, channel, channelData)
	}
	c.subscribe(channel, auth, channelData)
	return c.expect(protocol.EventSubscriptionSucceeded, channel)
}

// withClock replaces the server clock (rate-limit buckets, activity, cache expiry).
func withClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}
