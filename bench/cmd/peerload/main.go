//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	edgebench "github.com/milequest/pushercm/bench/edge"
	"github.com/milequest/pushercm/bench/loadgen"
	"github.com/milequest/pushercm/bench/peers"
)

var (
	idleConns    = flag.Int("idle", 10000, "connections of the idle run")
	rounds       = flag.Int("rounds", 3, "rounds; each runs every scenario once on every server")
	fanDuration  = flag.Duration("duration", 4*time.Second, "publishing time of the fan-out runs")
	callDuration = flag.Duration("call-duration", 3*time.Second, "measured time of the gRPC and HTTP call runs")
	warmup       = flag.Duration("warmup", time.Second, "unmeasured time before a call run")
	callers      = flag.Int("c", 50, "concurrent callers of the call runs")
	grpcConns    = flag.Int("conns", 2, "gRPC connections the callers share")
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "hold" {
		hold(os.Args[2:])
		return
	}
	var (
		pushercmBin    = flag.String("pushercm", "", "pushercm binary (default: built from this module)")
		pushercmConf   = flag.String("pushercm-config", "bench/peers/pushercm/pushercm.yaml", "pushercm configuration")
		centrifugoBin  = flag.String("centrifugo", "bin/peers/centrifugo", "centrifugo binary (left out when missing)")
		centrifugoConf = flag.String("centrifugo-config", "bench/peers/centrifugo/config.json", "Centrifugo configuration")
		soketiBin      = flag.String("soketi", "bench/peers/soketi/node_modules/.bin/soketi", "soketi launcher (left out when missing)")
		soketiConf     = flag.String("soketi-config", "bench/peers/soketi/config.json", "soketi configuration")
		scenarios      = flag.String("scenarios", "idle,burst1000,fan2000,fan100x10,grpc0,grpc100,http0,http100", "runs, in order")
		write          = flag.String("write", "", "append the dated table to this Markdown file (BENCHMARKS.md)")
		notes          = flag.String("notes", "", "lines for the written section (install times, peers left out and why); \\n separates lines")
		timeout        = flag.Duration("timeout", 12*time.Minute, "stop everything after this long")
		capacity       = flag.Bool("capacity", false, "check the capacity model instead (see the package comment)")
		capProcs       = flag.Int("capacity-procs", 3, "pushercm processes of -capacity")
		capConns       = flag.Int("capacity-conns", 19000, "connections per process of -capacity")
		capRate        = flag.Int("capacity-rate", 100, "events/s of -capacity, spread over 100 channels per process")
		clusterMode    = flag.Bool("cluster", false, "run the cluster comparison instead (issue 15; see the package comment)")
		clusterScs     = flag.String("cluster-scenarios", "a,b,burst1000", "runs of -cluster, in order")
		redisAddr      = flag.String("redis", "", "Redis of -cluster (host:port); default: a redis-server of the run's own")
		redisBin       = flag.String("redis-server", "redis-server", "redis-server command of -cluster when -redis is not set")
		baseline       = flag.String("baseline-pushercm", "", "-cluster: also run this pushercm binary (built before cluster mode) on one node")
	)
	flag.Parse()
	lim, err := edgebench.RaiseNoFile()
	if err != nil {
		log.Fatal(err)
	}
	time.AfterFunc(*timeout, func() {
		// The servers die with this process (Pdeathsig).
		log.Printf("peerload: -timeout %s reached, stopping", *timeout)
		os.Exit(2)
	})
	dir, err := os.MkdirTemp("", "peerload-")
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if *pushercmBin == "" {
		if *pushercmBin, err = peers.Build(dir); err != nil {
			log.Fatal(err)
		}
	}
	pcm := peers.Pushercm{Bin: *pushercmBin, Config: *pushercmConf}
	if *capacity {
		runCapacity(pcm, *capProcs, *capConns, *capRate)
		return
	}
	if *clusterMode {
		var cent *peers.Centrifugo
		if _, err := os.Stat(*centrifugoBin); err == nil {
			cent = &peers.Centrifugo{Bin: *centrifugoBin, Config: *centrifugoConf}
		} else {
			*notes += `\nCentrifugo left out: ` + *centrifugoBin + " is missing."
		}
		rp, rc := startClusterRedis(*redisBin, *redisAddr)
		runClusterMode(clusterDeployments(pcm, cent, rc.Addr, *baseline), rc, rp != nil, strings.Split(*clusterScs, ","), *write, *notes)
		rc.Close()
		if rp != nil {
			rp.Stop()
		}
		return
	}
	list := []peers.Peer{pcm}
	var left []string
	if _, err := os.Stat(*centrifugoBin); err == nil {
		list = append(list, peers.Centrifugo{Bin: *centrifugoBin, Config: *centrifugoConf})
	} else {
		left = append(left, "Centrifugo left out: "+*centrifugoBin+" is missing.")
	}
	if _, err := os.Stat(*soketiBin); err == nil {
		list = append(list, peers.Soketi{Bin: *soketiBin, Config: *soketiConf})
	} else {
		left = append(left, "soketi left out: "+*soketiBin+" is missing.")
	}
	m := machine()
	fmt.Printf("# peerload: %s nofile=%d rounds=%d\n", m, lim, *rounds)
	for _, l := range left {
		fmt.Println("# " + l)
	}
	started := time.Now().UTC()
	res := newResults()
	scs := strings.Split(*scenarios, ",")
	for r := 0; r < *rounds; r++ {
		for _, sc := range scs {
			for i := range list {
				p := list[(i+r)%len(list)]
				line, figs, err := runOne(p, sc)
				if err != nil {
					line = "error: " + err.Error()
				}
				fmt.Printf("round %d %-10s %-18s %s\n", r+1, sc, p.Name(), line)
				res.add(p.Name(), sc, figs, fmt.Sprintf("round %d %s %s: %s", r+1, sc, p.Name(), line))
			}
		}
	}
	names := make([]string, len(list))
	for i, p := range list {
		names[i] = p.Name()
	}
	table := res.table(names)
	fmt.Print("\n" + table)
	if *write != "" {
		var ns []string
		if *notes != "" {
			ns = strings.Split(strings.ReplaceAll(*notes, `\n`, "\n"), "\n")
		}
		for _, l := range left {
			// The install step's own note says more.
			if !strings.Contains(*notes, l[:strings.Index(l, " ")]+" left out") {
				ns = append(ns, l)
			}
		}
		if err := appendSection(*write, started, m, ns, table, res.lines); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("# appended to %s\n", *write)
	}
}

// runOne starts p afresh, runs scenario sc against it and stops it.
func runOne(p peers.Peer, sc string) (string, map[string]float64, error) {
	proc, err := p.Start()
	if err != nil {
		return "", nil, err
	}
	defer proc.Stop()
	time.Sleep(300 * time.Millisecond) // let start-up work settle before a baseline
	switch sc {
	case "idle":
		return runIdle(p, proc, *idleConns)
	case "burst1000":
		return runFan(p, proc, 1, 1000, 0, *fanDuration)
	case "fan2000":
		return runFan(p, proc, 1, 2000, 100, *fanDuration)
	case "fan100x10":
		return runFan(p, proc, 100, 10, 1000, *fanDuration)
	case "grpc0", "grpc100", "http0", "http100":
		subs := 0
		if strings.HasSuffix(sc, "100") {
			subs = 100
		}
		return runCalls(p, proc, strings.HasPrefix(sc, "grpc"), subs)
	}
	return "", nil, fmt.Errorf("unknown scenario %q", sc)
}

// connectMany opens n subscribers of p with 64 dialers, subscriber i to
// channel(i); it gives up on the rest after 60 s.
func connectMany(p peers.Peer, proc *peers.Proc, n int, channel func(int) string) ([]net.Conn, time.Duration, error) {
	conns := make([]net.Conn, n)
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := p.Subscribe(ctx, proc, channel(i))
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	out := slices.DeleteFunc(conns, func(c net.Conn) bool { return c == nil })
	if f := failed.Load(); f > 0 || len(out) < n {
		for _, c := range out {
			_ = c.Close()
		}
		e, _ := firstErr.Load().(string)
		return nil, el, fmt.Errorf("%d of %d subscribers connected (first error: %s)", len(out), n, e)
	}
	return out, el, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

func runIdle(p peers.Peer, proc *peers.Proc, n int) (string, map[string]float64, error) {
	base, _ := edgebench.RSS(proc.PID)
	cpu0 := cpuOf([]int{proc.PID})
	conns, el, err := connectMany(p, proc, n, func(i int) string { return "idle-" + strconv.Itoa(i%100) })
	if err != nil {
		return "", nil, err
	}
	cpu := cpuOf([]int{proc.PID}) - cpu0
	defer closeAll(conns)
	time.Sleep(3 * time.Second)
	rss, err := edgebench.RSS(proc.PID)
	if err != nil {
		return "", nil, err
	}
	k := float64(len(conns))
	perConn := float64(rss-base) / k / 1024
	rate := k / el.Seconds()
	return fmt.Sprintf("connections=%d connect_time=%s rate=%.0f/s server_cpu=%.1fus/conn rss_base=%.1fMiB rss=%.1fMiB (%.2f KiB/conn)",
			len(conns), el.Round(time.Millisecond), rate, float64(cpu.Microseconds())/k, mib(base), mib(rss), perConn),
		map[string]float64{figRSS: perConn, figConnRate: rate}, nil
}

type gcCount struct {
	n     uint32
	pause time.Duration
}

// clientGC is this process's collections and their total pause so far.
func clientGC() gcCount {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return gcCount{m.NumGC, time.Duration(m.PauseTotalNs)}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func newReceiver(p peers.Peer, lat *edgebench.Latencies) (*edgebench.Receiver, error) {
	if f := p.Framing(); f != nil {
		return edgebench.NewReceiverFor(2, lat, f)
	}
	return edgebench.NewReceiver(2, lat)
}

// runFan: channels x subs subscribers; rate events/s over the channels
// round-robin, or as fast as accepted (rate 0) on channel 0.
func runFan(p peers.Peer, proc *peers.Proc, channels, subs, rate int, d time.Duration) (string, map[string]float64, error) {
	r, err := runFanOn(fanSetup{p: p, sub: proc, pub: proc, cpu: []int{proc.PID}, throttle: true}, channels, subs, rate, d)
	if err != nil {
		return "", nil, err
	}
	figs := map[string]float64{}
	switch {
	case rate == 0:
		figs[figBurst], figs[figCPUMsg] = r.deliv, r.cpuPerMsg
	case channels == 1:
		figs[figFan2000], figs[figFan2000Rate] = r.p99.Seconds()*1000, r.evRate
	default:
		figs[figFan100], figs[figFan100Rate] = r.p99.Seconds()*1000, r.evRate
	}
	if r.got < r.expected {
		figs[figLoss] = float64(r.expected - r.got)
	}
	return r.line, figs, nil
}

// fanSetup is where a fan-out run connects, publishes and measures.
type fanSetup struct {
	p        peers.Peer
	sub, pub *peers.Proc // the subscribers' server and the publishers'
	cpu      []int       // the servers whose CPU time is counted
	// throttle pauses the as-fast-as-accepted publishers while the
	// subscribers are more than 50 events behind; without it they publish
	// as fast as the server accepts, whatever the subscribers receive.
	throttle bool
	// redis, when set, is the shared Redis whose INFO commandstats is taken
	// before and after the publishing.
	redis *peers.Redis
}

type fanResult struct {
	line                     string
	published, expected, got int64
	dropped                  int64
	evRate, deliv, cpuPerMsg float64
	p50, p99, max            time.Duration
	// cmdsPerPub is Redis' commands (all clients, INFO left out) per
	// accepted event, and pubsPerPub its PUBLISH and SPUBLISH alone; -1
	// without a Redis.
	cmdsPerPub, pubsPerPub float64
	// scriptsPerPub is the script calls (EVALSHA, EVAL, FCALL) per accepted
	// event: the commands run inside a script count in cmdsPerPub too.
	scriptsPerPub float64
}

func cpuOf(pids []int) time.Duration {
	var t time.Duration
	for _, pid := range pids {
		c, _ := edgebench.CPUTime(pid)
		t += c
	}
	return t
}

func runFanOn(s fanSetup, channels, subs, rate int, d time.Duration) (fanResult, error) {
	r := fanResult{cmdsPerPub: -1, pubsPerPub: -1, scriptsPerPub: -1}
	chName := func(i int) string { return "fan-" + strconv.Itoa(i%channels) }
	conns, el, err := connectMany(s.p, s.sub, channels*subs, chName)
	if err != nil {
		return r, err
	}
	lat := &edgebench.Latencies{}
	recv, err := newReceiver(s.p, lat)
	if err != nil {
		closeAll(conns)
		return r, err
	}
	for i, c := range conns {
		if err := recv.AddConn(i, c); err != nil {
			recv.Close()
			return r, err
		}
	}
	received, lastRecv := &recv.Received, &recv.LastRecv
	perChannel := int64(subs)
	pub := s.p.Publisher(s.pub)
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	behind := func(published int64) bool { return published*perChannel-received.Load() > 50*perChannel }
	if !s.throttle {
		behind = func(int64) bool { return false }
	}
	var stats0 map[string]int64
	if s.redis != nil {
		if stats0, err = s.redis.CommandStats(); err != nil {
			recv.Close()
			return r, fmt.Errorf("redis INFO commandstats: %w", err)
		}
	}
	// Paced runs also split each request's latency into its first and last
	// delivery (see edgebench.Spans).
	var spans *edgebench.Spans
	if rate > 0 {
		spans = &edgebench.Spans{}
		recv.TrackSpans(spans)
	}
	// Collect the set-up's garbage (a thousand handshakes) now, so that the
	// tool's own collections fall in the measured time as little as they
	// can, whichever server it measures.
	runtime.GC()
	cpu0 := cpuOf(s.cpu)
	gc0 := clientGC()
	start := time.Now()
	published, pubErr := edgebench.Drive(ctx, start.Add(d), rate, chName, behind, pub.Publish)
	pubEnd := time.Now()
	expected := published * perChannel
	wait := time.Now().Add(10 * time.Second)
	for received.Load() < expected && time.Now().Before(wait) {
		time.Sleep(10 * time.Millisecond)
	}
	got := received.Load()
	cpu1 := cpuOf(s.cpu)
	gc1 := clientGC()
	cmdLine := ""
	if s.redis != nil {
		stats1, err := s.redis.CommandStats()
		if err != nil {
			recv.Close()
			return r, fmt.Errorf("redis INFO commandstats: %w", err)
		}
		var all, pubs, scripts int64
		type kv struct {
			k string
			v int64
		}
		var top []kv
		for k, v := range stats1 {
			dv := v - stats0[k]
			if dv == 0 {
				continue
			}
			all += dv
			switch k {
			case "publish", "spublish":
				pubs += dv
			case "evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro":
				scripts += dv
			}
			top = append(top, kv{k, dv})
		}
		slices.SortFunc(top, func(a, b kv) int { return int(b.v - a.v) })
		var parts []string
		for _, t := range top[:min(len(top), 5)] {
			parts = append(parts, fmt.Sprintf("%s:%d", t.k, t.v))
		}
		r.cmdsPerPub = float64(all) / float64(max(published, 1))
		r.pubsPerPub = float64(pubs) / float64(max(published, 1))
		r.scriptsPerPub = float64(scripts) / float64(max(published, 1))
		cmdLine = fmt.Sprintf(" redis_cmds=%d (%.2f/event, PUBLISH %.2f/event, script calls %.2f/event; top %s)",
			all, r.cmdsPerPub, r.pubsPerPub, r.scriptsPerPub, strings.Join(parts, " "))
	}
	span := time.Duration(lastRecv.Load() - start.UnixNano())
	dropped := recv.Closed.Load()
	recv.Close()
	p50, p99, mx, n := lat.Percentiles()
	evRate := float64(published) / pubEnd.Sub(start).Seconds()
	deliv := float64(got) / span.Seconds()
	cpuPerMsg := float64((cpu1 - cpu0).Microseconds()) / float64(max(got, 1))
	line := fmt.Sprintf("clients=%d connect_rate=%.0f/s published=%d (%.0f ev/s) expected=%d received=%d loss=%d dropped_clients=%d delivered=%.0f msg/s p50=%s p99=%s max=%s samples=%d server_cpu=%.2fus/msg",
		len(conns), float64(len(conns))/el.Seconds(), published, evRate, expected, got, expected-got, dropped, deliv,
		p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), mx.Round(10*time.Microsecond), n, cpuPerMsg)
	// The load tool's own collections during the run: its receive loops
	// stop for their pauses, which a latency tail may show.
	line += fmt.Sprintf(" client_gc=%d (%s paused)", gc1.n-gc0.n, (gc1.pause - gc0.pause).Round(time.Microsecond))
	if spans != nil {
		// recv.Close has flushed every loop's spans.
		if sum := spans.Summary(); sum.Requests > 0 {
			us := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
			line += fmt.Sprintf(" per_request: first p50=%s p99=%s last p50=%s p99=%s (%d requests)",
				us(sum.FirstP50), us(sum.FirstP99), us(sum.LastP50), us(sum.LastP99), sum.Requests)
		}
	}
	line += cmdLine
	if e := pubErr; e != nil {
		line += " publish_error=" + e.Error()
	}
	r.line, r.published, r.expected, r.got, r.dropped = line, published, expected, got, int64(dropped)
	r.evRate, r.deliv, r.cpuPerMsg, r.p50, r.p99, r.max = evRate, deliv, cpuPerMsg, p50, p99, mx
	return r, nil
}

// runCalls measures the publish call (gRPC or HTTP) with subs subscribers on
// its channel.
func runCalls(p peers.Peer, proc *peers.Proc, grpc bool, subs int) (string, map[string]float64, error) {
	var call func(w int) error
	if grpc {
		g := p.GRPC(proc)
		if g == nil {
			return "no gRPC publish API", nil, nil
		}
		cl, err := g.Client(*grpcConns)
		if err != nil {
			return "", nil, err
		}
		defer cl.Close()
		req := g.Request("calls-0", edgebench.Now())
		call = func(w int) error { return cl.Call(w, req) }
	} else {
		pub := p.Publisher(proc)
		call = func(int) error {
			return pub.Publish(context.Background(), []edgebench.Event{{Channel: "calls-0", Name: "bench", Data: edgebench.Now()}})
		}
	}
	var recv *edgebench.Receiver
	if subs > 0 {
		conns, _, err := connectMany(p, proc, subs, func(int) string { return "calls-0" })
		if err != nil {
			return "", nil, err
		}
		lat := &edgebench.Latencies{}
		if recv, err = newReceiver(p, lat); err != nil {
			closeAll(conns)
			return "", nil, err
		}
		defer recv.Close()
		for i, c := range conns {
			if err := recv.AddConn(i, c); err != nil {
				return "", nil, err
			}
		}
	}
	runtime.GC() // as in runFanOn
	r := loadgen.Run(*callers, *warmup, *callDuration, call, loadgen.ProcessCPU(proc.PID))
	cpuPerCall := float64(r.CPU[0].Microseconds()) / float64(max(r.Calls, 1))
	line := fmt.Sprintf("calls=%d errors=%d %.0f calls/s p50=%s p99=%s server_cpu=%.1fus/call",
		r.Calls, r.Errors, r.RPS, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), cpuPerCall)
	if r.FirstError != "" {
		line += " first_error=" + strconv.Quote(r.FirstError)
	}
	if recv != nil {
		// Let the last deliveries arrive before counting.
		time.Sleep(300 * time.Millisecond)
		line += fmt.Sprintf(" delivered=%d", recv.Received.Load())
	}
	figs := map[string]float64{}
	key := map[[2]bool]string{{true, false}: figGRPC0, {true, true}: figGRPC100, {false, false}: figHTTP0, {false, true}: figHTTP100}[[2]bool{grpc, subs > 0}]
	if r.Errors == 0 || r.Calls > 0 {
		figs[key] = r.RPS
		figs[key+" p99"] = r.P99.Seconds() * 1000
		switch {
		case grpc && subs == 0:
			figs[figCPUCall] = cpuPerCall
		case subs == 0:
			// The client's own work differs by API (a Pusher request is
			// signed with HMAC-SHA256 and MD5, Centrifugo's carries a key)
			// and shares the cores, so the calls/s row is partly the
			// client's; this one is the server's alone.
			figs[figCPUHTTP] = cpuPerCall
		}
	}
	return line, figs, nil
}

func machine() string {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	load, _ := os.ReadFile("/proc/loadavg")
	la := strings.Fields(string(load))
	if len(la) > 3 {
		la = la[:3]
	}
	return fmt.Sprintf("nproc=%d kernel=%s go=%s loadavg=%s", runtime.NumCPU(), strings.TrimSpace(string(kernel)), runtime.Version(), strings.Join(la, ","))
}
