// Command authload measures AuthService/AuthorizeChannel against the
// cheapest RPC on the same server in the same run (issue 4): closed-loop
// callers on the generated stubs alternate phases of
//
//   - grpc.health.v1.Health/Check (no token, no work: the gRPC floor), and
//   - AuthService/AuthorizeChannel (service token check in the interceptor,
//     user token verification, rule decision, HMAC signature, presence
//     channel_data, span and decision counter),
//
// and prints requests/s and caller-side p50/p99 per phase, then the ratio
// of the means (issue 4's target: AuthorizeChannel >= 0.8x Check, p99 <=
// 10 ms), over all rounds. Phases alternate so a noisy neighbour on the
// shared box hurts both; CPU time per call (server process and load
// generator) is reported too, as it moves much less with such noise.
//
//	go run ./bench/cmd/authload                    # builds and spawns pushercm serve --dev
//	go run ./bench/cmd/authload -addr 127.0.0.1:50051   # a running dev server
//
//	go run ./bench/cmd/authload -ghz -c 16          # ghz as the load generator
//
// The load generator runs on the same machine as the server. With -ghz it is
// ghz itself (the tool issue 4 names, installed at loadgen.GHZVersion), one
// ghz run per phase with one user token (the service caches verified tokens
// either way); otherwise the built-in callers on the generated stubs, which
// cost the shared CPUs much less per call than ghz and so give a stricter
// ratio.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/bench/loadgen"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

func main() {
	var (
		addr        = flag.String("addr", "", "gRPC address of a running dev server (default: build and spawn pushercm serve --dev)")
		secret      = flag.String("jwt-secret", config.DevJWTSecret, "HS256 secret to mint the user tokens with")
		svcSecret   = flag.String("service-secret", config.DevServiceSecret, "HS256 secret to mint the service token with (jwt.service.secret)")
		duration    = flag.Duration("duration", 10*time.Second, "measuring time per phase")
		warmup      = flag.Duration("warmup", 2*time.Second, "unmeasured time before each phase")
		concurrency = flag.Int("c", 50, "concurrent callers")
		conns       = flag.Int("conns", 1, "gRPC connections the callers share (ghz uses 1)")
		users       = flag.Int("users", 1000, "distinct user tokens, used round-robin (each is verified once, then cached)")
		channel     = flag.String("channel", "presence-team-t1", "channel to authorize; users are members of team t1")
		rounds      = flag.Int("rounds", 2, "check/authorize phase pairs")
		pid         = flag.Int("pid", 0, "pid of the server given with -addr, for its CPU time")
		noHeaders   = flag.Bool("no-ratelimit-headers", false, "spawn the server with rateLimit.headers: false (no x-ratelimit-* headers on admitted calls)")
		useGHZ      = flag.Bool("ghz", false, "drive the calls with ghz "+loadgen.GHZVersion+" (installed with go install) instead of the built-in callers; one user token")
	)
	flag.Parse()

	if *addr == "" {
		// One web-app principal calls AuthorizeChannel for every user, so the
		// default per-principal limit (1000/s) would refuse most of the load.
		// Lift it for the measurement: the limiter still runs on every call.
		conf := liftedLimits
		if *noHeaders {
			conf += "  headers: false\n"
		}
		srv := loadgen.Spawn(conf)
		defer srv.Stop()
		*addr, *pid = srv.GRPCAddr, srv.PID
	}
	svcToken, err := authz.Mint([]byte(*svcSecret), authz.MintOptions{Subject: "authload", Scopes: []string{"channels:authorize"}, TTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	tokens := make([]string, *users)
	for i := range tokens {
		tokens[i], err = authz.Mint([]byte(*secret), authz.MintOptions{
			Subject: fmt.Sprintf("user-%d", i), Teams: []string{"t1"}, Name: fmt.Sprintf("User %d", i), TTL: time.Hour,
		})
		if err != nil {
			log.Fatal(err)
		}
	}

	cc := make([]*grpc.ClientConn, *conns)
	for i := range cc {
		cc[i], err = grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			log.Fatal(err)
		}
		defer func(c *grpc.ClientConn) { _ = c.Close() }(cc[i])
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+svcToken)
	var next atomic.Uint64

	check := func(w int) error {
		_, err := healthpb.NewHealthClient(cc[w%len(cc)]).Check(context.Background(), &healthpb.HealthCheckRequest{})
		return err
	}
	authClients := make([]pushercmv1.AuthServiceClient, len(cc))
	for i := range cc {
		authClients[i] = pushercmv1.NewAuthServiceClient(cc[i])
	}
	authorize := func(w int) error {
		n := next.Add(1)
		_, err := authClients[w%len(cc)].AuthorizeChannel(ctx, &pushercmv1.AuthorizeChannelRequest{
			SocketId: "1234.5678", ChannelName: *channel, Token: tokens[n%uint64(len(tokens))],
		})
		return err
	}
	// Make sure the call works before measuring it.
	if err := authorize(0); err != nil {
		log.Fatalf("AuthorizeChannel: %v", err)
	}

	if *useGHZ {
		bin, cleanup, err := loadgen.InstallGHZ()
		if err != nil {
			log.Fatal(err)
		}
		defer cleanup()
		data, err := json.Marshal(map[string]string{"socket_id": "1234.5678", "channel_name": *channel, "token": tokens[0]})
		if err != nil {
			log.Fatal(err)
		}
		g := loadgen.GHZ{Bin: bin, Addr: *addr, C: *concurrency, Conns: *conns}
		checkGHZ, authGHZ := g, g
		checkGHZ.Call = "grpc.health.v1.Health/Check"
		authGHZ.Call, authGHZ.Data = "pushercm.v1.AuthService/AuthorizeChannel", string(data)
		authGHZ.Metadata = map[string]string{"authorization": "Bearer " + svcToken}
		*users = 1
		measurePhase = func(name string, _ func(int) error) phase {
			call := checkGHZ
			if name != checkPhase {
				call = authGHZ
			}
			r, err := call.Run(*warmup, *duration, loadgen.ProcessCPU(*pid), loadgen.SelfCPU)
			if err != nil {
				log.Fatal(err)
			}
			// The load generator's CPU is ghz's plus this process's (idle).
			r.CPU = []time.Duration{r.CPU[0], r.CPU[1] + r.CPU[2]}
			p := fromResult(r)
			p.name = name
			return p
		}
		fmt.Printf("authload: load generator ghz %s\n", loadgen.GHZVersion)
	} else {
		measurePhase = func(name string, call func(int) error) phase {
			return measure(name, *concurrency, *warmup, *duration, *pid, call)
		}
	}
	fmt.Printf("authload: %s, -c %d, -conns %d, %d user tokens, channel %s, %s per phase (+%s warmup)\n",
		*addr, *concurrency, *conns, *users, *channel, *duration, *warmup)
	fmt.Printf("%-18s %10s %9s %9s %11s %11s %7s\n", "phase", "req/s", "p50", "p99", "server-cpu", "client-cpu", "errors")
	var checks, auths []phase
	for r := 0; r < *rounds; r++ {
		p := measurePhase(checkPhase, check)
		p.print()
		checks = append(checks, p)
		p = measurePhase("AuthorizeChannel", authorize)
		p.print()
		auths = append(auths, p)
	}
	c, a := total(checks), total(auths)
	fmt.Printf("over %d rounds: Check %.0f req/s, AuthorizeChannel %.0f req/s: ratio %.2f (target >= 0.80); AuthorizeChannel p99 %s, Check p99 %s (target <= 10ms)\n",
		*rounds, c.rps, a.rps, a.rps/c.rps, a.p99.Round(10*time.Microsecond), c.p99.Round(10*time.Microsecond))
	if len(checks) > 1 {
		// Each pair ran back to back, so it saw the same machine speed; the
		// median pair is the figure least moved by drift between rounds.
		ratios := make([]float64, len(checks))
		for i := range checks {
			ratios[i] = auths[i].rps / checks[i].rps
		}
		fmt.Printf("per pair: min %.2f, median %.2f, max %.2f\n", slices.Min(ratios), loadgen.Median(ratios), slices.Max(ratios))
	}
	if a.serverCPU > 0 {
		// With the two CPUs to themselves, server and load generator would
		// complete calls at a rate inversely proportional to their CPU per call.
		fmt.Printf("CPU per call (server+client): Check %s, AuthorizeChannel %s; CPU-bound ratio %.2f\n",
			(c.serverCPU + c.clientCPU).Round(100*time.Nanosecond), (a.serverCPU + a.clientCPU).Round(100*time.Nanosecond),
			float64(c.serverCPU+c.clientCPU)/float64(a.serverCPU+a.clientCPU))
	}
}

type phase struct {
	name     string
	rps      float64
	p50, p99 time.Duration
	errs     int64
	firstErr string
	// CPU time per completed call: the server process's (when its pid is
	// known) and this process's (the load generator). Unlike req/s these do
	// not move when other jobs take the shared CPUs.
	serverCPU, clientCPU time.Duration
}

func (p phase) print() {
	fmt.Printf("%-18s %10.0f %9s %9s %11s %11s %7d", p.name, p.rps, p.p50.Round(time.Microsecond), p.p99.Round(time.Microsecond),
		p.serverCPU.Round(100*time.Nanosecond), p.clientCPU.Round(100*time.Nanosecond), p.errs)
	if p.firstErr != "" {
		fmt.Printf("  first error: %s", p.firstErr)
	}
	fmt.Println()
}

// total combines the rounds of one kind: mean req/s and CPU per call
// weighted by calls, and the worst p99 (latencies are not kept across
// rounds).
func total(ps []phase) phase {
	var out phase
	var calls, srv, cli float64
	for _, p := range ps {
		out.rps += p.rps / float64(len(ps))
		calls += p.rps
		srv += p.rps * float64(p.serverCPU)
		cli += p.rps * float64(p.clientCPU)
		out.p99 = max(out.p99, p.p99)
	}
	if calls > 0 {
		out.serverCPU, out.clientCPU = time.Duration(srv/calls), time.Duration(cli/calls)
	}
	return out
}

const checkPhase = "Health/Check"

// measurePhase measures one phase with the chosen load generator.
var measurePhase func(name string, call func(worker int) error) phase

// measure runs c closed-loop callers for warmup + d and reports the calls
// completed during d.
func measure(name string, c int, warmup, d time.Duration, pid int, call func(worker int) error) phase {
	p := fromResult(loadgen.Run(c, warmup, d, call, loadgen.ProcessCPU(pid), loadgen.SelfCPU))
	p.name = name
	return p
}

// fromResult is the phase of a measured window whose CPU probes were the
// server's and the load generator's.
func fromResult(r loadgen.Result) phase {
	p := phase{errs: r.Errors, firstErr: r.FirstError}
	if r.Calls > 0 {
		p.rps, p.p50, p.p99 = r.RPS, r.P50, r.P99
		// The CPU over the window includes calls that errored or were in
		// flight at its edges; with no errors that is a rounding difference.
		p.serverCPU = r.CPU[0] / time.Duration(r.Calls)
		p.clientCPU = r.CPU[1] / time.Duration(r.Calls)
	}
	return p
}

// liftedLimits is the spawned server's config file.
const liftedLimits = `rateLimit:
  limiters:
    principal:
      messagesPerSecond: 10000000
      messagesPerMinute: 1000000000
      burstLimit: 10000000
    user: {}
    method:
      unlimited: true
`
