package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/test/bufconn"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/edge"
	"github.com/milequest/pushercm/edge/webhook"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/health"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/metrics"
	"github.com/milequest/pushercm/protocol"
	"github.com/milequest/pushercm/ratelimit"
	"github.com/milequest/pushercm/telemetry"
)

// Build identity, set by `make build` with -ldflags "-X ...app.Version=v1.2.3
// -X ...app.Commit=<sha> -X ...app.BuildDate=<RFC 3339>". `pushercm version`
// prints them and /metrics exports them as pushercm_build_info.
var (
	Version   = "dev"
	Commit    = "unknown"
	BuildDate = "unknown"
)

// App is one pushercm process: the gRPC server, the realtime listener and
// the ops listener, wired to the domain packages.
type App struct {
	cfg *config.Loaded
	log *slog.Logger
	tel *telemetry.Providers

	verifier   *authz.Verifier
	rules      *authz.Rules
	authorizer *authz.Authorizer
	edge       *edge.Server    // nil on the pusher driver
	cluster    *clusterNode    // nil without redis: one node
	webhooks   *webhook.Sender // nil when no webhook URL is configured
	realtime   *http.Server    // the realtime listener on the pusher driver
	health     *health.Server
	limits     *ratelimit.Set // the gRPC rate limiters (principal, user, method)
	// rateStores are the limiters' Redis stores (rateLimit.store: redis in
	// a cluster); nil otherwise.
	rateStores clusterRateStores

	// serviceVerifier checks gRPC callers' tokens with jwt.service, a trust
	// of its own; verifier (user tokens) serves channel auth and sign-in.
	serviceVerifier *authz.Verifier

	// Subsystems, each wired in its own file (wire_*.go) by a wire method
	// that New calls in order.
	bcast *broadcastWiring
	authw *authWiring
	connw *connectionWiring
	// obs observes publishes (edge.Metrics) and RPC outcomes (a grpc stats
	// handler) for metrics and health; built before the edge and the gRPC
	// server, read by wireConnection.
	obs   *metrics.Observer
	rtMux *http.ServeMux // realtime routes on the pusher driver

	grpc *grpc.Server
	// streams ends the gRPC server's open streams at shutdown, so that the
	// graceful stop does not wait for streams that never end on their own.
	streams *interceptors.StreamStopper
	ops     *http.Server
	tls     *listenerTLS
	grpcLn  net.Listener
	opsLn   net.Listener
	rtLn    net.Listener
	// consoleLn is the in-memory listener the console gateway reaches the
	// gRPC server through (nil without ops.console).
	consoleLn *bufconn.Listener
	started   time.Time

	closeOnce sync.Once
	closers   []func(context.Context) error
	// failed receives the first error of a listener that stopped serving
	// on its own (not through Shutdown); see Failed.
	failed chan error
}

// Options adjust New for tests and embedding.
type Options struct {
	// LogOutput receives logs; nil means os.Stderr.
	LogOutput io.Writer
}

// New builds the process from a loaded configuration. Nothing listens
// until Start.
func New(ctx context.Context, l *config.Loaded, o Options) (_ *App, err error) {
	cfg := &l.Config
	a := &App{cfg: l, failed: make(chan error, 3)}
	defer func() {
		if err != nil && a.grpc == nil {
			// Failed before the wire steps (which shut down themselves):
			// release what was built so far.
			_ = a.runClosers(context.Background())
		}
	}()
	a.log = newLogger(cfg.Log, o.LogOutput)
	if len(l.DevFilled) > 0 {
		a.log.Warn("DEV MODE: using well-known development settings; never run this in production", "filled", l.DevFilled)
	}

	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "pushercm", Version: Version})
	if err != nil {
		return nil, err
	}
	a.tel = tel
	a.closers = append(a.closers, tel.Shutdown)
	a.obs = metrics.NewObserver()

	a.verifier, a.rules, a.authorizer, err = newAuthz(cfg, a.log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func(context.Context) error { return a.verifier.Close() })
	a.serviceVerifier, err = newServiceVerifier(cfg, a.log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func(context.Context) error { return a.serviceVerifier.Close() })

	a.health = health.New([]string{
		pushercmv1.BroadcastService_ServiceDesc.ServiceName,
		pushercmv1.AuthService_ServiceDesc.ServiceName,
		pushercmv1.ConnectionService_ServiceDesc.ServiceName,
	}, nil)

	if a.tls, err = a.newListenerTLS(); err != nil {
		return nil, err
	}

	if cfg.Driver == config.DriverEmbedded {
		opts, err := edgeLimitOptions(cfg.Edge)
		if err != nil {
			return nil, err
		}
		opts = append(opts, edge.WithMetrics(a.obs))
		if urls := cfg.Edge.Webhooks.URLs; len(urls) > 0 {
			wcfg := webhook.Config{
				Key: cfg.Pusher.Key, Secret: cfg.Pusher.Secret,
				BatchWindow: cfg.Edge.Webhooks.BatchWindow, RetryFor: cfg.Edge.Webhooks.RetryFor,
				QueueSize: cfg.Edge.Webhooks.QueueSize, Logger: a.log.With("component", "webhooks"),
			}
			if cfg.Redis.Enabled() {
				wcfg.Confirm = a.leaveStands
			}
			for _, u := range urls {
				wcfg.Targets = append(wcfg.Targets, webhook.Target{URL: u})
			}
			if a.webhooks, err = webhook.New(wcfg); err != nil {
				return nil, fmt.Errorf("edge.webhooks: %w", err)
			}
			// Closed after the edge has drained (closers run in reverse), so
			// the vacate webhooks of the drain are sent.
			a.closers = append(a.closers, a.webhooks.Close)
			opts = append(opts, edge.WithWebhookSink(a.webhooks))
		}
		if cfg.Redis.Enabled() {
			a.cluster = newClusterNode(cfg.ClusterConfig(), a.log, a.nodeInfo)
			opts = append(opts, edge.WithCluster(a.cluster))
			if m := cfg.Cluster.MaxConnections; m > 0 {
				a.cluster.conns = &clusterConnections{node: a.cluster, max: m}
				opts = append(opts, edge.WithConnectionPool(a.cluster.conns))
			}
		}
		ec := edgeConfig(cfg, a.log)
		ec.TLS = edgeTLS(a.tls.http)
		a.edge, err = edge.New(ec, opts...)
		if err != nil {
			return nil, err
		}
		if a.cluster != nil {
			// Started by Start; runs after the edge drained (closers run in reverse), before
			// the webhooks sender closes.
			a.closers = append(a.closers, a.cluster.close)
		}
	}

	a.rtMux = http.NewServeMux()

	var rlOpts []ratelimit.Option
	if a.cluster != nil && cfg.RateLimitStore() == ratelimit.StoreRedis {
		a.rateStores = clusterRateStores{}
		rlOpts = append(rlOpts, a.rateStores.option(a.cluster))
	}
	if a.limits, err = ratelimit.NewSet(cfg.RateLimit, rlOpts...); err != nil {
		return nil, fmt.Errorf("rateLimit: %w", err)
	}
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	go a.limits.Run(sweepCtx, time.Minute)
	a.closers = append(a.closers, func(context.Context) error { stopSweep(); return nil })

	a.streams = interceptors.NewStreamStopper()
	a.grpc = a.newGRPCServer()
	for _, wire := range []func(context.Context) error{a.wireBroadcast, a.wireAuth, a.wireConnection, a.wireDemo} {
		if err := wire(ctx); err != nil {
			_ = a.Shutdown(context.Background())
			return nil, err
		}
	}
	if err := a.registerStatusMetrics(); err != nil {
		_ = a.Shutdown(context.Background())
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if config.Bool(a.cfg.GRPC.Reflection, true) {
		reflection.Register(a.grpc)
	}
	mux := a.opsMux()
	if err := a.wireConsole(mux); err != nil {
		_ = a.Shutdown(context.Background())
		return nil, err
	}
	a.ops = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return a, nil
}

// newServiceVerifier builds the verifier of service tokens (jwt.service;
// leeway, claim names and JWKS refresh are shared with jwt).
func newServiceVerifier(cfg *config.Config, log *slog.Logger) (*authz.Verifier, error) {
	s := cfg.JWT.Service
	v, err := authz.NewVerifier(authz.VerifierConfig{
		Secret:        []byte(s.Secret),
		PublicKeyFile: s.PublicKeyFile,
		JWKSFile:      s.JWKSFile,
		JWKSURL:       s.JWKSURL,
		Algorithms:    s.Algorithms,
		Issuer:        s.Issuer,
		Audience:      s.Audience,
		Leeway:        cfg.JWT.Leeway,
		Claims:        cfg.JWT.Claims,
		JWKSRefresh:   cfg.JWT.JWKSRefresh,
		Logger:        log,
	})
	if err != nil {
		return nil, fmt.Errorf("jwt.service: %w", err)
	}
	return v, nil
}

// newAuthz builds the token verifier, the channel rules and the authorizer.
func newAuthz(cfg *config.Config, log *slog.Logger) (*authz.Verifier, *authz.Rules, *authz.Authorizer, error) {
	verifier, err := authz.NewVerifier(authz.VerifierConfig{
		Secret:        []byte(cfg.JWT.Secret),
		PublicKeyFile: cfg.JWT.PublicKeyFile,
		JWKSFile:      cfg.JWT.JWKSFile,
		JWKSURL:       cfg.JWT.JWKSURL,
		Algorithms:    cfg.JWT.Algorithms,
		Issuer:        cfg.JWT.Issuer,
		Audience:      cfg.JWT.Audience,
		Leeway:        cfg.JWT.Leeway,
		Claims:        cfg.JWT.Claims,
		JWKSRefresh:   cfg.JWT.JWKSRefresh,
		Logger:        log,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("jwt: %w", err)
	}
	rules, err := authz.NewRules(cfg.ChannelRules, log)
	if err != nil {
		_ = verifier.Close()
		return nil, nil, nil, fmt.Errorf("channelRules: %w", err)
	}
	if cfg.Driver == config.DriverPusher {
		for _, r := range rules.Active() {
			if len(r.Permissions) > 0 && !slices.Contains(r.Permissions, authz.PermClientEvents) {
				log.Warn("hosted Pusher cannot withhold client-events: rule's subscribers may send client events when the app enables them", "rule", r.Name, "permissions", r.Permissions)
			}
		}
	}
	var masterKey []byte
	if cfg.Pusher.EncryptionMasterKeyBase64 != "" {
		masterKey, err = protocol.DecodeMasterKey(cfg.Pusher.EncryptionMasterKeyBase64)
		if err != nil {
			_ = verifier.Close()
			return nil, nil, nil, errors.New("PUSHER_ENCRYPTION_MASTER_KEY_BASE64: must be base64 of 32 bytes")
		}
	}
	authorizer, err := authz.NewAuthorizer(authz.AuthorizerConfig{
		AppKey: cfg.Pusher.Key, AppSecret: cfg.Pusher.Secret, EncryptionMasterKey: masterKey,
		MaxUserInfoBytes: cfg.Edge.MaxMemberInfoBytes, MaxChannelNameLength: cfg.Edge.MaxChannelNameLength,
		// Hosted Pusher verifies subscriptions itself and knows only the
		// plain signature: a rule's withheld client-events cannot hold there.
		HostedPusher:        cfg.Driver == config.DriverPusher,
		BrowserUserInfoKeys: cfg.HTTP.BrowserUserInfoKeys,
		Logger:              log,
	}, rules)
	if err != nil {
		_ = verifier.Close()
		return nil, nil, nil, err
	}
	return verifier, rules, authorizer, nil
}

func edgeConfig(cfg *config.Config, log *slog.Logger) edge.Config {
	e := cfg.Edge
	return edge.Config{
		AppID: cfg.Pusher.AppID, Key: cfg.Pusher.Key, Secret: cfg.Pusher.Secret,
		Limits: protocol.Limits{
			MaxPayloadBytes:               e.MaxPayloadBytes,
			MaxChannelsPerTrigger:         e.MaxChannelsPerEvent,
			MaxBatchSize:                  e.MaxBatchSize,
			MaxEventNameLength:            e.MaxEventNameLength,
			MaxChannelNameLength:          e.MaxChannelNameLength,
			MaxPresenceMembers:            e.MaxPresenceMembers,
			MaxMemberInfoBytes:            e.MaxMemberInfoBytes,
			MaxSubscriptionsPerConnection: e.SubscriptionsPerConnection,
			ClientEventsPerSecond:         e.ClientEventsPerSecond,
			MaxConnections:                e.MaxConnections,
		},
		ActivityTimeout:           e.ActivityTimeout,
		PongTimeout:               e.PongTimeout,
		AllowedOrigins:            cfg.HTTP.AllowedOrigins,
		MaxHeaderBytes:            cfg.HTTP.MaxHeaderBytes,
		TrustedProxies:            cfg.HTTP.TrustedProxies,
		MaxConnectionsPerIP:       e.MaxConnectionsPerIP,
		MaxAPIBodyBytes:           e.MaxAPIBodyBytes,
		ClientEventsEnabled:       config.Bool(e.ClientEvents, false),
		UserAuthEnabled:           config.Bool(e.UserAuthentication, false),
		NoIOUring:                 !config.Bool(e.IOUring, true),
		FlushInterval:             e.FlushInterval,
		PublishHoldMax:            publishHoldMax(e.PublishHoldMax),
		CongestedPercent:          e.CongestedPercent,
		CacheTTL:                  e.CacheTTL,
		MaxCacheChannels:          e.MaxCacheChannels,
		MaxFrameBytes:             e.MaxFrameBytes,
		ConnectionsPerIPPerSecond: e.ConnectionsPerIPPerSecond,
		MaxSubscriptionsPerUser:   e.SubscriptionsPerUser,
		Logger:                    log.With("component", "edge"),
	}
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	lvl, _ := config.ParseLevel(c.Level)
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if c.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(telemetry.LogHandler(h))
}

func (a *App) newGRPCServer() *grpc.Server {
	cfg := a.cfg.GRPC
	rlOpts := []interceptors.RateLimitOption{
		interceptors.WithRateLimitKeys(interceptors.BroadcastUserIDs),
		interceptors.WithRateLimitLogger(a.log),
	}
	calls := telemetry.NewServerCalls(a.tel.Tracer, a.tel.Meter, a.tel.IDsOnly)
	chain := &interceptors.Chain{
		Track:           callTracker{calls: calls, obs: a.obs},
		Log:             a.log,
		Errors:          &interceptors.ErrorMapper{Log: a.log},
		Auth:            &interceptors.Auth{Verifier: a.serviceVerifier},
		RateLimitUnary:  interceptors.UnaryRateLimit(a.limits, rlOpts...),
		RateLimitStream: interceptors.StreamRateLimit(a.limits, rlOpts...),
		Streams:         a.streams,
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes),
		grpc.MaxSendMsgSize(cfg.MaxSendMsgBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time: cfg.Keepalive.Time, Timeout: cfg.Keepalive.Timeout, MaxConnectionIdle: cfg.Keepalive.MaxConnectionIdle,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime: cfg.Keepalive.MinTime, PermitWithoutStream: config.Bool(cfg.Keepalive.PermitWithoutStream, true),
		}),
	}
	if calls == nil {
		// otelgrpc's older conventions (OTEL_SEMCONV_STABILITY_OPT_IN):
		// its own stats handler traces and times, the chain still counts.
		opts = append(opts, grpc.StatsHandler(telemetry.NewServerHandler(a.tel.Tracer, a.tel.Meter)))
	}
	if n := cfg.StreamWorkerCount(); n > 0 {
		opts = append(opts, grpc.NumStreamWorkers(uint32(n)))
	}
	opts = append(opts, a.tls.grpcOptions()...)
	opts = append(opts, chain.ServerOptions()...)
	s := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s, a.health.GRPC())
	return s
}

// callTracker traces, times and counts every call from the interceptor
// chain (interceptors.Tracker): telemetry's spans and durations (nil calls:
// a stats handler does those) and the Observer's outcome counts.
type callTracker struct {
	calls *telemetry.ServerCalls
	obs   *metrics.Observer
}

func (t callTracker) Begin(ctx context.Context, fullMethod string) context.Context {
	if t.calls == nil {
		return ctx
	}
	return t.calls.Begin(ctx, fullMethod)
}

func (t callTracker) End(ctx context.Context, fullMethod string, begin time.Time, err error) {
	if t.calls != nil {
		t.calls.End(ctx, fullMethod, begin, err)
	}
	t.obs.Finished(err)
}

func (a *App) opsMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.tel.Handler)
	mux.Handle("GET /healthz", a.health.Liveness())
	mux.Handle("GET /readyz", a.health.Readiness())
	if a.cfg.Ops.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Start opens the three listeners and serves in the background.
func (a *App) Start() error {
	var err error
	if a.grpcLn, err = net.Listen("tcp", a.cfg.GRPC.Addr); err != nil {
		return fmt.Errorf("grpc listener: %w", err)
	}
	if a.opsLn, err = net.Listen("tcp", a.cfg.Ops.Addr); err != nil {
		_ = a.grpcLn.Close()
		return fmt.Errorf("ops listener: %w", err)
	}
	a.opsLn = wrapTLS(a.opsLn, a.tls.ops)
	if a.edge != nil {
		if err := a.edge.Start(a.cfg.HTTP.Addr); err != nil {
			_ = a.grpcLn.Close()
			_ = a.opsLn.Close()
			return fmt.Errorf("realtime listener: %w", err)
		}
	} else {
		if a.rtLn, err = net.Listen("tcp", a.cfg.HTTP.Addr); err != nil {
			_ = a.grpcLn.Close()
			_ = a.opsLn.Close()
			return fmt.Errorf("realtime listener: %w", err)
		}
		a.realtime = &http.Server{Handler: a.rtMux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: a.cfg.HTTP.MaxHeaderBytes}
		go func() {
			if err := a.realtime.Serve(wrapTLS(a.rtLn, a.tls.http)); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.fail("realtime listener", err)
			}
		}()
	}
	a.started = time.Now()
	if a.cluster != nil {
		a.cluster.start(a.edge)
	}
	go func() {
		// Serve returns nil after GracefulStop or Stop, an error when the
		// listener fails.
		if err := a.grpc.Serve(a.grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			a.fail("grpc listener", err)
		}
	}()
	if a.consoleLn != nil {
		go func() {
			if err := a.grpc.Serve(inProcessListener{a.consoleLn}); err != nil {
				a.log.Error("grpc server (console) stopped", "error", err)
			}
		}()
	}
	go func() {
		if err := a.ops.Serve(a.opsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.fail("ops listener", err)
		}
	}()
	a.log.Info("pushercm serving", "version", Version, "driver", a.cfg.Driver,
		"grpc", a.GRPCAddr(), "http", a.HTTPAddr(), "ops", a.OpsAddr(),
		"tls_grpc", a.tls.grpc != nil, "mtls_grpc", a.cfg.GRPC.TLS.ClientCAFile != "",
		"tls_http", a.tls.http != nil, "tls_ops", a.tls.ops != nil)
	return nil
}

// fail reports a listener that stopped serving on its own.
func (a *App) fail(listener string, err error) {
	a.log.Error("listener stopped serving; the process must stop", "listener", listener, "error", err)
	select {
	case a.failed <- fmt.Errorf("%s: %w", listener, err):
	default: // one failure is enough to stop
	}
}

// Failed delivers the error of a listener (gRPC, ops, or the pusher
// driver's realtime listener) that stopped serving other than through
// Shutdown. A process half served is worse than none: the caller shuts
// down and exits non-zero, so that an orchestrator restarts it.
func (a *App) Failed() <-chan error { return a.failed }

// handleRealtimeLimit adds a route to the realtime listener, whichever driver
// serves it. Call it from a wire method (before Start).
// Its handler reads bodies of up to maxBodyBytes: the embedded server
// refuses longer ones before buffering them; net/http (pusher driver)
// streams bodies, so there the handler's own http.MaxBytesReader is the limit.
func (a *App) handleRealtimeLimit(pattern string, h http.Handler, maxBodyBytes int64) {
	if a.edge != nil {
		a.edge.HandleLimit(pattern, h, maxBodyBytes)
		return
	}
	a.rtMux.Handle(pattern, h)
}

// GRPCAddr is the gRPC listener's address (after Start).
func (a *App) GRPCAddr() string { return addrString(a.grpcLn) }

// OpsAddr is the ops listener's address (after Start).
func (a *App) OpsAddr() string { return addrString(a.opsLn) }

// HTTPAddr is the realtime listener's address (after Start).
func (a *App) HTTPAddr() string {
	if a.edge != nil {
		if ad := a.edge.Addr(); ad != nil {
			return ad.String()
		}
		return ""
	}
	return addrString(a.rtLn)
}

func addrString(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// Logger is the process logger.
func (a *App) Logger() *slog.Logger { return a.log }

// Reload re-reads what can change without a restart: JWT key sets and the
// channel rules file. A failure keeps the old state and is returned.
func (a *App) Reload(ctx context.Context) error {
	var errs []error
	if err := a.verifier.Reload(ctx); err != nil {
		errs = append(errs, fmt.Errorf("jwt keys: %w", err))
	}
	if err := a.serviceVerifier.Reload(ctx); err != nil {
		errs = append(errs, fmt.Errorf("jwt.service keys: %w", err))
	}
	if a.cfg.File != "" {
		if err := a.reloadRulesFile(a.cfg.File, true); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		a.log.Error("reload failed; keeping the previous state", "error", err)
	} else {
		a.log.Info("reloaded", "rules", a.rules.Names())
	}
	return err
}

// runClosers releases what New built, last first.
func (a *App) runClosers(ctx context.Context) error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i](ctx))
	}
	a.closers = nil
	return errors.Join(errs...)
}

// Shutdown stops the process in the order load balancers need:
//
//  1. health turns NOT_SERVING (grpc.health.v1 watchers are told), /readyz
//     answers 503 and GetHealthStatus unhealthy;
//  2. for shutdownDelay everything else goes on serving, so that load
//     balancers stop routing here before anything is refused;
//  3. every open gRPC stream ends with UNAVAILABLE (health and reflection
//     streams never end on their own);
//  4. side by side, each within its own shutdownTimeout: the gRPC server
//     stops accepting and finishes in-flight calls (forced at the deadline),
//     and the realtime listener drains its WebSocket clients (4200, paced);
//  5. the ops listener and telemetry stop.
//
// ctx bounds the whole (the delay included); a cancelled ctx cuts it short.
func (a *App) Shutdown(ctx context.Context) error {
	var errs []error
	a.closeOnce.Do(func() {
		a.health.Shutdown()
		a.log.Info("shutting down", "delay", a.cfg.ShutdownDelay, "timeout", a.cfg.ShutdownTimeout)
		if d := a.cfg.ShutdownDelay; d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		a.streams.Stop()

		var mu sync.Mutex
		report := func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		var wg sync.WaitGroup
		wg.Go(func() { report(a.stopGRPC(ctx)) })
		wg.Go(func() {
			// The drain has a budget of its own: a slow gRPC call must not
			// leave it an expired deadline.
			dctx, cancel := context.WithTimeout(ctx, a.cfg.ShutdownTimeout)
			defer cancel()
			if a.edge != nil {
				report(a.edge.Shutdown(dctx))
			}
			if a.realtime != nil {
				report(a.realtime.Shutdown(dctx))
			}
		})
		wg.Wait()

		octx, ocancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer ocancel()
		if a.ops != nil {
			errs = append(errs, a.ops.Shutdown(octx))
		}
		errs = append(errs, a.runClosers(octx))
		a.log.Info("stopped")
	})
	return errors.Join(errs...)
}

// stopGRPC stops the gRPC server gracefully, and by force when that takes
// longer than shutdownTimeout (a call that does not end, or a stream whose
// client stopped reading).
func (a *App) stopGRPC(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ShutdownTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() { a.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		a.log.Warn("graceful stop deadline passed; forcing")
		a.grpc.Stop()
		<-done
		return nil
	}
}

// publishHoldMax is edge.publishHoldMax for the edge, where 0 means the
// default: the configuration's 0 (never hold) is negative there.
func publishHoldMax(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
