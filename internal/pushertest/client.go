package pushertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/milequest/pushercm/protocol"
)

// Wait bounds every expectation; generous because the test machines are loaded.
const Wait = 20 * time.Second

// Client is one Pusher protocol connection.
type Client struct {
	t        testing.TB
	conn     net.Conn
	key      string
	secret   string
	SocketID string
	// SkipOther makes Expect skip every frame until the expected one, instead of
	// failing on an unexpected application event (for tests that do not assert
	// on the order of unrelated traffic).
	SkipOther bool
	keepPings bool
	frames    chan Frame
	closed    chan wsutil.ClosedError // the server's close frame, if any
	closing   chan struct{}           // closed by Close, so a held reader can end
	closeOnce sync.Once
	done      chan struct{}
	wmu       sync.Mutex
	discard   atomic.Bool
	dropped   atomic.Int64
	noPong    atomic.Bool
}

// Frame is one frame from the server: the protocol message and the user_id
// the server adds to client events on presence channels.
type Frame struct {
	protocol.Message
	UserID string
}

// Options adjust Open, for tests of the handshake and of odd or slow clients.
// The zero value is what Dial uses.
type Options struct {
	// Path is the request path and query. Default
	// "/app/{key}?protocol=7&client=pushertest&version=1".
	Path string
	// Header is sent with the upgrade request (Origin, X-Forwarded-For...).
	Header http.Header
	// NetDial replaces the TCP dial (for a small receive buffer, a proxy...).
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Hold, when not nil, keeps the reader from reading until it is closed:
	// the server sees a client that does not read (slow-consumer tests).
	Hold <-chan struct{}
	// KeepPings hands pusher:ping frames to the test as well as answering them.
	KeepPings bool
	// NoPong leaves pusher:ping unanswered (see AnswerPings).
	NoPong bool
}

// Dial connects to the edge at addr as app key, with secret used to sign
// subscriptions and sign-ins, and waits for connection_established.
func Dial(t testing.TB, addr, key, secret string) *Client {
	t.Helper()
	c := Open(t, addr, key, secret, Options{})
	m := c.Next()
	if m.Event != protocol.EventConnectionEstablished {
		t.Fatalf("first frame %q, want connection_established", m.Event)
	}
	var d struct {
		SocketID string `json:"socket_id"`
	}
	if err := m.DecodeData(&d); err != nil || !protocol.ValidSocketID(d.SocketID) {
		t.Fatalf("connection_established %s: %v", m.Data, err)
	}
	c.SocketID = d.SocketID
	return c
}

// Open upgrades a WebSocket to the edge at addr as o says and starts the
// reader, without waiting for any frame: the first one is the test's to read
// (connection_established, or the pusher:error of a refused socket).
func Open(t testing.TB, addr, key, secret string, o Options) *Client {
	t.Helper()
	path := o.Path
	if path == "" {
		path = "/app/" + key + "?protocol=7&client=pushertest&version=1"
	}
	d := ws.Dialer{Timeout: Wait, NetDial: o.NetDial}
	if len(o.Header) > 0 {
		d.Header = ws.HandshakeHeaderHTTP(o.Header)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	conn, br, _, err := d.Dial(ctx, "ws://"+addr+path)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	c := &Client{t: t, conn: conn, key: key, secret: secret, keepPings: o.KeepPings, frames: make(chan Frame, 1<<14),
		closed: make(chan wsutil.ClosedError, 1), closing: make(chan struct{}), done: make(chan struct{})}
	c.noPong.Store(o.NoPong)
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	go c.read(o.Hold, struct {
		io.Reader
		io.Writer
	}{r, writerFunc(c.write)})
	t.Cleanup(c.Close)
	return c
}

// AnswerPings turns the automatic pusher:pong on or off (Options.NoPong).
func (c *Client) AnswerPings(on bool) { c.noPong.Store(!on) }

// Discard makes the client count application frames instead of queueing them
// (benchmarks: the reader keeps up, so the edge never sees a slow consumer).
func (c *Client) Discard() { c.discard.Store(true) }

// Discarded is the number of frames dropped since Discard.
func (c *Client) Discarded() int64 { return c.dropped.Load() }

// Conn is the underlying connection, for tests that write raw frames or set deadlines.
func (c *Client) Conn() net.Conn { return c.conn }

// Frames is the queue of received frames (pings excluded), closed when the
// connection ends; for tests that wait on several outcomes at once.
func (c *Client) Frames() <-chan Frame { return c.frames }

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// write serializes the reader's control replies with Send.
func (c *Client) write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.conn.Write(p)
}

func (c *Client) read(hold <-chan struct{}, rw io.ReadWriter) {
	defer close(c.done)
	defer close(c.frames)
	if hold != nil {
		select {
		case <-hold:
		case <-c.closing:
			return
		}
	}
	for {
		data, _, err := wsutil.ReadServerData(rw)
		if err != nil {
			var ce wsutil.ClosedError
			if errors.As(err, &ce) {
				c.closed <- ce
			}
			return
		}
		if c.discard.Load() {
			c.dropped.Add(1)
			continue
		}
		m, err := protocol.DecodeMessage(data)
		if err != nil {
			c.t.Errorf("server sent a bad frame %q: %v", data, err)
			continue
		}
		var f struct {
			UserID string `json:"user_id"`
		}
		_ = json.Unmarshal(data, &f)
		if m.Event == protocol.EventPing {
			if !c.noPong.Load() {
				c.Send(protocol.EventPong, "", map[string]any{})
			}
			if !c.keepPings {
				continue
			}
		}
		c.frames <- Frame{Message: m, UserID: f.UserID}
	}
}

// Close closes the connection and waits for the reader.
func (c *Client) Close() {
	c.closeOnce.Do(func() { close(c.closing) })
	_ = c.conn.Close()
	<-c.done
}

// Send writes one frame; channel is left out when empty. Writes to a closed
// connection are ignored (tests close sockets while the reader still pongs).
func (c *Client) Send(event, channel string, data any) {
	m := map[string]any{"event": event, "data": data}
	if channel != "" {
		m["channel"] = channel
	}
	c.SendJSON(m)
}

// SendJSON writes v as one text frame, whatever its shape (tests of malformed
// frames).
func (c *Client) SendJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Error(err)
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := wsutil.WriteClientText(c.conn, b); err != nil && !errors.Is(err, net.ErrClosed) {
		c.t.Errorf("write: %v", err)
	}
}

// WriteRaw runs write on the connection, serialized with Send and the
// automatic pongs: for tests that write frames by hand (masked or not,
// binary, control frames).
func (c *Client) WriteRaw(write func(conn net.Conn) error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return write(c.conn)
}

// Next returns the next frame, failing the test after Wait.
func (c *Client) Next() Frame {
	c.t.Helper()
	select {
	case m, ok := <-c.frames:
		if !ok {
			c.t.Fatal("connection closed while waiting for a frame")
		}
		return m
	case <-time.After(Wait):
		c.t.Fatal("no frame within the wait")
	}
	return Frame{}
}

// Expect returns the next frame for (event, channel), skipping protocol-internal
// frames (pusher: and pusher_internal: events other than the one expected). Any
// other application event before it fails the test, unless SkipOther is set:
// this is how tests prove that nothing was delivered twice or out of order.
func (c *Client) Expect(event, channel string) Frame {
	c.t.Helper()
	deadline := time.After(Wait)
	for {
		select {
		case m, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("connection closed while waiting for %s on %q", event, channel)
			}
			if m.Event == event && m.Channel == channel {
				return m
			}
			if !c.SkipOther && !IsInternal(m.Event) {
				c.t.Fatalf("got %s on %q (data %s), want %s on %q", m.Event, m.Channel, m.DataString(), event, channel)
			}
		case <-deadline:
			c.t.Fatalf("no %s on %q within the wait", event, channel)
		}
	}
}

// IsInternal reports whether event is a protocol event rather than an application one.
func IsInternal(event string) bool {
	return strings.HasPrefix(event, "pusher:") || strings.HasPrefix(event, "pusher_internal:")
}

// Subscribe joins a public, private or presence channel (signing with the app
// secret) and waits for subscription_succeeded. For presence channels userID is
// the member.
func (c *Client) Subscribe(channel, userID string) {
	c.t.Helper()
	c.SubscribeAsync(channel, userID)
	c.Expect(protocol.EventSubscriptionSucceeded, channel)
}

// SubscribeAsync sends the subscription without waiting for the answer.
func (c *Client) SubscribeAsync(channel, userID string) {
	data := map[string]any{"channel": channel}
	switch {
	case strings.HasPrefix(channel, "private-"):
		data["auth"] = protocol.ChannelAuth(c.key, c.secret, c.SocketID, channel, "")
	case strings.HasPrefix(channel, "presence-"):
		cd := fmt.Sprintf(`{"user_id":%q,"user_info":{"name":%q}}`, userID, userID)
		data["auth"] = protocol.ChannelAuth(c.key, c.secret, c.SocketID, channel, cd)
		data["channel_data"] = cd
	}
	c.Send(protocol.EventSubscribe, "", data)
}

// SignIn authenticates the connection as userID (the edge must allow user auth)
// and waits for signin_success.
func (c *Client) SignIn(userID string) {
	c.t.Helper()
	ud := fmt.Sprintf(`{"id":%q}`, userID)
	c.Send(protocol.EventSignin, "", map[string]any{
		"auth":      protocol.UserAuth(c.key, c.secret, c.SocketID, ud),
		"user_data": ud,
	})
	c.Expect(protocol.EventSigninSuccess, "")
}

// CloseFrame is the server's close frame once the connection has ended
// (Frames closed), and false when it ended without one (a bare EOF or reset).
func (c *Client) CloseFrame() (wsutil.ClosedError, bool) {
	<-c.done
	select {
	case ce := <-c.closed:
		return ce, true
	default:
		return wsutil.ClosedError{}, false
	}
}

// CloseCode waits for the server's close frame.
func (c *Client) CloseCode() wsutil.ClosedError {
	c.t.Helper()
	select {
	case ce := <-c.closed:
		return ce
	case <-time.After(Wait):
		c.t.Fatal("the server did not close the connection")
	}
	return wsutil.ClosedError{}
}
