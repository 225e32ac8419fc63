package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/milequest/pushercm/cluster"
	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/redistest"
	"github.com/milequest/pushercm/ratelimit"
)

// The adapters satisfy the interfaces they are wired into.
var (
	_ ratelimit.Store           = (*clusterRateStore)(nil)
	_ delivery.IdempotencyStore = (*clusterIdempotency)(nil)
)

// testNode is a clusterNode under prefix that has not dialed Redis, or has
// (dial true) with the client the real dial makes.
func testNode(t *testing.T, addr, prefix, id string, dial bool) *clusterNode {
	t.Helper()
	cfg := cluster.Config{URL: "redis://" + addr, Prefix: prefix, NodeID: id}.WithDefaults()
	n := newClusterNode(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if dial {
		client, err := cluster.Dial(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(client.Close)
		n.client = client
		n.state = cluster.NewState(client, cfg)
		n.broker = cluster.NewBroker(client, cfg, func(cluster.Message) {})
		t.Cleanup(n.broker.Close)
	}
	return n
}

func rule(t *testing.T, burst int) *ratelimit.Rule {
	t.Helper()
	r, err := ratelimit.NewRule(ratelimit.Limits{MessagesPerSecond: 1, BurstLimit: burst, MessagesPerMinute: 100, WindowSize: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func take(t *testing.T, s ratelimit.Store, key string, r *ratelimit.Rule) bool {
	t.Helper()
	d, err := s.Take(context.Background(), key, 1, time.Now(), r)
	if err != nil {
		t.Fatal(err)
	}
	return d.Allowed
}

// Before the node dialed, the node's own limits decide (never refusing
// everything), and that is counted and reported; once dialed, two nodes draw
// from one bucket.
func TestClusterRateStoreFallsBackUntilDialed(t *testing.T) {
	addr := redistest.Addr(t)
	r := rule(t, 2)
	early := newClusterRateStore(testNode(t, addr, redistest.Prefix(t), "n0", false), "user")
	for i, want := range []bool{true, true, false} {
		if got := take(t, early, "u", r); got != want {
			t.Fatalf("before the dial, event %d admitted %v, want %v (the node's own bucket of 2)", i+1, got, want)
		}
	}
	if early.fallbacks() != 3 || !early.degraded() {
		t.Fatalf("fallbacks %d degraded %v, want 3 and true", early.fallbacks(), early.degraded())
	}
	stores := clusterRateStores{"user": early}
	if got := stores.fallingBack(); len(got) != 1 || got[0] != "user" {
		t.Fatalf("fallingBack %v, want [user]", got)
	}

	prefix := redistest.Prefix(t)
	a, b := testNode(t, addr, prefix, "n1", true), testNode(t, addr, prefix, "n2", true)
	sa, sb := newClusterRateStore(a, "user"), newClusterRateStore(b, "user")
	if !take(t, sa, "u", r) || !take(t, sb, "u", r) {
		t.Fatal("the shared bucket of 2 refused its first two events")
	}
	if take(t, sa, "u", r) || take(t, sb, "u", r) {
		t.Fatal("the shared bucket admitted a third event: the nodes do not share it")
	}
	if sa.fallbacks() != 0 || sa.degraded() {
		t.Fatalf("fallbacks %d degraded %v with Redis up", sa.fallbacks(), sa.degraded())
	}
	if d, err := sa.Peek(context.Background(), "u", time.Now(), r); err != nil || d.Allowed {
		t.Fatalf("peek %+v %v, want a refusal from the shared bucket", d, err)
	}
}

// Without Redis a reservation fails with ErrUnavailable (the publish is
// refused, never delivered twice); with it, an id is reserved once across
// nodes and a released id can be reserved again.
func TestClusterIdempotencyAdapter(t *testing.T) {
	addr := redistest.Addr(t)
	ctx := context.Background()
	down := &clusterIdempotency{node: testNode(t, addr, redistest.Prefix(t), "n0", false), window: time.Minute}
	if _, err := down.Reserve(ctx, "id"); !errors.Is(err, cluster.ErrUnavailable) {
		t.Fatalf("reserve before the dial: %v, want ErrUnavailable", err)
	}
	prefix := redistest.Prefix(t)
	a, b := testNode(t, addr, prefix, "n1", true), testNode(t, addr, prefix, "n2", true)
	sa, sb := &clusterIdempotency{node: a, window: time.Minute}, &clusterIdempotency{node: b, window: time.Minute}
	if ok, err := sa.Reserve(ctx, "id"); err != nil || !ok {
		t.Fatalf("first reserve %v %v", ok, err)
	}
	if ok, err := sb.Reserve(ctx, "id"); err != nil || ok {
		t.Fatalf("reserve of the same id on another node %v %v, want a duplicate", ok, err)
	}
	if err := sa.Release(ctx, "id"); err != nil {
		t.Fatal(err)
	}
	if ok, err := sb.Reserve(ctx, "id"); err != nil || !ok {
		t.Fatalf("reserve after release %v %v, want reserved", ok, err)
	}
}

// The pool admits up to the cap across nodes, gives a unit back on release
// (not for sockets admitted without one), and admits while not dialed.
func TestClusterConnectionsPool(t *testing.T) {
	addr := redistest.Addr(t)
	down := &clusterConnections{node: testNode(t, addr, redistest.Prefix(t), "n0", false), max: 1}
	for i := range 2 {
		if !down.AcquireConnection() {
			t.Fatalf("before the dial the pool refused socket %d (the node's own cap decides)", i+1)
		}
	}
	down.ReleaseConnection() // holds no unit: nothing to give back

	prefix := redistest.Prefix(t)
	a, b := testNode(t, addr, prefix, "n1", true), testNode(t, addr, prefix, "n2", true)
	pa, pb := &clusterConnections{node: a, max: 2}, &clusterConnections{node: b, max: 2}
	if !pa.AcquireConnection() || !pb.AcquireConnection() {
		t.Fatal("the cap of 2 refused the first two sockets")
	}
	if pa.AcquireConnection() || pb.AcquireConnection() {
		t.Fatal("the cap of 2 admitted a third socket across two nodes")
	}
	pb.ReleaseConnection()
	pushertest.EventuallyWithin(t, 5*time.Second, "the released unit back", pa.AcquireConnection)
	pb.ReleaseConnection() // pb holds none now: must not free pa's units
	// Not a condition to poll: a wrong release would land asynchronously, so
	// the count is read after a quiet window.
	time.Sleep(50 * time.Millisecond)
	if n, err := a.state.Count(context.Background(), connectionsCounter); err != nil || n != 2 {
		t.Fatalf("counted %d (%v), want 2", n, err)
	}
}
