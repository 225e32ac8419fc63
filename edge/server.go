package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/milequest/pushercm/edge/clientip"
	"github.com/milequest/pushercm/edge/httpapi"
	"github.com/milequest/pushercm/lifecycle"
	"github.com/milequest/pushercm/protocol"
)

// Server is the embedded Pusher-protocol server (WebSocket + HTTP API) for one app.
type Server struct {
	cfg  Config
	opts options

	mux *http.ServeMux
	// bodyLimits holds each route's request body limit, by mux pattern.
	bodyLimits map[string]int64
	// routes and limits cache what the mux answers (see routeCache);
	// hostRoutes is set when a pattern names a host, which turns the
	// handler cache off.
	routes     routeCache[cachedRoute]
	limits     routeCache[int64]
	hostRoutes bool
	upgrader   *websocket.Upgrader
	engine     *nbhttp.Engine
	ln         net.Listener
	started    atomic.Bool
	draining   atomic.Bool
	stop       chan struct{}
	done       sync.WaitGroup

	flushStop chan struct{}
	flushDone sync.WaitGroup

	// hub is the sockets, channels, users, watchlists and cache, under its own lock.
	hub hub

	active  atomic.Int64 // sockets admitted (reserved before upgrade)
	open    atomic.Int64 // accepted sockets whose TCP connection is not closed yet
	clients *clientip.Resolver
	ipMu    sync.Mutex
	ipConns map[string]int // open sockets by client address key, when limited
	// warnedForward is set once the log has said that forwarding headers
	// from an untrusted peer were ignored.
	warnedForward atomic.Bool

	flushers []*flusher
	nextFl   atomic.Uint64

	writeObs WriteObserver // opts.metrics, when it implements WriteObserver
	ipLimit  *ipLimiter    // built-in per-IP limiter, nil when off or replaced

	// events hands lifecycle and message events to watchers.
	events lifecycle.Hub

	// A node of a cluster (opts.cluster): the channels it listens to, the
	// leaves being reported, and whether a cluster call failed (Dirty).
	lis     listeners
	clOps   sync.WaitGroup
	leaving leaving // channels with leaves being reported, so joins wait for them
	clDirty atomic.Bool
	clFails atomic.Uint64
	// rholds are the channels whose publishes wait because the cluster
	// said they are congested (see Congestion).
	rholds remoteHolds

	st counters
}

func init() {
	// nbio logs every accepted socket at Info; our own Logger reports what matters.
	logging.SetLevel(logging.LevelError)
}

// New validates cfg and builds a Server. Nothing listens until Start.
func New(cfg Config, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg.withDefaults(),
		mux:        http.NewServeMux(),
		bodyLimits: make(map[string]int64),
		stop:       make(chan struct{}),
	}
	s.lis.m = make(map[string]*listener)
	s.rholds.m = make(map[string]*remoteHold)
	s.clients, _ = clientip.New(s.cfg.TrustedProxies) // checked by Validate
	s.ipConns = make(map[string]int)
	s.opts.now = time.Now
	for _, o := range opts {
		o(&s.opts)
	}
	if s.opts.connections == nil && s.cfg.ConnectionsPerIPPerSecond > 0 {
		s.ipLimit = newIPLimiter(s.cfg.ConnectionsPerIPPerSecond, s.opts.now)
		s.opts.connections = s.ipLimit
	}
	if wo, ok := s.opts.metrics.(WriteObserver); ok {
		s.writeObs = wo
	}
	s.hub.init(s.cfg, s.opts.cluster != nil, s.writeObs != nil, s.opts.now)
	s.st.refused = make(map[string]*atomic.Uint64)
	for _, r := range refusalReasons {
		s.st.refused[r] = new(atomic.Uint64)
	}
	// An upgrade has no body.
	s.HandleLimit(wsPattern, http.HandlerFunc(s.serveWS), 0)
	if !s.cfg.HTTPAPIDisabled {
		api := httpapi.New(httpapi.Config{
			AppID:           s.cfg.AppID,
			Key:             s.cfg.Key,
			Secret:          s.cfg.Secret,
			Limits:          s.cfg.Limits,
			MaxRequestBytes: s.cfg.MaxAPIBodyBytes,
			TimestampWindow: s.cfg.TimestampWindow,
			Limiter:         s.opts.httpLimiter,
			Logger:          s.cfg.Logger,
		}, apiBackend{s})
		s.HandleLimit("/apps/", api, s.cfg.MaxAPIBodyBytes)
	}
	return s, nil
}

// DefaultRouteBodyBytes is the request body limit of routes added with Handle,
// and of requests no route serves.
const DefaultRouteBodyBytes = 16 << 10

// Handle registers an extra route on the realtime listener, with a request body
// limit of DefaultRouteBodyBytes. Call it before Start.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.HandleLimit(pattern, h, DefaultRouteBodyBytes)
}

// HandleLimit registers an extra route whose request bodies may be up to
// maxBodyBytes long. A request declaring more is answered 413 as soon as its
// head is read, and a chunked body is cut off with 413 once over it, so the
// listener never holds more than this for the route; the handler's own limit
// should be the same value. Call it before Start.
func (s *Server) HandleLimit(pattern string, h http.Handler, maxBodyBytes int64) {
	s.mux.Handle(pattern, h)
	s.bodyLimits[pattern] = max(maxBodyBytes, 0)
	if _, rest, ok := strings.Cut(pattern, " "); ok {
		pattern = strings.TrimLeft(rest, " \t")
	}
	if !strings.HasPrefix(pattern, "/") {
		s.hostRoutes = true
	}
}

// ServeHTTP routes a request; unknown paths answer 404 with a JSON body.
// A route without wildcards (the HTTP API's "/apps/"), and the WebSocket
// route, whose one path value it sets itself, are served with the handler
// that routing found (see routeOf), so the request is routed at most once;
// other routes with wildcards go through the mux, which sets their path
// values.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.routeOf(r)
	if pattern == "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":"not found","code":404}`))
		return
	}
	if !strings.Contains(pattern, "{") {
		r.Pattern = pattern
		h.ServeHTTP(w, r)
		return
	}
	if pattern == wsPattern && !s.hostRoutes {
		// The one wildcard route on the hot path: its value is the
		// path's last segment, unescaped as the mux would.
		if key, ok := wsKey(r.URL.EscapedPath()); ok {
			r.Pattern = pattern
			r.SetPathValue("key", key)
			h.ServeHTTP(w, r)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// wsPattern is the WebSocket route.
const wsPattern = "/app/{key}"

// wsKey is the {key} the mux binds for an escaped path wsPattern matched:
// the last segment, unescaped where it can be.
func wsKey(escapedPath string) (string, bool) {
	key, ok := strings.CutPrefix(escapedPath, "/app/")
	if !ok || key == "" || strings.Contains(key, "/") {
		return "", false
	}
	if v, err := url.PathUnescape(key); err == nil {
		key = v
	}
	return key, true
}

// Start listens on addr (e.g. ":6001" or "127.0.0.1:0") and serves until Shutdown.
func (s *Server) Start(addr string) error {
	if !s.started.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: already started", ErrClosed)
	}
	cfg := s.cfg
	// Listen before nbio does: nbio's Engine.Stop hangs after a failed listen, and this
	// also gives Addr a value before any goroutine starts.
	// No TCP keep-alive on accepted sockets: the sweeper pings silent
	// clients and closes dead ones, and the HTTP API's idle connections
	// have their own timeout; Go's default would cost four setsockopt
	// calls per connection.
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", addr)
	if err != nil {
		s.started.Store(false)
		return fmt.Errorf("edge: listen %s: %w", addr, err)
	}
	ln = directAccept(ln, cfg.Logger) // on Linux, straight into nbio (listen_linux.go)
	s.ln = ln
	maxBody := s.maxBodyLimit()
	ncfg := nbhttp.Config{
		Network: "tcp",
		Listen: func(string, string) (net.Listener, error) {
			return ln, nil
		},
		Handler:                 s,
		NPoller:                 cfg.Pollers,
		ReleaseWebsocketPayload: true,
		// Kernel-refused bytes above this are a hard backstop; the soft limit that
		// sends 4100 is WriteQueueBytes, tracked by onWritten.
		MaxWriteBufferSize:     cfg.WriteQueueBytes*2 + 64<<10,
		ReadBufferSize:         readBufferSize,
		MessageHandlerPoolSize: runtime.NumCPU() * 64,
		KeepaliveTime:          cfg.HandshakeTimeout,
		MaxLoad:                1 << 20,
		// Backstops under onData's per-route limits: nbhttp keeps a request's
		// head and a declared body in one buffer until they are complete. The
		// read limit also bounds a WebSocket's unparsed bytes, so it leaves room
		// for the largest message the upgrader takes.
		MaxHTTPBodySize: int(maxBody),
		ReadLimit:       max(int(maxBody)+cfg.MaxHeaderBytes, cfg.MaxFrameBytes*4+14) + 2*readBufferSize,
	}
	if cfg.TLS != nil {
		ncfg.AddrsTLS, ncfg.TLSConfig = []string{ln.Addr().String()}, cfg.TLS
	} else {
		ncfg.Addrs = []string{ln.Addr().String()}
	}
	s.engine = nbhttp.NewEngine(ncfg)
	s.engine.OnWrittenSize(s.onWritten)
	if raceEnabled {
		// The empty critical sections are the point: the lock/unlock pair is only a
		// happens-before edge the race detector can see (see race_on.go).
		var handoff sync.Mutex
		s.engine.OnOpen(func(net.Conn) { handoff.Lock(); handoff.Unlock() }) //nolint:staticcheck // SA2001: race-only happens-before edge
		s.engine.OnData(func(c *nbio.Conn, data []byte) {
			handoff.Lock()
			handoff.Unlock() //nolint:staticcheck // SA2001: race-only happens-before edge
			s.onData(c, data)
		})
	} else {
		s.engine.OnData(s.onData)
	}
	u := websocket.NewUpgrader()
	u.Engine = s.engine
	u.KeepaliveTime = 0 // liveness is the sweeper's job: no timer per socket
	u.HandshakeTimeout = cfg.HandshakeTimeout
	u.MessageLengthLimit = cfg.MaxFrameBytes * 4
	u.CheckOrigin = func(*http.Request) bool { return true } // checked by us, answered with 4009
	u.OnMessage(s.onMessage)
	u.OnClose(s.onClose)
	u.SetPingHandler(s.onPing)
	u.SetPongHandler(func(ws *websocket.Conn, _ string) {
		if c, ok := ws.Session().(*conn); ok {
			c.touch()
		}
	})
	u.SetCloseHandler(s.onCloseFrame)
	s.upgrader = u
	// The flushers exist before the engine accepts anything: acceptWS picks one
	// for each new socket. Their goroutines start below.
	s.flushers = newFlushers(cfg.FlushInterval, !cfg.NoIOUring, cfg.Logger)
	s.flushStop = make(chan struct{})
	if err := s.engine.Start(); err != nil {
		for _, f := range s.flushers {
			f.closeRing()
		}
		s.engine = nil
		s.started.Store(false)
		return fmt.Errorf("edge: listen %s: %w", addr, err)
	}
	s.flushers[0].fans = s
	for _, f := range s.flushers {
		s.flushDone.Add(1)
		go func() {
			defer s.flushDone.Done()
			f.run(s.flushStop)
		}()
	}
	s.hub.fanner.Store(s.flushers[0])
	s.done.Add(1)
	go s.sweep()
	if s.hub.holding {
		var q chan announcement
		if s.opts.cluster != nil {
			q = make(chan announcement, 256)
			s.done.Add(1)
			go s.announceCongestion(q)
		}
		s.done.Add(1)
		go s.watchCongestion(q)
	}
	if s.opts.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
		s.listen(ctx, controlChannel)
		cancel()
	}
	s.cfg.Logger.Info("edge listening", "addr", s.Addr().String(), "app_id", cfg.AppID)
	return nil
}

// Addr is the listening address, nil before Start.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown drains: new sockets and publishes are refused, existing sockets are closed
// with 4200 at Config.DrainRate per second (each after what was queued for it), and
// once their clients have closed, or CloseGrace after the last close frame, the
// listener and event loop stop. When ctx ends first, the remaining sockets are cut.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.started.Load() {
		return nil
	}
	if !s.draining.CompareAndSwap(false, true) {
		return nil
	}
	close(s.stop)
	s.done.Wait()

	var err error
	per := time.Second / time.Duration(s.cfg.DrainRate)
	batch := 1
	if per < time.Millisecond {
		batch = int(time.Millisecond / per)
		per = time.Millisecond
	}
	t := time.NewTicker(per)
drain:
	// Again until none is left: a socket upgraded while draining began joins late.
	for list := s.openConns(); len(list) > 0; list = s.openConns() {
		for i := 0; i < len(list); i += batch {
			for j := i; j < i+batch && j < len(list); j++ {
				list[j].closeWith(protocol.CodeReconnect, "Server shutting down", false)
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				err = ctx.Err()
				break drain
			}
		}
	}
	t.Stop()
	// Every socket has its last frames queued, the close frame after them. Wait
	// until the clients have read them and closed (or were cut after CloseGrace)
	// before the flushers and the engine stop: stopping earlier would cut frames
	// still on their way.
	wait := time.NewTimer(s.cfg.CloseGrace + s.cfg.FlushInterval + time.Second)
	poll := time.NewTicker(10 * time.Millisecond)
wait:
	for s.open.Load() > 0 {
		select {
		case <-poll.C:
		case <-wait.C:
			break wait
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			break wait
		}
	}
	poll.Stop()
	wait.Stop()
	close(s.flushStop)
	s.flushDone.Wait()
	// The drained sockets' leaves reach the cluster before Shutdown returns.
	s.clOps.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.engine.Shutdown(sctx)
	s.events.Close(ErrClosed)
	return err
}

// openConns lists the sockets in the hub that are not closing.
func (s *Server) openConns() []*conn {
	return s.hub.openConns()
}

// refusal reasons in Stats.ConnectionsRefused (DESIGN.md error reasons where one fits).
const (
	RefusedPoolExhausted = "CONNECTION_POOL_EXHAUSTED"
	RefusedRateLimited   = "RATE_LIMITED"
	RefusedUnknownApp    = "APP_NOT_FOUND"
	RefusedVersion       = "INVALID_PROTOCOL_VERSION"
	RefusedOrigin        = "ORIGIN_NOT_ALLOWED"
	RefusedShuttingDown  = "SHUTTING_DOWN"
	RefusedIPConnections = "CONNECTIONS_PER_IP_EXHAUSTED"
)

var refusalReasons = []string{RefusedPoolExhausted, RefusedIPConnections, RefusedRateLimited, RefusedUnknownApp, RefusedVersion, RefusedOrigin, RefusedShuttingDown}

// serveWS upgrades /app/{key}. Refusals are sent after the upgrade, as pusher:error plus
// the close code, because browsers cannot read an HTTP error status.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	cl := s.clients.Resolve(r)
	if cl.Ignored && len(s.cfg.TrustedProxies) == 0 && s.warnedForward.CompareAndSwap(false, true) {
		s.cfg.Logger.Warn("edge: ignoring X-Forwarded-For/Forwarded from a peer that is not a trusted proxy; "+
			"behind a proxy, list it in http.trustedProxies or every client shares the proxy's per-IP limits", "peer", r.RemoteAddr)
	}
	key := cl.Key()
	code, reason, msg := s.admit(r, key)
	if code == 0 {
		if code, reason, msg = s.reserve(key); code == 0 {
			if !s.acceptWS(w, r, cl.Addr, key) {
				s.release(key)
			}
			return
		}
	}
	s.st.refused[reason].Add(1)
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	ws.SetSession(refused{})
	_ = ws.SetReadDeadline(time.Now().Add(s.cfg.CloseGrace))
	frame := wsFrame(opText, protocol.EncodeError(code, msg, ""))
	_, _ = ws.UnderlayerConn().Write(frame)
	_, _ = ws.UnderlayerConn().Write(closeFrame(code, msg))
	time.AfterFunc(s.cfg.CloseGrace, func() { _ = ws.Close() })
}

// readBufferSize is the event loop's read size.
const readBufferSize = 32 << 10

// reserve takes a slot in the pool and one of the client address's slots.
func (s *Server) reserve(key string) (code int, reason, msg string) {
	if n := s.active.Add(1); !protocol.Within(int(n), s.cfg.Limits.MaxConnections) {
		s.active.Add(-1)
		return protocol.CodeOverQuota, RefusedPoolExhausted, "Application is over connection quota"
	}
	if limit := s.cfg.MaxConnectionsPerIP; limit > 0 {
		s.ipMu.Lock()
		if s.ipConns[key] >= limit {
			s.ipMu.Unlock()
			s.active.Add(-1)
			return protocol.CodeOverQuota, RefusedIPConnections, "Too many connections from this address"
		}
		s.ipConns[key]++
		s.ipMu.Unlock()
	}
	if p := s.opts.pool; p != nil && !p.AcquireConnection() {
		s.releaseLocal(key)
		return protocol.CodeOverQuota, RefusedPoolExhausted, "Application is over connection quota"
	}
	return 0, "", ""
}

// release gives back what reserve took.
func (s *Server) release(key string) {
	if p := s.opts.pool; p != nil {
		p.ReleaseConnection()
	}
	s.releaseLocal(key)
}

// releaseLocal gives back the server's own slots.
func (s *Server) releaseLocal(key string) {
	s.active.Add(-1)
	if s.cfg.MaxConnectionsPerIP > 0 {
		s.ipMu.Lock()
		if n := s.ipConns[key] - 1; n > 0 {
			s.ipConns[key] = n
		} else {
			delete(s.ipConns, key)
		}
		s.ipMu.Unlock()
	}
}

// refused marks a socket that was upgraded only to be told why it is refused.
type refused struct{}

// admit checks everything decided by the request alone.
func (s *Server) admit(r *http.Request, clientKey string) (code int, reason, msg string) {
	if s.draining.Load() {
		// 4100, not 4200: a 4200 makes pusher-js reconnect at once, in a loop.
		return protocol.CodeOverCapacity, RefusedShuttingDown, "Server is shutting down"
	}
	if r.PathValue("key") != s.cfg.Key {
		return protocol.CodeAppNotFound, RefusedUnknownApp, fmt.Sprintf("App key %s not in this cluster. Did you forget to specify the cluster?", r.PathValue("key"))
	}
	if code, msg := checkVersion(r.URL.Query()); code != 0 {
		return code, RefusedVersion, msg
	}
	if !protocol.OriginAllowed(s.cfg.AllowedOrigins, r.Header.Get("Origin")) {
		return protocol.CodeUnauthorized, RefusedOrigin, "Origin not allowed"
	}
	if l := s.opts.connections; l != nil && !l.AllowConnection(clientKey) {
		return protocol.CodeOverCapacity, RefusedRateLimited, "Too many new connections, retry later"
	}
	return 0, "", ""
}

// checkVersion accepts protocol 5 to 7 (§1.1).
func checkVersion(q map[string][]string) (int, string) {
	v, ok := q["protocol"]
	if !ok || len(v) == 0 || v[0] == "" {
		return protocol.CodeNoProtocol, "No protocol version supplied"
	}
	n, err := strconv.Atoi(v[0])
	if err != nil {
		return protocol.CodeInvalidVersion, "Invalid version string format"
	}
	if n < 5 || n > 7 {
		// The parsed number, not the client's string: padded with zeros it
		// could make the message (and the close reason) as long as the URL.
		return protocol.CodeUnsupportedProtocol, "Unsupported protocol version " + strconv.Itoa(n)
	}
	return 0, ""
}

// truncate bounds strings kept per socket so a client cannot inflate memory.
func truncate(s string, n int) string {
	if len(s) > n {
		return strings.Clone(s[:n])
	}
	return s
}

// acceptWS upgrades an admitted socket from the client at addr (shown) and
// key (its per-IP slot, released when the socket is removed).
func (s *Server) acceptWS(w http.ResponseWriter, r *http.Request, addr, key string) bool {
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.cfg.Logger.Debug("edge: upgrade failed", "err", err, "remote", addr)
		return false
	}
	// The HTTP keep-alive deadline must not apply to the socket; the sweeper owns liveness.
	_ = ws.SetReadDeadline(time.Time{})
	now := s.opts.now()
	c := &conn{
		s:           s,
		ws:          ws,
		id:          protocol.NewSocketID(),
		remoteAddr:  addr,
		clientKey:   key,
		userAgent:   truncate(r.UserAgent(), 256),
		connectedAt: now.UnixNano(),
		fl:          s.flushers[s.nextFl.Add(1)%uint64(len(s.flushers))],
	}
	if s.opts.clientEvents == nil {
		c.events.Init(float64(s.cfg.Limits.ClientEventsPerSecond), s.cfg.Limits.ClientEventsPerSecond)
	}
	c.sock.attach(ws.UnderlayerConn())
	c.lastActivity.Store(now.UnixNano())
	s.open.Add(1)
	ws.SetSession(c)
	s.hub.add(c)
	s.st.connectionsTotal.Add(1)
	c.sendRaw(wsFrame(opText, protocol.EncodeConnectionEstablished(c.id, s.activityTimeoutSeconds())))
	s.emit(lifecycle.Event{Type: lifecycle.Connected, Time: now, SocketID: c.id})
	return true
}

func (s *Server) activityTimeoutSeconds() int {
	n := int(s.cfg.ActivityTimeout / time.Second)
	if n < 1 {
		n = 1
	}
	return n
}

// onWritten runs on the event loop for every chunk the kernel accepted.
func (s *Server) onWritten(nc *nbio.Conn, _ []byte, n int) {
	if ws, ok := nc.Session().(*websocket.Conn); ok {
		if c, ok := ws.Session().(*conn); ok {
			c.queued.Add(-int64(n))
			c.sock.loopWritten(n)
		}
	}
}

func (s *Server) onPing(ws *websocket.Conn, data string) {
	c, ok := ws.Session().(*conn)
	if !ok {
		return
	}
	c.touch()
	c.usesWSPing.Store(true)
	c.sendRaw(wsFrame(opPong, []byte(data)))
}

func (s *Server) onCloseFrame(ws *websocket.Conn, code int, _ string) {
	// Echo the close (RFC 6455) unless we initiated it; then the socket is closed by
	// handleWsMessage right after this returns.
	if c, ok := ws.Session().(*conn); ok {
		if !c.closeSent.Swap(true) {
			// Written directly: nbio closes the socket as soon as this returns.
			if code == 1005 {
				c.sock.write(wsFrame(opClose, nil))
			} else {
				c.sock.write(closeFrame(code, ""))
			}
		}
		return
	}
	// A refused socket already sent its close frame; anything else gets a normal close.
	if _, ok := ws.Session().(refused); !ok {
		_, _ = ws.UnderlayerConn().Write(closeFrame(1000, ""))
	}
}

func (s *Server) onClose(ws *websocket.Conn, err error) {
	c, ok := ws.Session().(*conn)
	if !ok {
		return
	}
	s.open.Add(-1)
	code, reason := int(c.closeCode.Load()), ""
	var ce *websocket.CloseError
	if code == 0 && errors.As(err, &ce) {
		code, reason = ce.Code, ce.Reason
	}
	c.closing.Store(true)
	if code == 0 {
		s.cfg.Logger.Debug("edge: socket closed", "socket_id", c.id, "err", err)
	}
	s.removeConn(c, code, reason)
}

// sweep pings silent clients, closes dead ones, expires cache entries and
// per-address limits, and enforces UserAuthTimeout: one goroutine for all
// sockets, one pass every sweepInterval.
func (s *Server) sweep() {
	defer s.done.Done()
	t := time.NewTicker(s.sweepInterval())
	defer t.Stop()
	var list []*conn
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := s.opts.now()
		list = s.snapshotConns(list)
		s.expireAddrLimits(now)
		s.expireCache(now)
		for _, c := range list {
			s.sweepConn(c, now.UnixNano())
		}
	}
}

// sweepInterval is a quarter of the shortest timeout the sweeper enforces, so
// each is enforced within a quarter of its length, between 20 ms and 5 s.
func (s *Server) sweepInterval() time.Duration {
	interval := min(s.cfg.ActivityTimeout, s.cfg.PongTimeout) / 4
	if s.cfg.UserAuthTimeout > 0 {
		interval = min(interval, s.cfg.UserAuthTimeout/4)
	}
	interval = min(interval, s.cfg.HandshakeTimeout/4)
	interval = max(interval, 20*time.Millisecond)
	return min(interval, 5*time.Second)
}

// snapshotConns refills list with the open sockets, so a pass does not hold
// the hub's lock while it sends.
func (s *Server) snapshotConns(list []*conn) []*conn {
	clear(list) // do not keep closed sockets reachable from last round
	list = list[:0]
	return s.hub.snapshotConns(list)
}

// expireAddrLimits drops the per-address connection slots that are full again.
func (s *Server) expireAddrLimits(now time.Time) {
	if s.ipLimit != nil {
		s.ipLimit.expire(now)
	}
}

// expireCache drops expired cache-channel entries, taking the write lock only
// when there is one.
func (s *Server) expireCache(now time.Time) {
	if s.hub.cacheExpired(now) {
		s.hub.expireCache(now)
	}
}

// Frames the sweeper sends to a silent client, shared by every socket.
var (
	pingFrame   = eventFrame(protocol.EventPing, "", "{}", "")
	wsPingFrame = wsFrame(opPing, nil)
)

// sweepConn is one socket's part of a pass: at most one of closing it for a
// late pong, pinging it when silent, or closing it for not signing in.
func (s *Server) sweepConn(c *conn, nowNs int64) {
	if c.closing.Load() {
		return
	}
	c.trimPending()
	s.clearKeepAlive(c, nowNs)
	if p := c.pingSent.Load(); p != 0 {
		s.closeIfPongLate(c, p, nowNs)
		return
	}
	if nowNs-c.lastActivity.Load() > int64(s.cfg.ActivityTimeout) {
		s.ping(c, nowNs)
		return
	}
	s.closeIfNotAuthorized(c, nowNs)
}

// clearKeepAlive clears the HTTP keep-alive read deadline once more, 200 ms
// after the upgrade: nbio arms it on the accept goroutine, which can run after
// the upgrade cleared it.
func (s *Server) clearKeepAlive(c *conn, nowNs int64) {
	if !c.deadlineCleared.Load() && nowNs-c.connectedAt > int64(200*time.Millisecond) && c.ws != nil {
		_ = c.ws.SetReadDeadline(time.Time{})
		c.deadlineCleared.Store(true)
	}
}

// closeIfPongLate closes c when its ping, sent at pingSent, is unanswered after
// PongTimeout.
func (s *Server) closeIfPongLate(c *conn, pingSent, nowNs int64) {
	if nowNs-pingSent > int64(s.cfg.PongTimeout) {
		s.st.staleClosed.Add(1)
		c.closeWithError(protocol.CodePongTimeout, "Pong reply not received in time")
	}
}

// ping asks a silent client for a sign of life, in the form it pings with.
func (s *Server) ping(c *conn, nowNs int64) {
	c.pingSent.Store(nowNs)
	if c.usesWSPing.Load() {
		c.sendRaw(wsPingFrame)
	} else {
		c.sendRaw(pingFrame)
	}
}

// closeIfNotAuthorized enforces UserAuthTimeout.
func (s *Server) closeIfNotAuthorized(c *conn, nowNs int64) {
	if s.cfg.UserAuthTimeout > 0 && !c.authorized.Load() && nowNs-c.connectedAt > int64(s.cfg.UserAuthTimeout) {
		c.closeWithError(protocol.CodeUnauthorized, "Connection not authorized within timeout")
	}
}
