package edge

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/milequest/pushercm/lifecycle"
	"github.com/milequest/pushercm/protocol"
	"github.com/milequest/pushercm/ratelimit"
)

// conn is one client socket. Fields after the hub comment are guarded by hub.mu;
// the rest are set once or atomic. Inbound frames of one socket are handled in order on
// the event loop's executor for that socket.
type conn struct {
	s           *Server
	ws          *websocket.Conn
	sock        sockWriter // every byte written to the socket goes through it
	id          string
	remoteAddr  string // the client's address as shown (see clientip.Client.Addr)
	clientKey   string // its per-IP limit key
	userAgent   string
	connectedAt int64 // unix nanos

	lastActivity    atomic.Int64 // unix nanos of the last inbound frame
	pingSent        atomic.Int64 // unix nanos of an unanswered server ping, 0 if none
	queued          atomic.Int64 // bytes queued for the socket and not yet in the kernel
	msgsIn          atomic.Uint64
	msgsOut         atomic.Uint64
	closing         atomic.Bool
	closeSent       atomic.Bool
	usesWSPing      atomic.Bool
	authorized      atomic.Bool // signed in or joined a private/presence channel
	deadlineCleared atomic.Bool
	closeCode       atomic.Int32
	events          ratelimit.Bucket // Limits.ClientEventsPerSecond, one second of burst; set up in acceptWS

	// outbound frames not yet handed to the event loop, guarded by pmu
	fl            *flusher
	pmu           sync.Mutex
	pending       [][]byte
	spare         [][]byte // an emptied pending list, for the next round (see recycle)
	lastTaken     int      // frames the flusher took last time, to size a new list
	pendingSince  int64    // unix nanos of the oldest pending frame (only with a WriteObserver)
	scheduled     bool
	pendingClosed bool // the close frame is queued; nothing may follow it

	// hub state, guarded by hub.mu
	subs      map[string]string // channel -> presence user id ("" for other kinds)
	userID    string            // signed-in user
	userInfo  json.RawMessage
	watchlist []string // user ids this socket watches
	removed   bool

	// subscribeOnly holds the channels of subs whose auth token did not grant
	// client events (protocol.SubscribeOnlyTag); guarded by hub.mu.
	subscribeOnly map[string]struct{}
	// counted are the channels whose subscription holds a unit of the
	// user's cluster-wide subscription count (edge.subscriptionsPerUser in
	// a cluster); nil otherwise. Guarded by hub.mu.
	counted map[string]struct{}
}

func (c *conn) touch() {
	c.lastActivity.Store(c.s.opts.now().UnixNano())
	c.pingSent.Store(0)
}

// sendRaw hands a complete WebSocket frame to the event loop without blocking. It
// reports false when the socket is closing or the frame would overflow the outbound
// queue; overflow closes the socket as a slow consumer.
func (c *conn) sendRaw(frame []byte) bool {
	if !c.queueFrame(frame) {
		return false
	}
	c.s.st.messagesOut.Add(1)
	return true
}

// queueFrame is sendRaw without the server-wide message count, for fan-outs
// that add it once (the count is shared by every publishing goroutine, and
// one atomic add per subscriber made the cores fight over it).
func (c *conn) queueFrame(frame []byte) bool {
	_, ok := c.queueFrames([][]byte{frame}, int64(len(frame)), 0, nil)
	return ok
}

func (c *conn) sendError(code int, msg, channel string) {
	c.sendRaw(wsFrame(opText, protocol.EncodeError(code, msg, channel)))
}

func (c *conn) sendSubError(channel, typ, msg string, status int) {
	c.sendRaw(wsFrame(opText, protocol.EncodeSubscriptionError(channel, typ, msg, status)))
}

// closeWith closes the socket with code. Everything already queued for it goes out
// first, including every publish that counted it and still waits in the outbox
// (hub.lock fans those out), then the close frame, which bypasses the queue limit (it
// is the last frame). The socket leaves the hub in the same critical section, so no
// later publish counts it, and presence and counts do not wait for the client. The
// TCP connection is cut after CloseGrace unless the client answers first.
//
// async is for callers that may hold hub.mu (a slow consumer found during a
// fan-out): the socket is marked closing at once, so nothing more is queued (what
// overflowed its queue cannot be delivered anyway), and leaves the hub on a new
// goroutine.
func (c *conn) closeWith(code int, reason string, async bool) {
	c.close(code, reason, false, async)
}

// closeWithError is closeWith with a pusher:error of the same code and reason
// sent after everything queued and just before the close frame.
func (c *conn) closeWithError(code int, reason string) {
	c.close(code, reason, true, false)
}

func (c *conn) close(code int, reason string, notify, async bool) {
	s := c.s
	if async {
		if !c.closing.CompareAndSwap(false, true) {
			return
		}
		c.queueClose(code, reason, notify)
		go s.removeConn(c, code, reason)
		return
	}
	if c.closing.Load() {
		return
	}
	var p pending
	closed, removed := s.hub.removeClosing(c, &p)
	if !closed {
		return
	}
	c.queueClose(code, reason, notify)
	if removed {
		s.afterRemove(c, code, reason, &p)
	}
}

// queueClose queues the last frames of a closing socket: the pusher:error when
// notify is set, then the close frame (unless the client closed first), and arms
// the cut after CloseGrace, counted from when the flusher writes them at the
// latest (FlushInterval).
func (c *conn) queueClose(code int, reason string, notify bool) {
	c.closeCode.Store(int32(code))
	if !c.closeSent.Swap(true) {
		if notify {
			e := wsFrame(opText, protocol.EncodeError(code, reason, ""))
			c.queued.Add(int64(len(e)))
			c.push(e, false)
			c.s.st.messagesOut.Add(1)
		}
		f := closeFrame(code, reason)
		c.queued.Add(int64(len(f)))
		c.enqueueFinal(f)
	}
	if ws := c.ws; ws != nil {
		time.AfterFunc(c.s.cfg.CloseGrace+c.s.cfg.FlushInterval, func() { _ = ws.Close() })
	}
}

var (
	pongFrame = eventFrame(protocol.EventPong, "", "{}", "")
)

func (s *Server) onMessage(ws *websocket.Conn, mt websocket.MessageType, data []byte) {
	c, ok := ws.Session().(*conn)
	if !ok {
		return
	}
	if mt == websocket.BinaryMessage {
		c.closeWith(closeUnsupportedData, "Binary messages are not supported", false)
		return
	}
	s.handleFrame(c, data)
}

// handleFrame handles one inbound message of c (the data is only valid during the call).
func (s *Server) handleFrame(c *conn, data []byte) {
	if c.closing.Load() {
		return
	}
	c.touch()
	c.msgsIn.Add(1)
	s.st.messagesIn.Add(1)
	if len(data) > s.cfg.MaxFrameBytes {
		c.sendError(0, "Message too large", "")
		return
	}
	m, err := protocol.DecodeMessage(data)
	if err != nil {
		c.sendError(0, "Invalid message format", "")
		return
	}
	switch m.Event {
	case protocol.EventPing:
		c.sendRaw(pongFrame)
	case protocol.EventPong:
	case protocol.EventSubscribe:
		s.handleSubscribe(c, m)
	case protocol.EventUnsubscribe:
		var d struct {
			Channel string `json:"channel"`
		}
		if m.DecodeData(&d) == nil && d.Channel != "" {
			s.unsubscribe(c, d.Channel)
		}
	case protocol.EventSignin:
		s.handleSignin(c, m)
	default:
		if strings.HasPrefix(m.Event, protocol.ClientEventPrefix) {
			s.handleClientEvent(c, m)
		}
		// Other pusher: events are ignored, as pusher-js may send ones we do not use.
	}
}

func (s *Server) handleSubscribe(c *conn, m protocol.Message) {
	var d protocol.SubscribeData
	if err := m.DecodeData(&d); err != nil || d.Channel == "" {
		c.sendError(0, "Invalid subscribe data: a channel is required", "")
		return
	}
	ch, err := protocol.ParseChannel(d.Channel, s.cfg.Limits.MaxChannelNameLength)
	if err != nil {
		status := protocol.CodeUnauthorized
		typ := protocol.SubErrInvalid
		if errors.Is(err, protocol.ErrChannelNameTooLong) {
			typ = protocol.SubErrLimitReached
		}
		c.sendSubError(d.Channel, typ, err.Error(), status)
		return
	}
	var member *protocol.Member
	// clientEvents is what the auth token grants (protocol.VerifyChannelGrant):
	// a subscribe-only token lets the socket listen but not send client
	// events. The grant travels in the signed token, so any node can check it.
	clientEvents := true
	var verr error
	switch ch.Kind {
	case protocol.KindPrivate, protocol.KindPrivateEncrypted:
		if clientEvents, verr = protocol.VerifyChannelGrant(s.cfg.Key, s.cfg.Secret, c.id, ch.Name, "", d.Auth); verr != nil {
			c.sendSubError(ch.Name, protocol.SubErrAuth, "Invalid signature: "+verr.Error(), 401)
			return
		}
	case protocol.KindPresence:
		cd := string(d.ChannelData)
		if cd == "" {
			// A signed-in connection may join presence without channel_data (§3.2).
			uid, info := s.hub.user(c)
			if uid == "" {
				c.sendSubError(ch.Name, protocol.SubErrAuth, "channel_data is required for presence channels", 401)
				return
			}
			if clientEvents, verr = protocol.VerifyChannelGrant(s.cfg.Key, s.cfg.Secret, c.id, ch.Name, "", d.Auth); verr != nil {
				c.sendSubError(ch.Name, protocol.SubErrAuth, "Invalid signature: "+verr.Error(), 401)
				return
			}
			member = &protocol.Member{UserID: uid, UserInfo: info}
			break
		}
		if clientEvents, verr = protocol.VerifyChannelGrant(s.cfg.Key, s.cfg.Secret, c.id, ch.Name, cd, d.Auth); verr != nil {
			c.sendSubError(ch.Name, protocol.SubErrAuth, "Invalid signature: "+verr.Error(), 401)
			return
		}
		pd, err := protocol.ParsePresenceData(cd)
		if err != nil {
			c.sendSubError(ch.Name, protocol.SubErrAuth, err.Error(), 401)
			return
		}
		if len(pd.UserID) > s.cfg.Limits.MaxUserIDLength {
			c.sendSubError(ch.Name, protocol.SubErrLimitReached, "user_id is too long", protocol.CodeClientEventRejected)
			return
		}
		if len(pd.UserInfo) > s.cfg.Limits.MaxMemberInfoBytes {
			c.sendSubError(ch.Name, protocol.SubErrLimitReached, "user_info is too large", protocol.CodeClientEventRejected)
			return
		}
		member = &protocol.Member{UserID: pd.UserID, UserInfo: pd.UserInfo}
	case protocol.KindServerToUser:
		uid, _ := s.hub.user(c)
		if uid == "" || uid != ch.UserID {
			c.sendSubError(ch.Name, protocol.SubErrAuth, "Sign in as this user to subscribe to its channel", 401)
			return
		}
	}
	if err := s.subscribe(c, ch, member, clientEvents); err != nil {
		var se *subError
		if errors.As(err, &se) {
			c.sendSubError(ch.Name, se.typ, se.msg, se.status)
		}
		return
	}
	if ch.Kind.NeedsAuth() {
		c.authorized.Store(true)
	}
}

func (s *Server) handleSignin(c *conn, m protocol.Message) {
	if !s.cfg.UserAuthEnabled {
		c.sendError(protocol.CodeUnauthorized, "User authentication is not enabled for this app", "")
		return
	}
	var d protocol.SigninData
	if err := m.DecodeData(&d); err != nil {
		c.sendError(protocol.CodeUnauthorized, "Invalid signin data", "")
		return
	}
	ud := string(d.UserData)
	if err := protocol.VerifyUserAuth(s.cfg.Key, s.cfg.Secret, c.id, ud, d.Auth); err != nil {
		c.sendError(protocol.CodeUnauthorized, "Connection not authorized: invalid signature", "")
		return
	}
	u, err := protocol.ParseUserData(ud)
	if err != nil {
		c.sendError(protocol.CodeUnauthorized, `The returned user data must contain the "id" field`, "")
		return
	}
	if len(u.UserID) > s.cfg.Limits.MaxUserIDLength {
		c.sendError(protocol.CodeUnauthorized, "User id is too long", "")
		return
	}
	// In a cluster the socket is counted in its user's channel, and the node
	// listens to it, before signin_success: a SendToUser after it reaches it.
	counted, online := false, false
	if s.opts.cluster != nil {
		if s.hub.signedOut(c) {
			counted = true
			online = s.signinCluster(u.UserID)
		}
	}
	wl, wlErr := protocol.ParseWatchlist(ud)
	data := append([]byte(`{"user_data":`), protocol.AppendJSONString(nil, ud)...)
	data = append(data, '}')
	watch, ok, conflict := s.hub.signin(c, u.UserID, u.UserInfo, eventFrame(protocol.EventSigninSuccess, "", string(data), ""), wl, wlErr == nil, counted)
	if !ok {
		if counted {
			// Closed, or signed in twice at once: undo this count.
			name := protocol.ServerToUserChannel(u.UserID)
			s.clusterLeaves([]clusterOp{{channel: name, uid: u.UserID, socketID: c.id, user: true}})
		}
		if conflict {
			c.sendError(protocol.CodeUnauthorized, "Connection is already signed in as a different user", "")
		}
		return
	}
	c.authorized.Store(true)
	if s.opts.cluster != nil && (online || len(watch) > 0) {
		ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
		defer cancel()
		if online {
			s.publishControl(ctx, opOnline, u.UserID)
		}
		if len(watch) > 0 {
			s.sendWatchlist(ctx, c, watch)
		}
	}
}

func (s *Server) handleClientEvent(c *conn, m protocol.Message) {
	name := m.Channel
	reject := func(msg string) { c.sendError(protocol.CodeClientEventRejected, msg, name) }
	if !s.cfg.ClientEventsEnabled {
		reject("To send client events, you must enable this feature in the Settings page of your dashboard.")
		return
	}
	if name == "" {
		reject("Client events need a channel")
		return
	}
	if len(m.Event) > s.cfg.Limits.MaxEventNameLength {
		reject("Event name is too long")
		return
	}
	kind, _ := protocol.KindOf(name)
	if kind != protocol.KindPrivate && kind != protocol.KindPresence {
		reject("Client events are only supported on private and presence channels")
		return
	}
	data := m.DataString()
	if len(data) > s.cfg.Limits.MaxPayloadBytes {
		reject("Client event payload is too large")
		return
	}
	uid, subscribed, subscribeOnly := s.hub.subscription(c, name)
	if !subscribed {
		reject("Cannot broadcast client event (connection not subscribed to channel " + name + ")")
		return
	}
	if subscribeOnly {
		reject("Client events are not permitted on channel " + name + " (the subscription grants subscribe only)")
		return
	}
	if !s.allowClientEvent(c, uid) {
		s.st.clientEventsLimited.Add(1)
		reject("Client event rejected due to rate limit")
		return
	}
	if cl := s.opts.cluster; cl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
		_, err := cl.Publish(ctx, name, envelope(opEvent, c.id, protocol.EncodeEvent(m.Event, name, data, uid)), 0)
		cancel()
		if err != nil {
			s.clusterMissed("client event", name, err)
			reject("Client event could not be delivered: the cluster is unavailable")
			return
		}
	} else {
		frame := eventFrame(m.Event, name, data, uid)
		s.hub.sendOthers(name, frame, c)
	}
	s.st.clientEvents.Add(1)
	if s.watchingMessages() {
		s.emit(lifecycle.Event{Type: lifecycle.ClientEvent, Time: s.opts.now(), Channel: name, Name: m.Event, SocketID: c.id, UserID: uid})
	}
	if w := s.opts.webhooks; w != nil {
		h := protocol.WebhookEvent{Name: protocol.WebhookClientEvent, Channel: name, Event: m.Event, Data: data, SocketID: c.id, UserID: uid}
		w.Notify(h)
		s.emitWebhook(h)
	}
}

// allowClientEvent asks the clientEventLimiter hook (tests), or else the
// connection's own bucket (Limits.ClientEventsPerSecond).
func (s *Server) allowClientEvent(c *conn, uid string) bool {
	if l := s.opts.clientEvents; l != nil {
		return l.AllowClientEvent(c.id, uid)
	}
	return c.events.Allow(s.opts.now())
}
