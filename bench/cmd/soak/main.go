//go:build linux

// Command soak holds many WebSocket clients on a pushercm process for a long time, with
// sustained fan-out and churn, and checks that nothing is lost and nothing grows.
//
//	go run ./bench/cmd/soak -bin bin/pushercm                # 15 000 clients, 10 minutes
//	go run ./bench/cmd/soak -bin bin/pushercm -conns 2000 -duration 2m -warmup 30s
//
// It starts `pushercm serve --dev` from the given binary on 127.0.0.1 (or builds one when
// -bin is empty), then -workers client processes (this command, re-executed; each
// process may hold only 20 000 open files), each holding its share of -conns clients,
// one public channel each, spread over -channels channels and -source-ips loopback
// source addresses. The coordinator publishes -rate events/s through the signed HTTP
// API, every channel's events in sequence; the workers replace -churn clients/s (a
// leaving client stops, half of them after pusher:unsubscribe, and a new one connects
// and subscribes to a random channel).
//
// Checks, printed each minute and at the end; any failure makes the exit status 1:
//   - zero loss: every event whose publish started after a client's subscription
//     succeeded, and finished before it left (or before the end), arrived, in order and
//     once; a socket closed by the server counts as a failure too;
//   - server RSS after -warmup stays within -rss-growth of the first minute after it;
//   - server goroutines (go_goroutines from /metrics) and open files beyond one per
//     connection (/proc/PID/fd minus pushercm_connections_active) do not grow after
//     warm-up, and both return to their pre-connection values once every client is gone;
//   - publish-to-receive latency (p50, p99, max) is reported each minute, per client
//     process, with the highest p99 of them.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	edgebench "github.com/milequest/pushercm/bench/edge"
	"github.com/milequest/pushercm/bench/loadgen"
)

// Dev-mode app credentials (DESIGN.md §2).
const (
	appID     = "app-id"
	appKey    = "app-key"
	appSecret = "app-secret"
	eventName = "soak"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		worker(os.Args[2:])
		return
	}
	coordinator()
}

// record is one client's life, sent by a worker when the client ends.
type record struct {
	Ch       int    `json:"ch"`
	Sub      int64  `json:"sub"`   // unix nanos when subscription_succeeded arrived
	Leave    int64  `json:"leave"` // unix nanos when it decided to leave; 0 = stayed to the end
	End      int64  `json:"end"`   // unix nanos of its last read
	First    int64  `json:"first"`
	Last     int64  `json:"last"`
	N        int64  `json:"n"`
	Disorder int64  `json:"disorder"` // events at or below the last sequence seen
	Dropped  bool   `json:"dropped"`  // the server closed the socket
	Err      string `json:"err,omitempty"`
}

// minute is one worker's figures for one minute.
type minute struct {
	Worker, Min            int
	Connected              int64
	Received, Joined, Left int64
	Dropped, DialErrors    int64
	P50, P99, Max          time.Duration
	Samples                int
}

// line is what a worker writes on stdout, one JSON object per line.
type line struct {
	Type   string  `json:"type"` // ready, client, minute, done
	Client *record `json:"client,omitempty"`
	Minute *minute `json:"minute,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// ---------------------------------------------------------------- coordinator

type config struct {
	bin                      string
	conns, workers, channels int
	rate, churn              float64
	duration, warmup, grace  time.Duration
	sourceIPs                int
	rssGrowth                float64
}

func coordinator() {
	var c config
	flag.StringVar(&c.bin, "bin", "", "pushercm binary to start (default: build one)")
	flag.IntVar(&c.conns, "conns", 15000, "WebSocket clients held during the run")
	flag.IntVar(&c.workers, "workers", 3, "client processes (each may hold at most 20 000 open files)")
	flag.IntVar(&c.channels, "channels", 300, "channels the clients are spread over")
	flag.Float64Var(&c.rate, "rate", 200, "events published per second, in total")
	flag.Float64Var(&c.churn, "churn", 25, "clients replaced per second, in total")
	flag.DurationVar(&c.duration, "duration", 10*time.Minute, "publishing and churn time")
	flag.DurationVar(&c.warmup, "warmup", 2*time.Minute, "time after which RSS, goroutines and files must stay flat")
	flag.DurationVar(&c.grace, "grace", 5*time.Second, "how long a leaving client keeps reading")
	flag.IntVar(&c.sourceIPs, "source-ips", 32, "loopback source addresses the clients are spread over")
	flag.Float64Var(&c.rssGrowth, "rss-growth", 0.10, "largest RSS growth allowed after warm-up")
	flag.Parse()
	if c.duration < c.warmup+time.Minute {
		log.Fatalf("-duration %s must be at least -warmup %s plus one minute", c.duration, c.warmup)
	}
	lim, err := edgebench.RaiseNoFile()
	if err != nil {
		log.Fatal(err)
	}
	if per := c.conns/c.workers + 1000; uint64(per) > lim {
		log.Fatalf("%d clients per process do not fit the open-file limit %d; raise -workers", per, lim)
	}
	fmt.Printf("# soak %s: conns=%d workers=%d channels=%d rate=%.0f ev/s churn=%.0f/s duration=%s warmup=%s nofile=%d NumCPU=%d go=%s\n",
		time.Now().UTC().Format(time.RFC3339), c.conns, c.workers, c.channels, c.rate, c.churn, c.duration, c.warmup, lim, runtime.NumCPU(), runtime.Version())

	// The clients come from a few loopback addresses: no per-address cap.
	conf := fmt.Sprintf("edge:\n  maxConnections: %d\n  maxConnectionsPerIp: 0\n", 2*c.conns+1000)
	var srv *loadgen.Server
	if c.bin != "" {
		srv = loadgen.SpawnBinary(c.bin, conf)
	} else {
		srv = loadgen.Spawn(conf)
	}
	ok := run(c, srv)
	srv.Stop()
	if !ok {
		fmt.Println("soak: FAIL")
		os.Exit(1)
	}
	fmt.Println("soak: PASS")
}

// probe reads the server's figures.
type probe struct {
	pid int
	ops string
	hc  *http.Client
}

type sample struct {
	at                      time.Time
	rss                     int64
	fds, goroutines, active int
}

func (p *probe) read() (sample, error) {
	s := sample{at: time.Now()}
	var err error
	if s.rss, err = edgebench.RSS(p.pid); err != nil {
		return s, err
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
	if err != nil {
		return s, err
	}
	s.fds = len(ents)
	resp, err := p.hc.Get("http://" + p.ops + "/metrics")
	if err != nil {
		return s, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	got := 0
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "go_goroutines":
			f, _ := strconv.ParseFloat(v, 64)
			s.goroutines = int(f)
			got++
		case "pushercm_connections_active":
			f, _ := strconv.ParseFloat(v, 64)
			s.active = int(f)
			got++
		}
	}
	if got != 2 {
		return s, fmt.Errorf("/metrics lacks go_goroutines or pushercm_connections_active")
	}
	return s, sc.Err()
}

// pubLog is every published event: per channel, when its publish started and ended.
type pubLog struct {
	mu    sync.Mutex
	start [][]int64 // [channel][seq-1]
	end   [][]int64
}

// workerProc is one client process.
type workerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan line
}

func startWorker(c config, addr string, id int, n int) *workerProc {
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(exe, "worker", "-addr", addr, "-id", strconv.Itoa(id), "-n", strconv.Itoa(n),
		"-first", strconv.Itoa(id*(c.conns/c.workers)), "-channels", strconv.Itoa(c.channels),
		"-churn", strconv.FormatFloat(c.churn/float64(c.workers), 'f', 3, 64), "-grace", c.grace.String(),
		"-source-ips", strconv.Itoa(c.sourceIPs), "-deadline", strconv.FormatInt(time.Now().Add(c.duration+15*time.Minute).UnixNano(), 10))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		log.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	w := &workerProc{cmd: cmd, stdin: stdin, lines: make(chan line, 4096)}
	go func() {
		defer close(w.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var l line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				log.Printf("worker %d: %q", id, sc.Text())
				continue
			}
			w.lines <- l
		}
	}()
	return w
}

func (w *workerProc) send(cmd string) { _, _ = io.WriteString(w.stdin, cmd+"\n") }

func run(c config, srv *loadgen.Server) bool {
	if srv.OpsAddr == "" {
		log.Print("the server did not report its ops address")
		return false
	}
	pr := &probe{pid: srv.PID, ops: srv.OpsAddr, hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	time.Sleep(2 * time.Second)
	base, err := pr.read()
	if err != nil {
		log.Printf("probe: %v", err)
		return false
	}
	fmt.Printf("server pid=%d http=%s ops=%s before clients: rss=%.1fMiB fds=%d goroutines=%d\n", srv.PID, srv.HTTPAddr, srv.OpsAddr, mib(base.rss), base.fds, base.goroutines)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)

	// Connect.
	connectStart := time.Now()
	workers := make([]*workerProc, c.workers)
	for i := range workers {
		n := c.conns / c.workers
		if i == c.workers-1 {
			n = c.conns - n*(c.workers-1)
		}
		workers[i] = startWorker(c, srv.HTTPAddr, i, n)
	}
	records := make(chan record, 65536)
	minutes := make(chan minute, 1024)
	ready := make(chan int, c.workers)
	failed := make(chan string, 2*c.workers)
	var wwg sync.WaitGroup
	for i, w := range workers {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			done := false
			for l := range w.lines {
				switch l.Type {
				case "ready":
					ready <- i
				case "client":
					records <- *l.Client
				case "minute":
					minutes <- *l.Minute
				case "done":
					done = true
				case "error":
					tell(failed, fmt.Sprintf("worker %d: %s", i, l.Error))
				}
			}
			if !done {
				tell(failed, fmt.Sprintf("worker %d exited early", i))
			}
		}()
	}
	go func() { wwg.Wait(); close(records) }()
	stopWorkers := func() {
		for _, w := range workers {
			_ = w.stdin.Close()
		}
	}
	for range workers {
		select {
		case <-ready:
		case msg := <-failed:
			log.Print(msg)
			stopWorkers()
			return false
		case <-sig:
			stopWorkers()
			return false
		case <-time.After(10 * time.Minute):
			log.Print("clients did not connect within 10 minutes")
			stopWorkers()
			return false
		}
	}
	connected, err := pr.read()
	if err != nil {
		log.Printf("probe: %v", err)
	}
	fmt.Printf("connected %d clients in %s: rss=%.1fMiB fds=%d goroutines=%d active=%d\n",
		c.conns, time.Since(connectStart).Round(time.Millisecond), mib(connected.rss), connected.fds, connected.goroutines, connected.active)

	// Publish and churn.
	for _, w := range workers {
		w.send("go")
	}
	pl := &pubLog{start: make([][]int64, c.channels), end: make([][]int64, c.channels)}
	target := edgebench.Target{Addr: srv.HTTPAddr, AppID: appID, Key: appKey, Secret: appSecret}
	pub := edgebench.NewPublisher(target)
	ctx, cancel := context.WithTimeout(context.Background(), c.duration)
	var published, pubErrors atomic.Int64
	var pwg sync.WaitGroup
	const publishers = 8
	for g := 0; g < publishers; g++ {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			publish(ctx, pub, pl, g, publishers, c.channels, c.rate/publishers, &published, &pubErrors)
		}()
	}

	start := time.Now()
	var samples []sample
	var mins []minute
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	minuteNo := 1
	var recs []record
	interrupted := false
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-sig:
			interrupted = true
			cancel()
			break loop
		case msg := <-failed:
			fmt.Println(msg)
			interrupted = true
			cancel()
			break loop
		case r, ok := <-records:
			if ok {
				recs = append(recs, r)
			}
		case m := <-minutes:
			mins = append(mins, m)
		case <-tick.C:
			s, err := pr.read()
			if err != nil {
				fmt.Printf("probe: %v\n", err)
				continue
			}
			samples = append(samples, s)
			// The workers' own minute figures arrive just after the minute.
			if time.Since(start) >= time.Duration(minuteNo)*time.Minute+5*time.Second {
				printMinute(minuteNo, start, samples, mins, recs, published.Load(), pubErrors.Load())
				minuteNo++
			}
		}
	}
	cancel()
	pwg.Wait()
	// Every publish has finished; let the last events arrive, then stop the clients.
	time.Sleep(c.grace)
	for _, w := range workers {
		w.send("stop")
	}
	drain := time.After(c.grace + 2*time.Minute)
collect:
	for {
		select {
		case r, ok := <-records:
			if !ok {
				break collect
			}
			recs = append(recs, r)
		case m := <-minutes:
			mins = append(mins, m)
		case <-drain:
			fmt.Println("workers did not finish within 2 minutes")
			interrupted = true
			break collect
		}
	}
	stopWorkers()
	for _, w := range workers {
		done := make(chan struct{})
		go func() { _ = w.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = w.cmd.Process.Kill()
		}
	}
	pub.Close()
	for len(minutes) > 0 {
		mins = append(mins, <-minutes)
	}
	if len(samples) > 0 {
		printMinute(minuteNo, start, samples, mins, recs, published.Load(), pubErrors.Load())
	}

	// After every client has gone: back to the pre-connection figures?
	var after sample
	deadline := time.Now().Add(60 * time.Second)
	for {
		after, err = pr.read()
		if err == nil && after.active == 0 && after.fds <= base.fds+fdSlack && after.goroutines <= base.goroutines+goroutineSlack {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}

	return report(c, base, samples, mins, recs, pl, start, after, published.Load(), pubErrors.Load()) && !interrupted
}

// Slack for the end-of-run comparison with the figures before any client connected: the
// ops scrape's own socket and runtime helpers that come and go.
const (
	fdSlack        = 8
	goroutineSlack = 8
)

// publish sends rate events/s on the channels owned by publisher g (ch % n == g), in
// batches of up to 10, one request at a time, so that each channel's events are
// published in sequence.
func publish(ctx context.Context, p *edgebench.Publisher, log *pubLog, g, n, channels int, rate float64, published, errs *atomic.Int64) {
	var own []int
	for ch := g; ch < channels; ch += n {
		own = append(own, ch)
	}
	if len(own) == 0 || rate <= 0 {
		return
	}
	next := 0
	seq := make(map[int]int64)
	start := time.Now()
	sent := 0
	for ctx.Err() == nil {
		due := int(rate * time.Since(start).Seconds())
		if due <= sent {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		k := min(10, due-sent)
		evs := make([]edgebench.Event, k)
		chs := make([]int, k)
		seqs := make([]int64, k)
		t0 := time.Now().UnixNano()
		for j := range evs {
			ch := own[next%len(own)]
			next++
			seq[ch]++
			chs[j], seqs[j] = ch, seq[ch]
			evs[j] = edgebench.Event{Channel: channelName(ch), Name: eventName, Data: strconv.FormatInt(seq[ch], 10) + "/" + strconv.FormatInt(t0, 10)}
		}
		log.mu.Lock()
		for _, ch := range chs {
			log.start[ch] = append(log.start[ch], t0)
			log.end[ch] = append(log.end[ch], 0)
		}
		log.mu.Unlock()
		// Retry a failed request with the same events: a channel's sequence must not
		// skip. A retried event may arrive twice; that is reported as disorder.
		for {
			rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := p.Batch(rctx, evs)
			rcancel()
			if err == nil {
				break
			}
			errs.Add(1)
			if ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		t1 := time.Now().UnixNano()
		log.mu.Lock()
		for j, ch := range chs {
			log.end[ch][seqs[j]-1] = t1
		}
		log.mu.Unlock()
		sent += k
		published.Add(int64(k))
	}
}

// tell sends without blocking: only the first failures matter.
func tell(ch chan<- string, msg string) {
	select {
	case ch <- msg:
	default:
	}
}

func channelName(ch int) string { return "soak-" + strconv.Itoa(ch) }

func printMinute(m int, start time.Time, samples []sample, mins []minute, recs []record, published, pubErrors int64) {
	s := samples[len(samples)-1]
	var recv, joined, left, dropped, dialErr, conn int64
	var worst time.Duration
	var p99s []string
	for _, x := range mins {
		if x.Min != m {
			continue
		}
		recv += x.Received
		joined += x.Joined
		left += x.Left
		dropped += x.Dropped
		dialErr += x.DialErrors
		conn += x.Connected
		worst = max(worst, x.P99)
		p99s = append(p99s, fmt.Sprintf("w%d p50=%s p99=%s max=%s", x.Worker, ms(x.P50), ms(x.P99), ms(x.Max)))
	}
	sort.Strings(p99s)
	fmt.Printf("minute %d (%s): published=%d received=%d clients=%d joined=%d left=%d dropped=%d dial_errors=%d publish_errors=%d | p99=%s [%s] | server rss=%.1fMiB fds=%d active=%d fds-active=%d goroutines=%d | records=%d\n",
		m, time.Since(start).Round(time.Second), published, recv, conn, joined, left, dropped, dialErr, pubErrors, ms(worst), strings.Join(p99s, "; "),
		mib(s.rss), s.fds, s.active, s.fds-s.active, s.goroutines, len(recs))
}

func report(c config, base sample, samples []sample, mins []minute, recs []record, pl *pubLog, start time.Time, after sample, published, pubErrors int64) bool {
	ok := true
	fail := func(format string, args ...any) {
		ok = false
		fmt.Printf("FAIL: "+format+"\n", args...)
	}

	// Loss.
	var lost, disorder, dropped, checked, expected, stayed, leftEarly int64
	shown := 0
	for _, r := range recs {
		checked++
		if r.Leave == 0 {
			stayed++
		} else {
			leftEarly++
		}
		lo, hi, miss := missing(r, pl.start[r.Ch], pl.end[r.Ch])
		if r.Dropped {
			dropped++
		}
		disorder += r.Disorder
		if lo > 0 {
			expected += hi - lo + 1
		}
		if miss > 0 {
			lost += miss
			if shown < 10 {
				shown++
				fmt.Printf("loss: channel %s subscribed %s left %s: expected %d..%d, got %d events %d..%d (disorder %d, dropped %v %s)\n",
					channelName(r.Ch), at(start, r.Sub), at(start, r.Leave), lo, hi, r.N, r.First, r.Last, r.Disorder, r.Dropped, r.Err)
			}
		}
	}
	fmt.Printf("loss check: %d client lives (%d left during the run, %d stayed to the end), %d events expected, %d lost, %d out of order or repeated, %d sockets closed by the server; %d published, %d publish requests retried\n",
		checked, leftEarly, stayed, expected, lost, disorder, dropped, published, pubErrors)
	if lost > 0 || disorder > 0 {
		fail("events lost (%d) or out of order (%d)", lost, disorder)
	}
	if dropped > 0 {
		fail("%d clients were disconnected by the server", dropped)
	}
	if int(stayed) < c.conns*9/10 {
		fail("only %d clients reported at the end", stayed)
	}

	// Latency.
	var worst time.Duration
	for _, m := range mins {
		worst = max(worst, m.P99)
	}
	fmt.Printf("latency: highest per-minute p99 %s over %d minutes\n", ms(worst), len(mins)/max(c.workers, 1))

	// Growth after warm-up.
	var post []sample
	for _, s := range samples {
		if s.at.Sub(start) >= c.warmup {
			post = append(post, s)
		}
	}
	if len(post) < 2 {
		fail("too few samples after warm-up (%d)", len(post))
		return false
	}
	var firstMin []sample
	for _, s := range post {
		if s.at.Sub(post[0].at) < time.Minute {
			firstMin = append(firstMin, s)
		}
	}
	var rssBase, gBase, fBase float64
	for _, s := range firstMin {
		rssBase += float64(s.rss)
		gBase += float64(s.goroutines)
		fBase += float64(s.fds - s.active)
	}
	n := float64(len(firstMin))
	rssBase, gBase, fBase = rssBase/n, gBase/n, fBase/n
	lo, hi := post[0], post[0]
	for _, s := range post {
		if s.rss < lo.rss {
			lo = s
		}
		if s.rss > hi.rss {
			hi = s
		}
	}
	var maxG, maxF int
	for _, s := range post {
		maxG = max(maxG, s.goroutines)
		maxF = max(maxF, s.fds-s.active)
	}
	fmt.Printf("rss after warm-up: first minute %.1fMiB, min %.1fMiB (%+.1f%%), max %.1fMiB (%+.1f%%) at %s\n",
		mib(int64(rssBase)), mib(lo.rss), pct(float64(lo.rss), rssBase), mib(hi.rss), pct(float64(hi.rss), rssBase), hi.at.Sub(start).Round(time.Second))
	if float64(hi.rss) > rssBase*(1+c.rssGrowth) {
		fail("RSS grew %.1f%% after warm-up (limit %.0f%%)", pct(float64(hi.rss), rssBase), 100*c.rssGrowth)
	}
	fmt.Printf("goroutines after warm-up: first minute %.0f, max %d; files beyond one per connection: first minute %.0f, max %d\n", gBase, maxG, fBase, maxF)
	// A few goroutines and files come and go with the handshakes and HTTP requests in
	// flight; growth means more than that.
	if float64(maxG) > gBase*1.10+20 {
		fail("server goroutines grew from %.0f to %d", gBase, maxG)
	}
	if float64(maxF) > fBase*1.10+100 {
		fail("server files beyond its connections grew from %.0f to %d", fBase, maxF)
	}
	fmt.Printf("after all clients left: active=%d fds=%d (before clients %d) goroutines=%d (before %d) rss=%.1fMiB (before %.1fMiB)\n",
		after.active, after.fds, base.fds, after.goroutines, base.goroutines, mib(after.rss), mib(base.rss))
	if after.active != 0 || after.fds > base.fds+fdSlack || after.goroutines > base.goroutines+goroutineSlack {
		fail("the server did not return to its figures before the clients came")
	}
	return ok
}

// missing returns the sequence numbers lo..hi a client had to receive (lo = 0 when
// none) and how many it did not: events whose publish started after its subscription
// succeeded and ended before it left, was closed or (for clients that stayed) before the
// run ended. starts and ends are the channel's publish times, indexed by sequence - 1.
func missing(r record, starts, ends []int64) (lo, hi, miss int64) {
	for i := range starts {
		seq := int64(i + 1)
		if starts[i] <= r.Sub || ends[i] == 0 ||
			r.Leave != 0 && ends[i] >= r.Leave || r.Dropped && ends[i] >= r.End {
			continue
		}
		if lo == 0 {
			lo = seq
		}
		hi = seq
	}
	if lo == 0 {
		return 0, 0, 0
	}
	if r.N == 0 {
		return lo, hi, hi - lo + 1
	}
	// Received First..Last in order with no gap (checked by count); a gap is loss
	// wherever it falls, and so is any of lo..hi outside First..Last.
	miss = max((r.Last-r.First+1)-(r.N-r.Disorder), 0)
	if r.First > lo {
		miss += min(r.First, hi+1) - lo
	}
	if r.Last < hi {
		miss += hi - max(r.Last, lo-1)
	}
	return lo, hi, miss
}

func at(start time.Time, ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Unix(0, ns).Sub(start).Round(time.Millisecond).String()
}

func pct(v, base float64) float64 { return 100 * (v - base) / base }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func ms(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }

// ---------------------------------------------------------------- worker

type wclient struct {
	c     *edgebench.Client
	ch    int
	sub   int64
	leave atomic.Int64
}

type wstate struct {
	target    edgebench.Target
	channels  int
	sourceIPs int
	grace     time.Duration

	out   *json.Encoder
	outMu sync.Mutex

	mu    sync.Mutex
	live  map[*wclient]struct{}
	wg    sync.WaitGroup
	stop  atomic.Bool
	seqIP atomic.Int64

	connected, received, joined, left, dropped, dialErrors atomic.Int64

	latMu  sync.Mutex
	lat    *edgebench.Latencies
	shards [16]struct {
		sync.Mutex
		rec *edgebench.Recorder
	}
}

func worker(args []string) {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	addr := fs.String("addr", "", "")
	id := fs.Int("id", 0, "")
	n := fs.Int("n", 0, "")
	first := fs.Int("first", 0, "")
	channels := fs.Int("channels", 1, "")
	churn := fs.Float64("churn", 0, "")
	grace := fs.Duration("grace", 5*time.Second, "")
	sourceIPs := fs.Int("source-ips", 1, "")
	deadline := fs.Int64("deadline", 0, "")
	_ = fs.Parse(args)
	if _, err := edgebench.RaiseNoFile(); err != nil {
		log.Fatal(err)
	}
	// Whatever happens to the coordinator, this process ends.
	time.AfterFunc(time.Until(time.Unix(0, *deadline)), func() { os.Exit(3) })

	w := &wstate{
		target:    edgebench.Target{Addr: *addr, AppID: appID, Key: appKey, Secret: appSecret},
		channels:  *channels,
		sourceIPs: *sourceIPs,
		grace:     *grace,
		out:       json.NewEncoder(os.Stdout),
		live:      map[*wclient]struct{}{},
		lat:       &edgebench.Latencies{},
	}
	w.seqIP.Store(int64(*first))
	for i := range w.shards {
		w.shards[i].rec = w.lat.Recorder()
	}

	// Connect n clients, client i of the run on channel i % channels.
	var next atomic.Int64
	var cwg sync.WaitGroup
	var failures atomic.Int64
	for g := 0; g < 32; g++ {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= *n {
					return
				}
				if err := w.join((*first + i) % w.channels); err != nil {
					if failures.Add(1) <= 5 {
						log.Printf("worker %d: client %d: %v", *id, i, err)
					}
				}
			}
		}()
	}
	cwg.Wait()
	if f := failures.Load(); f > int64(*n)/100 {
		w.emit(line{Type: "error", Error: fmt.Sprintf("%d of %d clients failed to connect", f, *n)})
		return
	}
	w.emit(line{Type: "ready"})

	cmds := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
		close(cmds)
	}()
	if cmd, ok := <-cmds; !ok || cmd != "go" {
		w.finish()
		return
	}

	// Churn and per-minute figures until "stop" (or the coordinator going away).
	minuteTick := time.NewTicker(time.Minute)
	defer minuteTick.Stop()
	var churnTick <-chan time.Time
	if *churn > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / *churn))
		defer t.Stop()
		churnTick = t.C
	}
	m := 1
	for {
		select {
		case <-churnTick:
			w.churnOne()
		case <-minuteTick.C:
			w.reportMinute(*id, m)
			m++
		case <-cmds:
			w.reportMinute(*id, m)
			w.finish()
			return
		}
	}
}

func (w *wstate) emit(l line) {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	_ = w.out.Encode(l)
}

// join connects a client, subscribes it and starts its reader.
func (w *wstate) join(ch int) error {
	t := w.target
	if w.sourceIPs > 1 {
		k := w.seqIP.Add(1)
		t.LocalIP = "127.0.0." + strconv.Itoa(10+int(k%int64(w.sourceIPs)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	c, err := edgebench.Dial(ctx, t)
	cancel()
	if err != nil {
		w.dialErrors.Add(1)
		return err
	}
	if err := c.Subscribe(channelName(ch)); err != nil {
		_ = c.Close()
		w.dialErrors.Add(1)
		return err
	}
	wc := &wclient{c: c, ch: ch, sub: time.Now().UnixNano()}
	w.mu.Lock()
	w.live[wc] = struct{}{}
	if w.stop.Load() {
		// Joined while the run was ending: it ends with the others.
		_ = c.SetReadDeadline(time.Now().Add(w.grace))
	}
	w.mu.Unlock()
	w.connected.Add(1)
	w.wg.Add(1)
	go w.read(wc)
	return nil
}

// churnOne makes a random live client leave and a new one join.
func (w *wstate) churnOne() {
	w.mu.Lock()
	var victim *wclient
	k := rand.IntN(max(len(w.live), 1))
	for c := range w.live {
		if k == 0 {
			victim = c
			break
		}
		k--
	}
	if victim != nil {
		delete(w.live, victim)
	}
	w.mu.Unlock()
	if victim != nil {
		now := time.Now()
		victim.leave.Store(now.UnixNano())
		_ = victim.c.SetReadDeadline(now.Add(w.grace))
		w.left.Add(1)
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		if err := w.join(rand.IntN(w.channels)); err == nil {
			w.joined.Add(1)
		}
	}()
}

var dataKey = []byte(`"data":"`)

// read follows one client until it has left, the run ends, or the server closes it.
func (w *wstate) read(wc *wclient) {
	defer w.wg.Done()
	defer w.connected.Add(-1)
	r := record{Ch: wc.ch, Sub: wc.sub}
	shard := &w.shards[rand.IntN(len(w.shards))]
	unsubscribe := rand.IntN(2) == 0
	unsubscribed := false
	for {
		p, err := wc.c.Next()
		if err != nil {
			r.End = time.Now().UnixNano()
			r.Leave = wc.leave.Load()
			if r.Leave == 0 && !w.stop.Load() {
				r.Dropped = true
				r.Err = err.Error()
				w.dropped.Add(1)
				w.mu.Lock()
				delete(w.live, wc)
				w.mu.Unlock()
			}
			break
		}
		now := time.Now().UnixNano()
		if unsubscribe && !unsubscribed && wc.leave.Load() != 0 {
			// Half of the leaving clients say so before they go.
			unsubscribed = true
			_ = wc.c.Unsubscribe(channelName(wc.ch))
		}
		seq, ts, ok := parseEvent(p)
		if !ok {
			continue
		}
		w.received.Add(1)
		if r.N > 0 && seq <= r.Last {
			r.Disorder++
		} else {
			if r.N == 0 {
				r.First = seq
			}
			r.Last = seq
		}
		r.N++
		shard.Lock()
		shard.rec.Add(time.Duration(now - ts))
		shard.Unlock()
	}
	_ = wc.c.Close()
	w.emit(line{Type: "client", Client: &r})
}

// parseEvent reads "<seq>/<unix nanos>" from a soak event's data.
func parseEvent(p []byte) (seq, ts int64, ok bool) {
	if !strings.Contains(string(p[:min(len(p), 40)]), `"event":"`+eventName+`"`) {
		return 0, 0, false
	}
	i := strings.Index(string(p), string(dataKey))
	if i < 0 {
		return 0, 0, false
	}
	rest := string(p[i+len(dataKey):])
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rest[:j], "/")
	if !found {
		return 0, 0, false
	}
	seq, err1 := strconv.ParseInt(a, 10, 64)
	ts, err2 := strconv.ParseInt(b, 10, 64)
	return seq, ts, err1 == nil && err2 == nil
}

func (w *wstate) reportMinute(id, m int) {
	for i := range w.shards {
		s := &w.shards[i]
		s.Lock()
		s.rec.Flush()
		s.Unlock()
	}
	w.latMu.Lock()
	p50, p99, mx, n := w.lat.Percentiles()
	fresh := &edgebench.Latencies{}
	w.lat = fresh
	for i := range w.shards {
		s := &w.shards[i]
		s.Lock()
		s.rec = fresh.Recorder()
		s.Unlock()
	}
	w.latMu.Unlock()
	w.emit(line{Type: "minute", Minute: &minute{
		Worker: id, Min: m, Connected: w.connected.Load(),
		Received: w.received.Swap(0), Joined: w.joined.Swap(0), Left: w.left.Swap(0),
		Dropped: w.dropped.Swap(0), DialErrors: w.dialErrors.Swap(0),
		P50: p50, P99: p99, Max: mx, Samples: n,
	}})
}

// finish ends every client after a last grace period of reading.
func (w *wstate) finish() {
	end := time.Now().Add(w.grace)
	w.mu.Lock()
	w.stop.Store(true)
	for c := range w.live {
		_ = c.c.SetReadDeadline(end)
	}
	w.mu.Unlock()
	w.wg.Wait()
	w.emit(line{Type: "done"})
}
