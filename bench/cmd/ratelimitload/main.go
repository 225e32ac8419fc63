// Command ratelimitload measures the rate-limit interceptor's cost over an
// empty unary RPC (issue 5, in place of the ghz run). In one process it
// starts two gRPC servers on 127.0.0.1:0 with the server's interceptor chain
// (interceptors.Chain: logging, error mapping, service-token auth with a real
// HS256 authz.Verifier, recovery), identical except that one also has
// interceptors.UnaryRateLimit with the BroadcastService per-event user keys.
// Its limits are far above the load, so nothing is refused but the check
// (user + principal limiter, response headers) runs on every call.
//
// Both servers register a BroadcastService whose SendEvent returns an empty
// response at once, so what is measured is gRPC + the chain, and the health
// service as the floor (health is exempt from auth and limits). Closed-loop
// callers on the generated stubs drive one server at a time: health, then
// without/with in odd rounds and with/without in even ones, so noise from
// other jobs on the shared box hits both. Each SendEvent names one of -users
// user ids.
//
//	go run ./bench/cmd/ratelimitload
//	go run ./bench/cmd/ratelimitload -cpuprofile /tmp/rl.prof   # then pprof -top -cum
//
// CPU per call is this process's user+system time (getrusage; servers and
// load generator both) over the calls completed; the limiter's cost is the
// difference between the two SendEvent phases. It moves less than req/s
// when other jobs take the CPUs, but still moves: fewer calls per wakeup
// cost more CPU each. The profile attributes the interceptor's own share.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"runtime/pprof"
	"sort"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/bench/loadgen"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/ratelimit"
)

const secret = "ratelimitload-hs256-secret-of-at-least-32-bytes"

// emptyBroadcast answers SendEvent at once: the "empty unary RPC".
type emptyBroadcast struct {
	pushercmv1.UnimplementedBroadcastServiceServer
}

func (emptyBroadcast) SendEvent(context.Context, *pushercmv1.SendEventRequest) (*pushercmv1.SendEventResponse, error) {
	return &pushercmv1.SendEventResponse{}, nil
}

// liftedLimits never refuse the load but keep both limiters checking every
// call (the method limiter is Unlimited, as in DefaultConfig).
func liftedLimits() ratelimit.Config {
	return ratelimit.Config{Limiters: map[string]ratelimit.Policy{
		ratelimit.LimiterPrincipal: {Limits: ratelimit.Limits{MessagesPerSecond: 1e7, MessagesPerMinute: 1 << 30, BurstLimit: 1e7, WindowSize: time.Minute}},
		ratelimit.LimiterUser:      {Limits: ratelimit.Limits{MessagesPerSecond: 1e6, MessagesPerMinute: 1 << 30, BurstLimit: 1e6, WindowSize: time.Minute}},
		ratelimit.LimiterMethod:    {Unlimited: true},
	}}
}

// serve starts one server; set nil means no rate-limit interceptors.
func serve(set *ratelimit.Set) (addr string, stop func()) {
	// INFO, as the server runs: successful calls log at DEBUG, so nothing
	// per call is written.
	lg := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	v, err := authz.NewVerifier(authz.VerifierConfig{Secret: []byte(secret), Logger: lg})
	if err != nil {
		log.Fatal(err)
	}
	chain := &interceptors.Chain{Log: lg, Errors: &interceptors.ErrorMapper{Log: lg}, Auth: &interceptors.Auth{Verifier: v}}
	if set != nil {
		opts := []interceptors.RateLimitOption{interceptors.WithRateLimitKeys(interceptors.BroadcastUserIDs), interceptors.WithRateLimitLogger(lg)}
		chain.RateLimitUnary = interceptors.UnaryRateLimit(set, opts...)
		chain.RateLimitStream = interceptors.StreamRateLimit(set, opts...)
	}
	s := grpc.NewServer(chain.ServerOptions()...)
	pushercmv1.RegisterBroadcastServiceServer(s, emptyBroadcast{})
	healthpb.RegisterHealthServer(s, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	return lis.Addr().String(), func() { s.Stop(); _ = v.Close() }
}

func main() {
	var (
		duration    = flag.Duration("duration", 5*time.Second, "measuring time per phase")
		warmup      = flag.Duration("warmup", time.Second, "unmeasured time before each phase")
		concurrency = flag.Int("c", 16, "concurrent callers (one client connection per server)")
		users       = flag.Int("users", 1000, "distinct event user_ids, used round-robin")
		rounds      = flag.Int("rounds", 3, "health/without/with phase rounds")
		cpuprofile  = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	)
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}

	set, err := ratelimit.NewSet(liftedLimits())
	if err != nil {
		log.Fatal(err)
	}
	addrOff, stopOff := serve(nil)
	defer stopOff()
	addrOn, stopOn := serve(set)
	defer stopOn()

	tok, err := authz.Mint([]byte(secret), authz.MintOptions{Subject: "ratelimitload", Scopes: []string{interceptors.ScopePublish}, TTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	ids := make([]string, *users)
	for i := range ids {
		ids[i] = fmt.Sprintf("user-%d", i)
	}
	var next atomic.Uint64
	dial := func(addr string) *grpc.ClientConn {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			log.Fatal(err)
		}
		return cc
	}
	ccOff, ccOn := dial(addrOff), dial(addrOn)
	defer func() { _ = ccOff.Close(); _ = ccOn.Close() }()
	sendOn := func(cc *grpc.ClientConn, opts ...grpc.CallOption) func() error {
		c := pushercmv1.NewBroadcastServiceClient(cc)
		return func() error {
			id := ids[next.Add(1)%uint64(len(ids))]
			_, err := c.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{
				Channels: []string{"bench"}, Name: "e", UserId: id,
			}}, opts...)
			return err
		}
	}
	hc := healthpb.NewHealthClient(ccOff)
	check := func() error {
		_, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
		return err
	}

	// Both servers answer, and only the limited one runs the limiter (its
	// admitted calls carry x-ratelimit-* headers).
	for _, tc := range []struct {
		cc   *grpc.ClientConn
		want bool
	}{{ccOff, false}, {ccOn, true}} {
		var hdr metadata.MD
		if err := sendOn(tc.cc, grpc.Header(&hdr))(); err != nil {
			log.Fatalf("SendEvent: %v", err)
		}
		if got := len(hdr.Get(interceptors.HeaderRateLimitRemaining)) > 0; got != tc.want {
			log.Fatalf("x-ratelimit-remaining present = %v, want %v", got, tc.want)
		}
	}

	fmt.Printf("ratelimitload: -c %d, 1 conn per server, %d user ids, %d rounds x %s (+%s warm-up) per phase, %s\n\n",
		*concurrency, *users, *rounds, *duration, *warmup, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	names := []string{"Health/Check (floor)", "SendEvent, no limiter", "SendEvent, limiter"}
	calls := []func() error{check, sendOn(ccOff), sendOn(ccOn)}
	byKind := make([][]phase, len(names))
	fmt.Println("| round | phase | req/s | p50 | p99 | CPU/call | errors |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for r := 1; r <= *rounds; r++ {
		for _, k := range order(r) {
			p := measure(*concurrency, *warmup, *duration, calls[k])
			byKind[k] = append(byKind[k], p)
			fmt.Printf("| %d | %s | %s |\n", r, names[k], p.row())
		}
	}
	tot := make([]phase, len(names))
	for k := range names {
		tot[k] = total(byKind[k])
		fmt.Printf("| all | %s | %s |\n", names[k], tot[k].row())
	}
	off, on := tot[1], tot[2]
	fmt.Printf("\nlimiter cost per call: %+.2f µs CPU (%.3fx), %+.0f µs p50, %+.0f µs p99; throughput %.3fx\n",
		us(on.cpu-off.cpu), float64(on.cpu)/float64(off.cpu), us(on.p50-off.p50), us(on.p99-off.p99), on.rps/off.rps)
	// Within a round the two phases are seconds apart, so their difference
	// is less exposed to the box's load changing between rounds.
	diffs := make([]time.Duration, 0, *rounds)
	fmt.Print("paired by round (limiter - no limiter), CPU per call:")
	for r := range byKind[1] {
		d := byKind[2][r].cpu - byKind[1][r].cpu
		diffs = append(diffs, d)
		fmt.Printf(" %+.2f µs", us(d))
	}
	fmt.Printf("; median %+.2f µs\n", us(median(diffs)))
	for _, c := range set.Snapshot() {
		fmt.Printf("limiter %q: allowed %d, limited %d, errors %d\n", c.Limiter, c.Allowed, c.Limited, c.Errors)
	}
}

// order runs the two SendEvent phases A/B in odd rounds and B/A in even
// ones, so a load that drifts within a round does not always favour the
// same server.
func order(round int) []int {
	if round%2 == 0 {
		return []int{0, 2, 1}
	}
	return []int{0, 1, 2}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

type phase struct {
	rps      float64
	p50, p99 time.Duration
	cpu      time.Duration // process CPU per completed call
	calls    int
	errs     int64
	firstErr string
}

func (p phase) row() string {
	s := fmt.Sprintf("%.0f | %.0f µs | %.0f µs | %.2f µs | %d", p.rps, us(p.p50), us(p.p99), us(p.cpu), p.errs)
	if p.firstErr != "" {
		s += " (" + p.firstErr + ")"
	}
	return s
}

// total combines rounds: mean req/s, CPU per call weighted by calls, and the
// median of the rounds' p50 and p99 (latencies are not kept across rounds).
func total(ps []phase) phase {
	var out phase
	var cpu float64
	p50s, p99s := make([]time.Duration, 0, len(ps)), make([]time.Duration, 0, len(ps))
	for _, p := range ps {
		out.rps += p.rps / float64(len(ps))
		out.calls += p.calls
		out.errs += p.errs
		cpu += float64(p.calls) * float64(p.cpu)
		p50s, p99s = append(p50s, p.p50), append(p99s, p.p99)
	}
	if out.calls > 0 {
		out.cpu = time.Duration(cpu / float64(out.calls))
	}
	out.p50, out.p99 = median(p50s), median(p99s)
	return out
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// measure runs c closed-loop callers for warmup + d and reports the calls
// completed during d.
func measure(c int, warmup, d time.Duration, call func() error) phase {
	r := loadgen.Run(c, warmup, d, func(int) error { return call() }, loadgen.SelfCPU)
	p := phase{errs: r.Errors, calls: int(r.Calls), firstErr: r.FirstError}
	if r.Calls > 0 {
		p.rps, p.p50, p.p99 = r.RPS, r.P50, r.P99
		// Includes calls that errored or were in flight at the edges of the
		// window: a rounding difference with no errors.
		p.cpu = r.CPU[0] / time.Duration(r.Calls)
	}
	return p
}
