//go:build linux

package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	edgebench "github.com/milequest/pushercm/bench/edge"
	"github.com/milequest/pushercm/bench/peers"
	"github.com/milequest/pushercm/config"
)

// runCapacity starts procs pushercm processes, has one child process of this
// tool open conns subscribers on each (100 channels), then publishes rate
// events/s to every process's channels for 10 s, and reports RSS, CPU per
// delivered message and the deliveries counted by the children.
func runCapacity(pcm peers.Pushercm, procs, conns, rate int) {
	fmt.Printf("# peerload -capacity: %s procs=%d conns/proc=%d rate=%d ev/s/proc\n", machine(), procs, conns, rate)
	type node struct {
		proc  *peers.Proc
		child *exec.Cmd
		out   *bufio.Scanner
		stdin io.WriteCloser
		base  int64
	}
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	var nodes []*node
	defer func() {
		for _, n := range nodes {
			if n.stdin != nil {
				_ = n.stdin.Close()
			}
			if n.child != nil {
				_ = n.child.Wait()
			}
			n.proc.Stop()
		}
	}()
	for i := 0; i < procs; i++ {
		p, err := pcm.Start()
		if err != nil {
			log.Print(err)
			return
		}
		n := &node{proc: p}
		nodes = append(nodes, n)
		n.base, _ = edgebench.RSS(p.PID)
	}
	slab0 := slabBytes()
	start := time.Now()
	for _, n := range nodes {
		cmd := exec.Command(exe, "hold", "-addr", n.proc.WSAddr, "-n", strconv.Itoa(conns))
		cmd.Stderr = os.Stderr
		out, _ := cmd.StdoutPipe()
		n.stdin, _ = cmd.StdinPipe()
		if err := cmd.Start(); err != nil {
			log.Print(err)
			return
		}
		n.child, n.out = cmd, bufio.NewScanner(out)
	}
	connected := 0
	for i, n := range nodes {
		if !n.out.Scan() || !strings.HasPrefix(n.out.Text(), "READY") {
			log.Printf("holder %d: %s", i, n.out.Text())
			return
		}
		fmt.Printf("node %d: %s\n", i, n.out.Text())
		if f := strings.Fields(n.out.Text()); len(f) > 1 {
			c, _ := strconv.Atoi(strings.TrimPrefix(f[1], "connected="))
			connected += c
		}
	}
	fmt.Printf("all connected in %s\n", time.Since(start).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	// Kernel memory of the sockets (both ends are on this machine), outside
	// every RSS; other work on the machine moves it too.
	sockets := 2 * procs * conns
	slab := slabBytes() - slab0
	fmt.Printf("kernel slab growth: %.1fMiB for %d sockets (%.2f KiB/socket)\n", mib(slab), sockets, float64(slab)/float64(sockets)/1024)
	var cpu0 []time.Duration
	for i, n := range nodes {
		rss, _ := edgebench.RSS(n.proc.PID)
		c, _ := edgebench.CPUTime(n.proc.PID)
		cpu0 = append(cpu0, c)
		fmt.Printf("node %d idle: rss=%.1fMiB (%.2f KiB/conn over the base %.1fMiB)\n", i, mib(rss), float64(rss-n.base)/float64(conns)/1024, mib(n.base))
	}
	// Publish rate events/s to each node, round-robin over its 100 channels.
	var published atomic.Int64
	var wg sync.WaitGroup
	d := 10 * time.Second
	pubStart := time.Now()
	for _, n := range nodes {
		wg.Add(1)
		go func(pub peers.Publisher) {
			defer wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			seq := 0
			ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
			defer cancel()
			for now := range tick.C {
				if now.Sub(pubStart) > d {
					return
				}
				due := int(float64(rate) * now.Sub(pubStart).Seconds())
				for seq < due {
					nb := min(10, due-seq)
					evs := make([]edgebench.Event, nb)
					ts := edgebench.Now()
					for j := range evs {
						evs[j] = edgebench.Event{Channel: "cap-" + strconv.Itoa(seq%100), Name: "bench", Data: ts}
						seq++
					}
					if err := pub.Publish(ctx, evs); err != nil {
						log.Printf("publish: %v", err)
						return
					}
					published.Add(int64(nb))
				}
			}
		}(pcm.Publisher(n.proc))
	}
	wg.Wait()
	time.Sleep(2 * time.Second)
	var total time.Duration
	for i, n := range nodes {
		c, _ := edgebench.CPUTime(n.proc.PID)
		total += c - cpu0[i]
	}
	var got int64
	for i, n := range nodes {
		_ = n.stdin.Close()
		n.stdin = nil
		if n.out.Scan() {
			fmt.Printf("node %d: %s\n", i, n.out.Text())
			if f := strings.Fields(n.out.Text()); len(f) > 1 {
				v, _ := strconv.ParseInt(strings.TrimPrefix(f[1], "received="), 10, 64)
				got += v
			}
		}
	}
	// Subscribers are spread evenly over the 100 channels of each node.
	perChannel := float64(connected) / float64(procs) / 100
	fmt.Printf("capacity: published=%d expected=%.0f received=%d over %s; servers' CPU %s = %.2f us/delivered msg, %.2f cores at %.0f msg/s\n",
		published.Load(), float64(published.Load())*perChannel, got, d, total.Round(time.Millisecond),
		float64(total.Microseconds())/float64(max(got, 1)), total.Seconds()/(d+2*time.Second).Seconds(), float64(got)/d.Seconds())
}

// hold is the child of -capacity: it opens -n subscribers of the pushercm at
// -addr (100 channels), prints READY, counts deliveries until its standard
// input closes, then prints them.
func hold(args []string) {
	fs := flag.NewFlagSet("hold", flag.ExitOnError)
	addr := fs.String("addr", "", "pushercm realtime address")
	n := fs.Int("n", 19000, "subscribers")
	_ = fs.Parse(args)
	if _, err := edgebench.RaiseNoFile(); err != nil {
		log.Fatal(err)
	}
	t := edgebench.Target{Addr: *addr, AppID: config.DevAppID, Key: config.DevAppKey, Secret: config.DevAppSecret}
	lat := &edgebench.Latencies{}
	recv, err := edgebench.NewReceiver(1, lat)
	if err != nil {
		log.Fatal(err)
	}
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	var mu sync.Mutex
	start := time.Now()
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= *n {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				c, err := dialSub(ctx, t, "cap-"+strconv.Itoa(i%100))
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				mu.Lock()
				err = recv.AddConn(i, c)
				mu.Unlock()
				if err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("READY connected=%d failed=%d in %s (%.0f/s)\n", int64(*n)-failed.Load(), failed.Load(), el.Round(time.Millisecond), float64(int64(*n)-failed.Load())/el.Seconds())
	if e, ok := firstErr.Load().(string); ok {
		log.Printf("hold: first failure: %s", e)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	recv.Close()
	_, p99, _, _ := lat.Percentiles()
	fmt.Printf("done received=%d p99=%s closed=%d\n", recv.Received.Load(), p99, recv.Closed.Load())
}

func dialSub(ctx context.Context, t edgebench.Target, channel string) (net.Conn, error) {
	c, err := edgebench.Dial(ctx, t)
	if err != nil {
		return nil, err
	}
	if err := c.Subscribe(channel); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c.Conn()
}

// slabBytes is the kernel's slab memory (/proc/meminfo Slab).
func slabBytes() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Slab:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
