//go:build linux

// Command edgeload load-tests the embedded Pusher edge from a separate process.
//
//	go run ./bench/cmd/edgeload                      # spawn a server child, run everything
//	go run ./bench/cmd/edgeload -idle 10000,19000 -scenarios idle
//	go run ./bench/cmd/edgeload -addr 127.0.0.1:6001 -pid 1234 -app-id .. -key .. -secret ..
//
// Scenarios: idle (RSS per idle connection and connect rate), fan2000 (1 channel x 2000
// subscribers at 100 events/s), fan100x10 (100 channels x 10 subscribers at 1000
// events/s), burst1000 (1 channel x 1000 subscribers, published as fast as the server
// accepts within a bounded in-flight window so no client is dropped as slow).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	edgebench "github.com/milequest/pushercm/bench/edge"
	"github.com/milequest/pushercm/bench/loadgen"
	"github.com/milequest/pushercm/edge"
	"github.com/milequest/pushercm/protocol"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		serve(os.Args[2:])
		return
	}
	var (
		addr      = flag.String("addr", "", "external server host:port (default: spawn a server child per scenario)")
		pid       = flag.Int("pid", 0, "external server pid, for RSS")
		appID     = flag.String("app-id", "bench", "app id")
		key       = flag.String("key", "bench-key", "app key")
		secret    = flag.String("secret", "bench-secret", "app secret")
		idle      = flag.String("idle", "10000,19000", "idle connection counts")
		scenarios = flag.String("scenarios", "idle,fan2000,fan100x10,burst1000", "scenarios to run")
		duration  = flag.Duration("duration", 10*time.Second, "publishing time per fan-out scenario")
	)
	flag.Parse()
	lim, err := edgebench.RaiseNoFile()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("# edgeload: GOMAXPROCS=%d NumCPU=%d nofile=%d go=%s\n", runtime.GOMAXPROCS(0), runtime.NumCPU(), lim, runtime.Version())
	base := edgebench.Target{Addr: *addr, AppID: *appID, Key: *key, Secret: *secret}
	for _, sc := range strings.Split(*scenarios, ",") {
		switch sc {
		case "idle":
			for _, ns := range strings.Split(*idle, ",") {
				n, err := strconv.Atoi(ns)
				if err != nil {
					log.Fatal(err)
				}
				if uint64(n)+64 > lim {
					n = int(lim) - 64
					fmt.Printf("# idle: capped at %d by the open-file limit\n", n)
				}
				withServer(base, *pid, func(t edgebench.Target, pid int) { runIdle(t, pid, n) })
			}
		case "churn":
			withServer(base, *pid, func(t edgebench.Target, pid int) { runChurn(t, pid, 10000) })
		case "fan2000":
			withServer(base, *pid, func(t edgebench.Target, pid int) {
				runFan(t, pid, "1 ch x 2000 subs, 100 ev/s", 1, 2000, 100, *duration)
			})
		case "fan100x10":
			withServer(base, *pid, func(t edgebench.Target, pid int) {
				runFan(t, pid, "100 ch x 10 subs, 1000 ev/s", 100, 10, 1000, *duration)
			})
		case "burst1000":
			withServer(base, *pid, func(t edgebench.Target, pid int) { runFan(t, pid, "1 ch x 1000 subs, max rate", 1, 1000, 0, *duration) })
		default:
			log.Fatalf("unknown scenario %q", sc)
		}
	}
}

// withServer runs f against the external server, or a fresh child server.
func withServer(t edgebench.Target, pid int, f func(edgebench.Target, int)) {
	if t.Addr != "" {
		f(t, pid)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(exe, "serve", "-app-id", t.AppID, "-key", t.Key, "-secret", t.Secret)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		log.Fatalf("server child: %v", err)
	}
	t.Addr = strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))
	f(t, cmd.Process.Pid)
	_ = stdin.Close() // EOF tells the child to exit
	_ = cmd.Wait()
}

// serve is the child: an edge server with no connection cap, answering /debug/gc.
func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	appID := fs.String("app-id", "bench", "")
	key := fs.String("key", "bench-key", "")
	secret := fs.String("secret", "bench-secret", "")
	_ = fs.Parse(args)
	if _, err := edgebench.RaiseNoFile(); err != nil {
		log.Fatal(err)
	}
	var logger *slog.Logger
	if os.Getenv("EDGELOAD_DEBUG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	wo := &writeHist{}
	s, err := edge.New(edge.Config{AppID: *appID, Key: *key, Secret: *secret, Limits: protocol.Limits{MaxConnections: -1}, Logger: logger, NoIOUring: os.Getenv("EDGELOAD_NO_IOURING") != ""}, edge.WithMetrics(wo))
	if err != nil {
		log.Fatal(err)
	}
	s.Handle("GET /debug/gc", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// Twice: sync.Pool keeps a victim cache across one collection.
		runtime.GC()
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_ = json.NewEncoder(w).Encode(map[string]any{"heap_inuse": ms.HeapInuse, "stack_inuse": ms.StackInuse, "sys": ms.Sys, "goroutines": runtime.NumGoroutine()})
	}))
	s.Handle("GET /debug/heap", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		_ = pprof.Lookup("heap").WriteTo(w, 0)
	}))
	s.Handle("GET /debug/writes", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(wo.report()))
	}))
	s.Handle("GET /debug/stats", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(s.Stats())
	}))
	if err := s.Start(*addr); err != nil {
		log.Fatal(err)
	}
	defer loadgen.CPUProfile("EDGELOAD_CPUPROFILE")()
	fmt.Printf("ADDR %s\n", s.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-sig:
	case <-eof:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.Shutdown(ctx)
}

// writeHist records the server's queue-to-socket-write latency (edge.WriteObserver)
// in power-of-two microsecond buckets.
type writeHist struct {
	buckets [32]atomic.Int64
	writes  atomic.Int64
	frames  atomic.Int64
}

func (h *writeHist) Published(int, time.Duration) {}

func (h *writeHist) Written(wait time.Duration, frames int) {
	us := max(wait.Microseconds(), 0)
	b := 0
	for us > 0 && b < 31 {
		us >>= 1
		b++
	}
	h.buckets[b].Add(int64(frames))
	h.writes.Add(1)
	h.frames.Add(int64(frames))
}

// report gives p50/p99 upper bounds (per frame) and frames per write, then resets.
func (h *writeHist) report() string {
	var counts [32]int64
	var total int64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Swap(0)
		total += counts[i]
	}
	writes, frames := h.writes.Swap(0), h.frames.Swap(0)
	q := func(p float64) string {
		var acc int64
		for i, c := range counts {
			acc += c
			if float64(acc) >= p*float64(total) && total > 0 {
				return (time.Duration(int64(1)<<i) * time.Microsecond).String()
			}
		}
		return "-"
	}
	return fmt.Sprintf("server queue-to-write: p50<=%s p99<=%s frames/write=%.2f", q(0.5), q(0.99), float64(frames)/float64(max(writes, 1)))
}

func writeReport(t edgebench.Target) string {
	resp, err := http.Get("http://" + t.Addr + "/debug/writes")
	if err != nil {
		return err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func gcStats(t edgebench.Target) map[string]any {
	resp, err := http.Get("http://" + t.Addr + "/debug/gc")
	if err != nil {
		return nil
	}
	defer func() { _ = resp.Body.Close() }()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return m
}

func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	d, _ := edgebench.CPUTime(pid)
	return d
}

func serverStats(t edgebench.Target) string {
	resp, err := http.Get("http://" + t.Addr + "/debug/stats")
	if err != nil {
		return err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func rss(pid int) int64 {
	if pid == 0 {
		return 0
	}
	r, err := edgebench.RSS(pid)
	if err != nil {
		log.Printf("rss: %v", err)
	}
	return r
}

// connectMany opens n clients with bounded concurrency, subscribing client i to
// channel(i). It returns the clients and the time taken.
func connectMany(t edgebench.Target, n int, channel func(int) string) ([]*edgebench.Client, time.Duration) {
	clients := make([]*edgebench.Client, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := time.Now()
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				c, err := edgebench.Dial(ctx, t)
				cancel()
				if err == nil {
					err = c.Subscribe(channel(i))
				}
				if err != nil {
					if failed.Add(1) < 5 {
						log.Printf("client %d: %v", i, err)
					}
					continue
				}
				clients[i] = c
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if f := failed.Load(); f > 0 {
		log.Printf("%d of %d connections failed", f, n)
	}
	out := clients[:0]
	for _, c := range clients {
		if c != nil {
			out = append(out, c)
		}
	}
	return out, el
}

func runIdle(t edgebench.Target, pid, n int) {
	gcStats(t)
	time.Sleep(500 * time.Millisecond)
	base := rss(pid)
	clients, el := connectMany(t, n, func(i int) string { return "idle-" + strconv.Itoa(i%100) })
	time.Sleep(3 * time.Second)
	before := rss(pid)
	st := gcStats(t)
	time.Sleep(500 * time.Millisecond)
	after := rss(pid)
	k := float64(len(clients))
	fmt.Printf("idle n=%d connected=%d connect_time=%s connect_rate=%.0f/s rss_base=%.1fMiB rss=%.1fMiB (%.2f KiB/conn) rss_after_gc=%.1fMiB (%.2f KiB/conn) server=%v\n",
		n, len(clients), el.Round(time.Millisecond), k/el.Seconds(), mib(base), mib(before), float64(before-base)/k/1024, mib(after), float64(after-base)/k/1024, st)
	for _, c := range clients {
		_ = c.Close()
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// runChurn opens and closes n sockets and checks the server returns to its baseline:
// no sockets or channels left and the heap back where it started.
func runChurn(t edgebench.Target, pid, n int) {
	heap := func() float64 {
		st := gcStats(t)
		v, _ := st["heap_inuse"].(float64)
		return v
	}
	h0 := heap()
	r0 := rss(pid)
	clients, _ := connectMany(t, n, func(i int) string { return "churn-" + strconv.Itoa(i%1000) })
	h1 := heap()
	for _, c := range clients {
		_ = c.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	var st struct{ ConnectionsActive, Channels, Subscriptions int }
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + t.Addr + "/debug/stats")
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&st)
			_ = resp.Body.Close()
			if st.ConnectionsActive == 0 && st.Channels == 0 && st.Subscriptions == 0 {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	h2 := heap()
	// Stopped deadline timers (nbio's 10 s accept-time keep-alive) keep a closed
	// socket reachable until the runtime drops them; look again after that.
	time.Sleep(12 * time.Second)
	h3 := heap()
	if path := os.Getenv("EDGELOAD_HEAPFILE"); path != "" {
		if resp, err := http.Get("http://" + t.Addr + "/debug/heap"); err == nil {
			f, _ := os.Create(path)
			_, _ = io.Copy(f, resp.Body)
			_ = f.Close()
			_ = resp.Body.Close()
		}
	}
	fmt.Printf("churn n=%d: heap_inuse before=%.1fMiB with_sockets=%.1fMiB after_close=%.1fMiB 12s_later=%.1fMiB; left: sockets=%d channels=%d subscriptions=%d; rss before=%.1fMiB after=%.1fMiB\n",
		len(clients), h0/(1<<20), h1/(1<<20), h2/(1<<20), h3/(1<<20), st.ConnectionsActive, st.Channels, st.Subscriptions, mib(r0), mib(rss(pid)))
}

func runFan(t edgebench.Target, pid int, name string, channels, subs, rate int, d time.Duration) {
	chName := func(i int) string { return "fan-" + strconv.Itoa(i%channels) }
	clients, el := connectMany(t, channels*subs, chName)
	if len(clients) != channels*subs {
		log.Printf("%s: only %d clients", name, len(clients))
	}
	lat := &edgebench.Latencies{}
	recv, err := edgebench.NewReceiver(2, lat)
	if err != nil {
		log.Fatal(err)
	}
	for i, c := range clients {
		if err := recv.Add(i, c); err != nil {
			log.Fatalf("%s: receiver: %v", name, err)
		}
	}
	received, lastRecv, dropped := &recv.Received, &recv.LastRecv, &recv.Closed
	perChannel := int64(len(clients) / channels)
	p := edgebench.NewPublisher(t)
	ctx := context.Background()
	writeReport(t) // reset the histogram: measure the publishing phase only
	cpu0 := cpuTime(pid)
	var self0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self0)
	start := time.Now()
	// As fast as accepted (rate 0), at most 50 events outstanding per subscriber.
	published, pubErr := edgebench.Drive(ctx, start.Add(d), rate, chName,
		func(published int64) bool { return published*perChannel-received.Load() > 50*perChannel }, p.Batch)
	pubEnd := time.Now()
	expected := published * perChannel
	wait := time.Now().Add(15 * time.Second)
	for received.Load() < expected && time.Now().Before(wait) {
		time.Sleep(10 * time.Millisecond)
	}
	got := received.Load()
	wr := writeReport(t)
	serverCPU := cpuTime(pid) - cpu0
	var self1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self1)
	toolCPU := time.Duration(self1.Utime.Nano()+self1.Stime.Nano()-self0.Utime.Nano()-self0.Stime.Nano()) * time.Nanosecond
	if got != expected {
		log.Printf("%s: server stats %s", name, serverStats(t))
	}
	recvSpan := time.Duration(lastRecv.Load() - start.UnixNano())
	recv.Close()
	p50, p99, mx, n := lat.Percentiles()
	if e := pubErr; e != nil {
		log.Printf("%s: publish error: %v", name, e)
	}
	fmt.Printf("%s: clients=%d connect_rate=%.0f/s published=%d (%.0f ev/s) expected=%d received=%d loss=%d dropped_clients=%d delivery_rate=%.0f msg/s latency p50=%s p99=%s max=%s samples=%d rss=%.1fMiB server_cpu=%s (%.2f us/msg) tool_cpu=%s wall=%s; %s\n",
		name, len(clients), float64(len(clients))/el.Seconds(), published, float64(published)/pubEnd.Sub(start).Seconds(),
		expected, got, expected-got, dropped.Load(), float64(got)/recvSpan.Seconds(), p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), mx.Round(10*time.Microsecond), n, mib(rss(pid)),
		serverCPU.Round(time.Millisecond), float64(serverCPU.Microseconds())/float64(max(got, 1)), toolCPU.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), wr)
}
