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
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

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

// Version is the build's version, set with -ldflags "-X ...app.Version=v1.2.3".
var Version = "dev"

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
	webhooks   *webhook.Sender // nil when no webhook URL is configured
	realtime   *http.Server    // the realtime listener on the pusher driver
	health     *health.Server
	limits     *ratelimit.Set // the gRPC rate limiters (principal, user, method)
	rlMethods  *interceptors.MethodCounts

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

	grpc    *grpc.Server
	ops     *http.Server
	grpcLn  net.Listener
	opsLn   net.Listener
	rtLn    net.Listener
	started time.Time

	closeOnce sync.Once
	closers   []func(context.Context) error
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
	a := &App{cfg: l}
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

	a.health = health.New([]string{
		pushercmv1.BroadcastService_ServiceDesc.ServiceName,
		pushercmv1.AuthService_ServiceDesc.ServiceName,
		pushercmv1.ConnectionService_ServiceDesc.ServiceName,
	}, nil)

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
		a.edge, err = edge.New(edgeConfig(cfg, a.log), opts...)
		if err != nil {
			return nil, err
		}
	}

	a.rtMux = http.NewServeMux()

	if a.limits, err = ratelimit.NewSet(cfg.RateLimit); err != nil {
		return nil, fmt.Errorf("rateLimit: %w", err)
	}
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	go a.limits.Run(sweepCtx, time.Minute)
	a.closers = append(a.closers, func(context.Context) error { stopSweep(); return nil })

	a.rlMethods = &interceptors.MethodCounts{}
	a.grpc = a.newGRPCServer()
	for _, wire := range []func(context.Context) error{a.wireBroadcast, a.wireAuth, a.wireConnection} {
		if err := wire(ctx); err != nil {
			_ = a.Shutdown(context.Background())
			return nil, err
		}
	}
	if config.Bool(a.cfg.GRPC.Reflection, true) {
		reflection.Register(a.grpc)
	}
	a.ops = &http.Server{Handler: a.opsMux(), ReadHeaderTimeout: 5 * time.Second}
	return a, nil
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
		Logger: log,
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
		ClientEventsEnabled:       config.Bool(e.ClientEvents, false),
		UserAuthEnabled:           config.Bool(e.UserAuthentication, false),
		NoIOUring:                 !config.Bool(e.IOUring, true),
		FlushInterval:             e.FlushInterval,
		CacheTTL:                  e.CacheTTL,
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
		interceptors.WithRateLimitMethodCounts(a.rlMethods),
	}
	chain := &interceptors.Chain{
		Log:             a.log,
		Errors:          &interceptors.ErrorMapper{Log: a.log},
		Auth:            &interceptors.Auth{Verifier: a.verifier},
		RateLimitUnary:  interceptors.UnaryRateLimit(a.limits, rlOpts...),
		RateLimitStream: interceptors.StreamRateLimit(a.limits, rlOpts...),
	}
	opts := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(a.tel.Tracer), otelgrpc.WithMeterProvider(a.tel.Meter))),
		grpc.StatsHandler(a.obs),
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes),
		grpc.MaxSendMsgSize(cfg.MaxSendMsgBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time: cfg.Keepalive.Time, Timeout: cfg.Keepalive.Timeout, MaxConnectionIdle: cfg.Keepalive.MaxConnectionIdle,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime: cfg.Keepalive.MinTime, PermitWithoutStream: config.Bool(cfg.Keepalive.PermitWithoutStream, true),
		}),
	}
	if n := cfg.StreamWorkerCount(); n > 0 {
		opts = append(opts, grpc.NumStreamWorkers(uint32(n)))
	}
	opts = append(opts, chain.ServerOptions()...)
	s := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s, a.health.GRPC())
	return s
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
		a.realtime = &http.Server{Handler: a.rtMux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = a.realtime.Serve(a.rtLn) }()
	}
	a.started = time.Now()
	go func() {
		if err := a.grpc.Serve(a.grpcLn); err != nil {
			a.log.Error("grpc server stopped", "error", err)
		}
	}()
	go func() {
		if err := a.ops.Serve(a.opsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("ops server stopped", "error", err)
		}
	}()
	a.log.Info("pushercm serving", "version", Version, "driver", a.cfg.Driver,
		"grpc", a.GRPCAddr(), "http", a.HTTPAddr(), "ops", a.OpsAddr())
	return nil
}

// handleRealtime adds a route to the realtime listener, whichever driver
// serves it. Call it from a wire method (before Start).
func (a *App) handleRealtime(pattern string, h http.Handler) {
	if a.edge != nil {
		a.edge.Handle(pattern, h)
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
	if a.cfg.File != "" {
		fresh := config.Default()
		if err := config.DecodeFile(a.cfg.File, &fresh); err != nil {
			errs = append(errs, err)
		} else if err := a.rules.Load(fresh.ChannelRules); err != nil {
			errs = append(errs, fmt.Errorf("channelRules: %w", err))
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

// Shutdown stops the process in order: health says NOT_SERVING and
// /readyz 503 first (load balancers drain), then the gRPC server stops
// accepting and finishes in-flight calls until the deadline, when it is
// forced; the realtime listener drains its clients; the ops listener and
// telemetry stop last.
func (a *App) Shutdown(ctx context.Context) error {
	var errs []error
	a.closeOnce.Do(func() {
		a.health.Shutdown()
		a.log.Info("shutting down", "deadline", a.cfg.ShutdownTimeout)
		ctx, cancel := context.WithTimeout(ctx, a.cfg.ShutdownTimeout)
		defer cancel()

		done := make(chan struct{})
		go func() { a.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			a.log.Warn("graceful stop deadline passed; forcing")
			a.grpc.Stop()
			<-done
		}
		if a.edge != nil {
			errs = append(errs, a.edge.Shutdown(ctx))
		}
		if a.realtime != nil {
			errs = append(errs, a.realtime.Shutdown(ctx))
		}
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
