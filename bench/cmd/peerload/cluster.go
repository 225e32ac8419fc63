//go:build linux

package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/milequest/pushercm/bench/peers"
)

// The cluster comparison (issue 15, "Performance"): three nodes of each
// server on one Redis, subscribers on node 0, events published through node
// 2's HTTP API, so every delivery crosses Redis; the same scenarios on one
// node without Redis as the baseline.
// The deployments the verdicts compare.
const pcName, cfName = "pushercm ×3 (Redis)", "Centrifugo ×3 (Redis)"

const (
	scClusterA = "a" // 1 channel x 2000 subscribers at 100 events/s
	scClusterB = "b" // 1 channel x 1000 subscribers, as fast as accepted, unthrottled
	// burst1000 of the peer table: B with the publishers paused while the
	// subscribers are 50 events behind (throughput, not the slow-consumer
	// cut-off).
	scClusterBurst = "burst1000"
)

// Figures of the cluster table, by the row that shows them.
const (
	figCAp99     = "A: 1 × 2000 at 100 ev/s, p99 (publish → received)"
	figCAp50     = "A: p50"
	figCARate    = "A: events/s reached"
	figCALoss    = "A: messages lost (sum over rounds)"
	figCAExp     = "A: messages expected (sum over rounds)"
	figCACmds    = "A: Redis commands per accepted event (those run inside scripts included)"
	figCAPubs    = "A: Redis PUBLISH per accepted event"
	figCAScripts = "A: Redis script calls (EVALSHA, FCALL) per accepted event"
	figCBRate    = "B: 1 × 1000 as fast as accepted, events/s accepted"
	figCBDeliv   = "B: messages delivered per second"
	figCBLoss    = "B: loss (% of expected)"
	figCBp99     = "B: p99 (publish → received)"
	figCBDropped = "B: subscribers closed by the server"
	figCBCmds    = "B: Redis commands per accepted event (those run inside scripts included)"
	figCBPubs    = "B: Redis PUBLISH per accepted event"
	figCBScripts = "B: Redis script calls (EVALSHA, FCALL) per accepted event"
	figCBCPU     = "B: CPU of all nodes per delivered message"
	figCCDeliv   = "burst1000 (B paused while 50 events behind): delivered msg/s"
	figCCCPU     = "burst1000: CPU of all nodes per delivered message"
	figCCLoss    = "burst1000: messages lost (sum over rounds)"
)

var clusterRows = []row{
	{fig: figCAp99, format: f1, unit: " ms", rate: figCARate, want: 100},
	{fig: figCAp50, format: f1, unit: " ms"},
	{fig: figCALoss, format: thousands, unit: ""},
	{fig: figCAExp, format: thousands, unit: ""},
	{fig: figCACmds, format: f2},
	{fig: figCAPubs, format: f2},
	{fig: figCAScripts, format: f2},
	{fig: figCBRate, format: thousands, unit: " ev/s"},
	{fig: figCBDeliv, format: kilo, unit: " msg/s"},
	{fig: figCBLoss, format: f1, unit: " %"},
	{fig: figCBp99, format: f1, unit: " ms"},
	{fig: figCBDropped, format: thousands},
	{fig: figCBCmds, format: f2},
	{fig: figCBPubs, format: f2},
	{fig: figCBScripts, format: f2},
	{fig: figCBCPU, format: f2, unit: " µs"},
	{fig: figCCDeliv, format: kilo, unit: " msg/s"},
	{fig: figCCCPU, format: f2, unit: " µs"},
	{fig: figCCLoss, format: thousands},
}

// sumRows are shown as the sum over the rounds, not a range.
var sumRows = map[string]bool{figCALoss: true, figCAExp: true, figCCLoss: true}

// deployment is one column of the cluster table: a server run as nodes
// processes, on a Redis of the run when nodes > 1.
type deployment struct {
	name  string
	peer  peers.Peer // subscribes, frames and publishes (for every node)
	nodes int
	// start starts node i of a deployment whose keys live under prefix.
	start func(i int, prefix string) (*peers.Proc, error)
}

// startClusterRedis is the Redis of the cluster runs: addr when set, else a
// redis-server (bin) of the run's own, whose process is returned to be
// stopped.
func startClusterRedis(bin, addr string) (*peers.Proc, *peers.Redis) {
	var rp *peers.Proc
	if addr == "" {
		var err error
		if rp, err = peers.StartRedis(bin); err != nil {
			fatalf("starting a redis-server of the run (%s): %v; pass -redis %s to use that one instead", bin, err, peers.DefaultRedisAddr)
		}
		addr = rp.APIAddr
	}
	rc, err := peers.DialRedis(addr)
	if err != nil {
		if rp != nil {
			rp.Stop()
		}
		fatalf("%v (the cluster runs need a Redis)", err)
	}
	return rp, rc
}

// runClusterMode runs the cluster comparison on rc (own: a redis-server of
// the run's own) and writes its section.
func runClusterMode(deps []deployment, rc *peers.Redis, own bool, scs []string, write, notes string) {
	redisAddr := rc.Addr
	m := machine()
	fmt.Printf("# peerload -cluster: %s redis=%s rounds=%d\n", m, redisAddr, *rounds)
	started := time.Now().UTC()
	res := newResults()
	for r := 0; r < *rounds; r++ {
		for _, sc := range scs {
			for i := range deps {
				d := deps[(i+r)%len(deps)]
				line, figs, err := runClusterOne(d, rc, sc)
				if err != nil {
					line = "error: " + err.Error()
				}
				fmt.Printf("round %d %-3s %-28s %s\n", r+1, sc, d.name, line)
				res.add(d.name, sc, figs, fmt.Sprintf("round %d %s %s: %s", r+1, sc, d.name, line))
			}
		}
	}
	names := make([]string, len(deps))
	for i, d := range deps {
		names[i] = d.name
	}
	// The ratios that matter: pushercm's cluster against Centrifugo's, and
	// against its own single node; the single node against the build
	// before cluster mode.
	var ratios [][2]string
	has := func(n string) bool { return slices.Contains(names, n) }
	for _, rt := range [][2]string{{pcName, cfName}, {pcName, "pushercm ×1"}, {"pushercm ×1", "pushercm ×1, before cluster"}} {
		if has(rt[0]) && has(rt[1]) {
			ratios = append(ratios, rt)
		}
	}
	table := res.tableOf(names, clusterRows, ratios)
	verdicts := clusterVerdicts(res, names)
	fmt.Print("\n" + table + "\n" + verdicts)
	if write == "" {
		return
	}
	var ns []string
	if notes != "" {
		ns = strings.Split(strings.ReplaceAll(notes, `\n`, "\n"), "\n")
	}
	redisNote := "Redis: a redis-server of the run's own (" + redisAddr + ", nothing on disk), so that INFO commandstats counts the nodes' commands only."
	if !own {
		redisNote = "Redis: " + redisAddr + ", shared with whatever else runs on the machine: the commands per event include other clients' commands."
	}
	ns = append([]string{redisNote}, ns...)
	title := "Cluster: fan-out across nodes through Redis, side by side: run of " + started.Format("2006-01-02 15:04") + " UTC"
	if err := appendSectionTitled(write, title, m, ns, table+"\n"+verdicts, res.lines); err != nil {
		fatalf("%v", err)
	}
	fmt.Printf("# appended to %s\n", write)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "peerload: "+format+"\n", args...)
	os.Exit(1)
}

// runClusterOne starts d's nodes afresh under a new prefix, runs scenario sc
// with the subscribers on node 0 and the publishers on the last node, and
// stops them.
func runClusterOne(d deployment, rc *peers.Redis, sc string) (string, map[string]float64, error) {
	prefix := peers.NewPrefix(strings.Fields(d.name)[0])
	var procs []*peers.Proc
	defer func() {
		for _, p := range procs {
			p.Stop()
		}
		if d.nodes > 1 {
			_ = rc.DeletePrefix(prefix)
		}
	}()
	for i := 0; i < d.nodes; i++ {
		p, err := d.start(i, prefix)
		if err != nil {
			return "", nil, fmt.Errorf("node %d: %w", i, err)
		}
		procs = append(procs, p)
	}
	time.Sleep(500 * time.Millisecond) // let the nodes register before a baseline
	s := fanSetup{p: d.peer, sub: procs[0], pub: procs[len(procs)-1]}
	for _, p := range procs {
		s.cpu = append(s.cpu, p.PID)
	}
	if d.nodes > 1 {
		s.redis = rc
	}
	var (
		r   fanResult
		err error
	)
	switch sc {
	case scClusterA:
		r, err = runFanOn(s, 1, 2000, 100, *fanDuration)
	case scClusterB:
		r, err = runFanOn(s, 1, 1000, 0, *fanDuration)
	case scClusterBurst:
		s.throttle = true
		r, err = runFanOn(s, 1, 1000, 0, *fanDuration)
	default:
		return "", nil, fmt.Errorf("unknown cluster scenario %q (a, b, burst1000)", sc)
	}
	if err != nil {
		return "", nil, err
	}
	line := r.line
	for i, p := range procs {
		if m := nodeMetrics(p); m != "" {
			line += fmt.Sprintf(" node%d{%s}", i, m)
		}
	}
	figs := map[string]float64{}
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 }
	switch sc {
	case scClusterA:
		figs[figCAp99], figs[figCAp50], figs[figCARate] = ms(r.p99), ms(r.p50), r.evRate
		figs[figCALoss], figs[figCAExp] = float64(r.expected-r.got), float64(r.expected)
		if r.cmdsPerPub >= 0 {
			figs[figCACmds], figs[figCAPubs], figs[figCAScripts] = r.cmdsPerPub, r.pubsPerPub, r.scriptsPerPub
		}
	case scClusterB:
		figs[figCBRate], figs[figCBDeliv], figs[figCBp99] = r.evRate, r.deliv, ms(r.p99)
		figs[figCBLoss] = 100 * float64(r.expected-r.got) / float64(max(r.expected, 1))
		figs[figCBDropped], figs[figCBCPU] = float64(r.dropped), r.cpuPerMsg
		if r.cmdsPerPub >= 0 {
			figs[figCBCmds], figs[figCBPubs], figs[figCBScripts] = r.cmdsPerPub, r.pubsPerPub, r.scriptsPerPub
		}
	case scClusterBurst:
		figs[figCCDeliv], figs[figCCCPU], figs[figCCLoss] = r.deliv, r.cpuPerMsg, float64(r.expected-r.got)
	}
	return line, figs, nil
}

// nodeMetric picks the counters of a pushercm node's /metrics that say where
// messages went: published, delivered, slow consumers closed, publishes held,
// and anything of the cluster engine or Redis that is not zero.
var nodeMetric = regexp.MustCompile(`^pushercm_(\w*(messages_published|messages_delivered|slow_consumer|publish_hold|publish_held|cluster|redis|dropped|lost|refused)\w*)(\{[^}]*\})? (\S+)$`)

func nodeMetrics(p *peers.Proc) string {
	if p.OpsAddr == "" {
		return ""
	}
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + p.OpsAddr + "/metrics")
	if err != nil {
		return "metrics: " + err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := nodeMetric.FindStringSubmatch(sc.Text())
		if m == nil || m[4] == "0" {
			continue
		}
		out = append(out, m[1]+m[3]+"="+m[4])
	}
	return strings.Join(out, " ")
}

// clusterVerdicts sets the figures of pushercm and Centrifugo in three nodes
// against issue 15's targets, round by round ("not measured" where one of
// them has no figure).
func clusterVerdicts(res *results, names []string) string {
	pc, cf := res.vals[pcName], res.vals[cfName]
	var b strings.Builder
	b.WriteString("| issue 15 target | figures (" + pcName + " / " + cfName + ") | verdict |\n|---|---|---|\n")
	add := func(target, figs, verdict string) {
		b.WriteString("| " + target + " | " + figs + " | " + verdict + " |\n")
	}
	rng := func(vs []float64, f func(float64) string) string {
		if len(vs) == 0 {
			return "—"
		}
		lo, hi := f(slices.Min(vs)), f(slices.Max(vs))
		if lo == hi {
			return lo
		}
		return lo + "–" + hi
	}
	// every is "met" when ok holds for every round's pair of figures.
	every := func(a, c []float64, ok func(a, c float64) bool) string {
		if len(a) < *rounds || len(c) < *rounds {
			return "not measured in every round"
		}
		for i := range a {
			if !ok(a[i], c[i]) {
				return "**not met**"
			}
		}
		return "met"
	}
	lossA, expA := sumOf(pc[figCALoss]), sumOf(pc[figCAExp])
	v := "met"
	if len(pc[figCAExp]) < *rounds {
		v = "not measured"
	} else if lossA > 0 {
		v = "**not met**"
	}
	add("A: zero loss", fmt.Sprintf("%s of %s lost / %s of %s", thousands(lossA), thousands(expA),
		thousands(sumOf(cf[figCALoss])), thousands(sumOf(cf[figCAExp]))), v)
	add("A: p99 ≤ 0.5× Centrifugo's (per round)", rng(pc[figCAp99], f1)+" ms / "+rng(cf[figCAp99], f1)+" ms",
		every(pc[figCAp99], cf[figCAp99], func(a, c float64) bool { return a <= 0.5*c }))
	add("B: delivered msg/s ≥ 1.0× Centrifugo's (per round)", rng(pc[figCBDeliv], kilo)+" / "+rng(cf[figCBDeliv], kilo),
		every(pc[figCBDeliv], cf[figCBDeliv], func(a, c float64) bool { return a >= c }))
	add("B: far less loss (read here: at most half of Centrifugo's %, per round)", rng(pc[figCBLoss], f1)+" % / "+rng(cf[figCBLoss], f1)+" %",
		every(pc[figCBLoss], cf[figCBLoss], func(a, c float64) bool { return a == 0 || a <= 0.5*c }))
	cmds := append(slices.Clone(pc[figCACmds]), pc[figCBCmds]...)
	v = "not measured"
	if len(pc[figCACmds]) > 0 && len(pc[figCBCmds]) > 0 {
		// 2000 and 1000 subscribers: the same count of commands per event,
		// to within half a command (the nodes' heartbeats weigh more at 100
		// events/s than at thousands).
		v = "met"
		if slices.Max(cmds)-slices.Min(cmds) >= 0.5 {
			v = "**not met**"
		}
	}
	add("Redis commands per publish constant whatever the subscribers (A: 2000, B: 1000)",
		"A "+rng(pc[figCACmds], f2)+", B "+rng(pc[figCBCmds], f2)+" / A "+rng(cf[figCACmds], f2)+", B "+rng(cf[figCBCmds], f2), v)
	// The single-node columns: this build, and the build before cluster
	// mode when -baseline-pushercm gave one.
	var one, before string
	for _, n := range names {
		switch {
		case strings.HasPrefix(n, "pushercm ×1") && strings.Contains(n, "before"):
			before = n
		case strings.HasPrefix(n, "pushercm ×1"):
			one = n
		}
	}
	if one != "" && before != "" {
		o, bf := res.vals[one], res.vals[before]
		within := func(a, c float64) bool { return a <= 1.05*c }
		within2 := func(a, c float64) bool { return a >= 0.95*c }
		add("Single node, no Redis: within 5 % of the build before cluster mode (A p99, per round)",
			rng(o[figCAp99], f1)+" ms / "+rng(bf[figCAp99], f1)+" ms ("+one+" / "+before+")", every(o[figCAp99], bf[figCAp99], within))
		add("Single node, no Redis: within 5 % (burst1000 delivered, per round)",
			rng(o[figCCDeliv], kilo)+" / "+rng(bf[figCCDeliv], kilo), every(o[figCCDeliv], bf[figCCDeliv], within2))
	} else if one != "" {
		add("Single node, no Redis: within 5 % of today's figures", "A p99 "+rng(res.vals[one][figCAp99], f1)+" ms, burst1000 "+rng(res.vals[one][figCCDeliv], kilo)+" msg/s",
			"no build before cluster mode in this run (-baseline-pushercm)")
	}
	return b.String()
}

// clusterDeployments are the columns: pushercm and Centrifugo in three
// nodes on Redis, then each on one node without Redis, then (when given)
// pushercm built before cluster mode on one node.
func clusterDeployments(pcm peers.Pushercm, cent *peers.Centrifugo, redisAddr string, baseline string) []deployment {
	const n = 3
	deps := []deployment{{
		name: pcName, peer: pcm, nodes: n,
		start: func(i int, prefix string) (*peers.Proc, error) {
			node := pcm
			node.Env = []string{"PUSHERCM_REDIS_URL=redis://" + redisAddr, "PUSHERCM_REDIS_PREFIX=" + prefix,
				"PUSHERCM_CLUSTER_NODE_ID=peerload-" + strconv.Itoa(i)}
			return node.Start()
		},
	}}
	if cent != nil {
		deps = append(deps, deployment{
			name: cfName, peer: *cent, nodes: n,
			start: func(_ int, prefix string) (*peers.Proc, error) {
				node := *cent
				node.RedisAddr, node.RedisPrefix = redisAddr, prefix
				return node.Start()
			},
		})
	}
	deps = append(deps, deployment{name: "pushercm ×1", peer: pcm, nodes: 1,
		start: func(int, string) (*peers.Proc, error) { return pcm.Start() }})
	if cent != nil {
		deps = append(deps, deployment{name: "Centrifugo ×1", peer: *cent, nodes: 1,
			start: func(int, string) (*peers.Proc, error) { return cent.Start() }})
	}
	if baseline != "" {
		b := pcm
		b.Bin = baseline
		deps = append(deps, deployment{name: "pushercm ×1, before cluster", peer: b, nodes: 1,
			start: func(int, string) (*peers.Proc, error) { return b.Start() }})
	}
	return deps
}
