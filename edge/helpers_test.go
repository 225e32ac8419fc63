package edge

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"go.uber.org/goleak"

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
	waitFor    = 10 * time.Second
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

type tclient struct {
	t       *testing.T
	conn    net.Conn
	wmu     sync.Mutex
	msgs    chan msg
	done    chan struct{}
	code    ws.StatusCode
	id      string
	noRead  chan struct{} // closed to let the reader start (slow consumer tests)
	answerP bool          // answer pusher:ping automatically
}

type lockedRW struct {
	io.Reader
	c *tclient
}

func (l lockedRW) Write(p []byte) (int, error) {
	l.c.wmu.Lock()
	defer l.c.wmu.Unlock()
	return l.c.conn.Write(p)
}

func dialRaw(t *testing.T, s *Server, path string, hdr map[string]string, netDial func(ctx context.Context, n, a string) (net.Conn, error)) *tclient {
	t.Helper()
	d := ws.Dialer{Timeout: waitFor, NetDial: netDial}
	if len(hdr) > 0 {
		h := make(ws.HandshakeHeaderHTTP)
		for k, v := range hdr {
			h[k] = []string{v}
		}
		d.Header = h
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	conn, br, _, err := d.Dial(ctx, "ws://"+s.Addr().String()+path)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	c := &tclient{t: t, conn: conn, msgs: make(chan msg, 4096), done: make(chan struct{}), noRead: make(chan struct{})}
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	rw := lockedRW{Reader: r, c: c}
	go func() {
		defer close(c.done)
		<-c.noRead
		for {
			data, _, err := wsutil.ReadServerData(rw)
			if err != nil {
				var ce wsutil.ClosedError
				if errors.As(err, &ce) {
					c.code = ce.Code
				}
				close(c.msgs)
				return
			}
			var m msg
			if err := json.Unmarshal(data, &m); err != nil {
				t.Errorf("server sent non-JSON frame %q", data)
				continue
			}
			m.hasData = strings.Contains(string(data), `"data":`)
			if c.answerP && m.Event == protocol.EventPing {
				// Best effort: the test may be closing the socket meanwhile.
				c.wmu.Lock()
				_ = wsutil.WriteClientText(c.conn, []byte(`{"event":"pusher:pong","data":{}}`))
				c.wmu.Unlock()
			}
			c.msgs <- m
		}
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-c.done
	})
	return c
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

func (c *tclient) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := wsutil.WriteClientText(c.conn, b); err != nil && !errors.Is(err, net.ErrClosed) {
		// A closed conn is the test's own cleanup racing an automatic pong.
		c.t.Errorf("write: %v", err)
	}
}

func (c *tclient) next() msg {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatalf("socket closed (code %d) while waiting for a frame", c.code)
		}
		return m
	case <-time.After(waitFor):
		c.t.Fatal("timed out waiting for a frame")
	}
	return msg{}
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

func (c *tclient) waitClose() ws.StatusCode {
	c.t.Helper()
	for {
		select {
		case _, ok := <-c.msgs:
			if !ok {
				return c.code
			}
		case <-time.After(waitFor):
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

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// withClock replaces the server clock (rate-limit buckets, activity, cache expiry).
func withClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}
