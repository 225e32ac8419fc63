package cluster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/redistest"
)

func ids(nodes []NodeInfo) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.ID)
	}
	return out
}

func TestRegistryListsGoodbyesAndReapsTheDeadOnce(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	ctx := context.Background()
	start := time.Now().UTC().Truncate(time.Second)
	reg := func(id string, conns int) *Registry {
		cfg := Config{Prefix: prefix, NodeID: id, Heartbeat: 100 * time.Millisecond, NodeTTL: 600 * time.Millisecond}
		r := NewRegistry(newClient(t, addr), cfg, func() NodeInfo {
			return NodeInfo{Version: "v-test", GRPCAddr: id + ":50051", Connections: conns, StartedAt: start}
		}, nil)
		return r
	}
	a, b, c := reg("node-a", 1), reg("node-b", 2), reg("node-c", 3)
	t.Cleanup(func() { _ = b.Close(ctx) })

	pushertest.Eventually(t, "three nodes", func() bool {
		n, err := a.Nodes(ctx)
		return err == nil && slices.Equal(ids(n), []string{"node-a", "node-b", "node-c"})
	})
	nodes, _ := a.Nodes(ctx)
	if n := nodes[1]; n.Connections != 2 || n.GRPCAddr != "node-b:50051" || n.Version != "v-test" || !n.StartedAt.Equal(start) ||
		time.Since(n.LastHeartbeat) > 5*time.Second || n.LastHeartbeat.After(time.Now().Add(time.Second)) {
		t.Fatalf("node-b = %+v", n)
	}

	// A goodbye removes the node at once.
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	nodes, err := b.Nodes(ctx)
	if err != nil || !slices.Equal(ids(nodes), []string{"node-b", "node-c"}) {
		t.Fatalf("after node-a's goodbye: %v, %v", ids(nodes), err)
	}

	// node-c dies without a goodbye: gone from Nodes within NodeTTL, and reaped
	// by exactly one of two concurrent reapers.
	c.stop()
	<-c.done
	died := time.Now()
	pushertest.Eventually(t, "node-c expired", func() bool {
		n, err := b.Nodes(ctx)
		return err == nil && slices.Equal(ids(n), []string{"node-b"})
	})
	if d := time.Since(died); d > 2*time.Second {
		t.Fatalf("node-c disappeared after %s, NodeTTL is 600ms", d)
	}
	var mu sync.Mutex
	var reaped []string
	pushertest.Eventually(t, "node-c reaped", func() bool {
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := b.Reap(ctx)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				reaped = append(reaped, got...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return len(reaped) > 0
	})
	if !slices.Equal(reaped, []string{"node-c"}) {
		t.Fatalf("reaped %v, want node-c once", reaped)
	}
	if got, _ := b.Reap(ctx); len(got) != 0 {
		t.Fatalf("reaped again: %v", got)
	}
}

func TestDial(t *testing.T) {
	c, err := Dial(Config{URL: "redis://" + redistest.Addr(t) + "/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Do(context.Background(), c.B().Ping().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	srv := redistest.Start(t)
	srv.Stop()
	if _, err := Dial(Config{URL: "redis://" + srv.Addr}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Dial to a stopped Redis: %v, want ErrUnavailable", err)
	}
	if _, err := Dial(Config{URL: "mysql://x"}); err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("Dial with a bad URL: %v, want a configuration error", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"no redis", Config{}, true},
		{"url", Config{URL: "redis://user:pw@127.0.0.1:6379/2"}, true},
		{"tls", Config{URL: "rediss://127.0.0.1:6380"}, true},
		{"cluster", Config{ClusterAddrs: []string{"127.0.0.1:7000", "127.0.0.1:7001"}}, true},
		{"bad scheme", Config{URL: "http://127.0.0.1"}, false},
		{"prefix with colon", Config{URL: "redis://x", Prefix: "a:b"}, false},
		{"prefix with brace", Config{URL: "redis://x", Prefix: "a{b"}, false},
		{"node id with space", Config{URL: "redis://x", NodeID: "a b"}, false},
		{"ttl below two heartbeats", Config{URL: "redis://x", Heartbeat: time.Second, NodeTTL: 1500 * time.Millisecond}, false},
		{"negative history", Config{URL: "redis://x", HistorySize: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.WithDefaults().Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if id := DefaultNodeID(); id == "" || Config.Validate(Config{URL: "redis://x", NodeID: id}.WithDefaults()) != nil {
		t.Fatalf("DefaultNodeID %q is not valid", id)
	}
}
