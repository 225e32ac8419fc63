//go:build unix

package interceptors_test

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/pushertest/apptest"
	"github.com/milequest/pushercm/ratelimit"
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
	svc := pushertest.Mint(b, a.Config.JWT.Secret, authz.MintOptions{Subject: "authload", Scopes: []string{interceptors.ScopeAuthorize}})
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
		cpu0 := processCPU(b)
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
		b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	}
	b.Run("check", func(b *testing.B) {
		run(b, func() error {
			_, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
			return err
		})
	})
	b.Run("authorize", func(b *testing.B) { run(b, authorize) })
}

// processCPU is the user+system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
