//go:build unix

package interceptors_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/authz/authsvc"
	"github.com/milequest/pushercm/bench/loadgen"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/pushertest/apptest"
	"github.com/milequest/pushercm/ratelimit"
	"github.com/milequest/pushercm/server"
	"github.com/milequest/pushercm/telemetry"
)

// BenchmarkAuthChain is issue 4's comparison in process: the whole app
// (real interceptor chain, stats handlers, AuthService) on a loopback TCP
// listener, called over one client connection by 50 concurrent callers (as
// bench/cmd/authload does), logging at INFO so that nothing is logged per
// call. "check" is grpc.health.v1.Health/Check, the floor; "authorize" is
// AuthService/AuthorizeChannel for presence-team-t1 with a service token and
// 1 000 distinct user tokens round-robin, the per-principal limit lifted (the
// limiter still runs). ns/op and allocs/op include the client's share.
func BenchmarkAuthChain(b *testing.B) {
	a := apptest.Start(b, func(c *config.Config) {
		c.Log.Level = "INFO"
		c.RateLimit.Limiters[ratelimit.LimiterPrincipal] = ratelimit.Policy{Limits: ratelimit.Limits{
			MessagesPerSecond: 1e7, MessagesPerMinute: 1e9, BurstLimit: 1e7,
		}}
	})
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	svc := pushertest.Mint(b, a.Config.JWT.Service.Secret, authz.MintOptions{Subject: "authload", Scopes: []string{interceptors.ScopeAuthorize}})
	users := make([]string, 1000)
	for i := range users {
		users[i] = pushertest.Mint(b, a.Config.JWT.Secret, authz.MintOptions{
			Subject: "user-" + strconv.Itoa(i), Teams: []string{"t1"}, Name: "User " + strconv.Itoa(i), TTL: time.Hour,
		})
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+svc)
	health := healthpb.NewHealthClient(conn)
	auth := pushercmv1.NewAuthServiceClient(conn)
	var next atomic.Uint64
	authorize := func() error {
		n := next.Add(1)
		_, err := auth.AuthorizeChannel(ctx, &pushercmv1.AuthorizeChannelRequest{
			SocketId: "1234.5678", ChannelName: "presence-team-t1", Token: users[n%uint64(len(users))],
		})
		return err
	}
	// Warm the token cache and check the call works.
	for range users {
		if err := authorize(); err != nil {
			b.Fatal(err)
		}
	}
	run := func(b *testing.B, call func() error) {
		b.SetParallelism(max(1, 50/runtime.GOMAXPROCS(0))) // 50 callers
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := loadgen.SelfCPU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := call(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		// CPU time moves far less than ns/op when other jobs share the
		// machine (see BENCHMARKS.md).
		b.ReportMetric(float64(loadgen.SelfCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	}
	b.Run("check", func(b *testing.B) {
		run(b, func() error {
			_, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
			return err
		})
	})
	b.Run("authorize", func(b *testing.B) { run(b, authorize) })
}

// BenchmarkChainDirect calls the server's unary interceptor chain (as
// app wires it: logging at INFO through the telemetry handler, error
// mapping, service auth, rate limit with the per-principal limit lifted,
// recovery) and the real handlers directly, one call at a time, with the
// context a gRPC server would give them (incoming metadata, transport
// stream, peer, otelgrpc's non-recording span). It leaves out the
// transport and otelgrpc, so it shows this code's own cost per call with
// far less noise than BenchmarkAuthChain.
func BenchmarkChainDirect(b *testing.B) {
	secret := []byte("chain-direct-secret-0123456789abcdef")
	log := slog.New(telemetry.LogHandler(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})))
	v, err := authz.NewVerifier(authz.VerifierConfig{Secret: secret, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = v.Close() })
	cfg := ratelimit.DefaultConfig()
	cfg.Limiters[ratelimit.LimiterPrincipal] = ratelimit.Policy{Limits: ratelimit.Limits{
		MessagesPerSecond: 1e7, MessagesPerMinute: 1e9, BurstLimit: 1e7,
	}}
	set, err := ratelimit.NewSet(cfg)
	if err != nil {
		b.Fatal(err)
	}
	chain := &interceptors.Chain{
		Log:    log,
		Errors: &interceptors.ErrorMapper{Log: log},
		Auth:   &interceptors.Auth{Verifier: v},
		RateLimitUnary: interceptors.UnaryRateLimit(set,
			interceptors.WithRateLimitKeys(interceptors.BroadcastUserIDs),
			interceptors.WithRateLimitLogger(log),
			interceptors.WithRateLimitMethodCounts(&interceptors.MethodCounts{})),
	}
	unary := chainUnary(chain.UnaryInterceptors())

	rules, err := authz.NewRules(authz.RulesConfig{}, log)
	if err != nil {
		b.Fatal(err)
	}
	az, err := authz.NewAuthorizer(authz.AuthorizerConfig{AppKey: "key", AppSecret: "app-secret"}, rules)
	if err != nil {
		b.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	svc, err := authsvc.New(authsvc.Config{
		Verifier: v, Authorizer: az, TracerProvider: tp, Logger: log, AnnotateParentSpan: true,
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
	})
	if err != nil {
		b.Fatal(err)
	}
	authSrv := &server.Auth{Authorizer: svc}
	hs := health.NewServer()

	svcTok, err := authz.Mint(secret, authz.MintOptions{Subject: "authload", Scopes: []string{interceptors.ScopeAuthorize}, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	users := make([]string, 1000)
	for i := range users {
		if users[i], err = authz.Mint(secret, authz.MintOptions{
			Subject: "user-" + strconv.Itoa(i), Teams: []string{"t1"}, Name: "User " + strconv.Itoa(i), TTL: time.Hour,
		}); err != nil {
			b.Fatal(err)
		}
	}
	// What grpc.Server and otelgrpc put in a call's context.
	callCtx := func(withToken bool) context.Context {
		md := metadata.MD{"user-agent": {"grpc-go/1.85.0"}, "content-type": {"application/grpc"}, ":authority": {"127.0.0.1:50051"}}
		if withToken {
			md["authorization"] = []string{"Bearer " + svcTok}
		}
		ctx := metadata.NewIncomingContext(context.Background(), md)
		ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}})
		ctx, _ = tp.Tracer("otelgrpc").Start(ctx, "rpc")
		return ctx
	}
	run := func(b *testing.B, method string, withToken bool, newReq func(i int) any, h grpc.UnaryHandler) {
		info := &grpc.UnaryServerInfo{FullMethod: method}
		base := callCtx(withToken)
		for i := range users { // warm the token cache
			if _, err := unary(grpc.NewContextWithServerTransportStream(base, &joinStream{}), newReq(i), info, h); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			// A fresh stream per call, as the server's is.
			ctx := grpc.NewContextWithServerTransportStream(base, &joinStream{})
			if _, err := unary(ctx, newReq(i), info, h); err != nil {
				b.Fatal(err)
			}
			i++
		}
	}
	b.Run("check", func(b *testing.B) {
		run(b, healthpb.Health_Check_FullMethodName, false,
			func(int) any { return &healthpb.HealthCheckRequest{} },
			func(ctx context.Context, req any) (any, error) {
				return hs.Check(ctx, req.(*healthpb.HealthCheckRequest))
			})
	})
	b.Run("authorize", func(b *testing.B) {
		run(b, pushercmv1.AuthService_AuthorizeChannel_FullMethodName, true,
			func(i int) any {
				return &pushercmv1.AuthorizeChannelRequest{
					SocketId: "1234.5678", ChannelName: "presence-team-t1", Token: users[i%len(users)],
				}
			},
			func(ctx context.Context, req any) (any, error) {
				return authSrv.AuthorizeChannel(ctx, req.(*pushercmv1.AuthorizeChannelRequest))
			})
	})
}

// chainUnary chains interceptors the way grpc.ChainUnaryInterceptor does.
func chainUnary(ics []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return ics[0](ctx, req, info, nextHandler(ics, 0, info, handler))
	}
}

func nextHandler(ics []grpc.UnaryServerInterceptor, curr int, info *grpc.UnaryServerInfo, final grpc.UnaryHandler) grpc.UnaryHandler {
	if curr == len(ics)-1 {
		return final
	}
	return func(ctx context.Context, req any) (any, error) {
		return ics[curr+1](ctx, req, info, nextHandler(ics, curr+1, info, final))
	}
}

// joinStream is a grpc.ServerTransportStream that merges headers the way
// the server's transport stream does.
type joinStream struct{ header metadata.MD }

func (*joinStream) Method() string { return "" }
func (s *joinStream) SetHeader(md metadata.MD) error {
	s.header = metadata.Join(s.header, md)
	return nil
}
func (*joinStream) SendHeader(metadata.MD) error { return nil }
func (*joinStream) SetTrailer(metadata.MD) error { return nil }
