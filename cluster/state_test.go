package cluster

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/redistest"
)

// states are three nodes' views of one cluster.
func states(t *testing.T) (cfg Config, s [3]*State) {
	t.Helper()
	addr := redistest.Addr(t)
	cfg = Config{Prefix: redistest.Prefix(t)}
	for i, id := range []string{"n0", "n1", "n2"} {
		c := cfg
		c.NodeID = id
		s[i] = NewState(newClient(t, addr), c)
	}
	return cfg, s
}

// must returns v, and panics (failing the test with a stack) on an error.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestOccupancyTransitionsOncePerCluster(t *testing.T) {
	_, s := states(t)
	ctx := context.Background()
	const ch = "private-team-1"
	steps := []struct {
		node  int
		sub   bool
		edge  bool // occupied on a subscribe, vacated on an unsubscribe
		total int64
	}{
		{0, true, true, 1},
		{1, true, false, 2},
		{1, true, false, 3},
		{0, false, false, 2},
		{1, false, false, 1},
		{1, false, true, 0},
		{2, true, true, 1},
		{2, false, true, 0},
	}
	for i, st := range steps {
		var edge bool
		if st.sub {
			edge = must(s[st.node].Subscribed(ctx, ch))
		} else {
			edge = must(s[st.node].Unsubscribed(ctx, ch))
		}
		if edge != st.edge {
			t.Fatalf("step %d: transition %v, want %v", i, edge, st.edge)
		}
		if got := must(s[0].Subscriptions(ctx, ch)); got != st.total {
			t.Fatalf("step %d: %d subscriptions, want %d", i, got, st.total)
		}
	}
}

func TestPresenceIsOneMemberPerUserAcrossNodes(t *testing.T) {
	_, s := states(t)
	ctx := context.Background()
	const ch = "presence-team-1"
	if !must(s[0].Join(ctx, ch, "alice", []byte(`{"name":"Alice"}`), 2)) {
		t.Fatal("alice's first socket is not an added member")
	}
	if must(s[1].Join(ctx, ch, "alice", []byte(`{"name":"Alice"}`), 2)) {
		t.Fatal("alice's socket on a second node was announced again")
	}
	if !must(s[2].Join(ctx, ch, "bob", nil, 2)) {
		t.Fatal("bob not added")
	}
	if _, err := s[1].Join(ctx, ch, "carol", nil, 2); !errors.Is(err, ErrMemberLimit) {
		t.Fatalf("third member past a limit of 2: %v", err)
	}
	if must(s[0].Join(ctx, ch, "alice", nil, 2)) {
		t.Fatal("a member's extra socket is not refused by the limit, nor announced")
	}
	members := must(s[2].Members(ctx, ch))
	if len(members) != 2 || members[0].UserID != "alice" || members[1].UserID != "bob" || members[1].Info != nil {
		t.Fatalf("members %+v", members)
	}
	// alice: two sockets on n0, one on n1.
	if must(s[1].Leave(ctx, ch, "alice")) || must(s[0].Leave(ctx, ch, "alice")) {
		t.Fatal("member_removed while alice still has a socket")
	}
	if !must(s[0].Leave(ctx, ch, "alice")) {
		t.Fatal("alice's last socket left without member_removed")
	}
	if must(s[0].Leave(ctx, ch, "alice")) {
		t.Fatal("a leave without a join removed a member")
	}
	members = must(s[0].Members(ctx, ch))
	if len(members) != 1 || members[0].UserID != "bob" {
		t.Fatalf("members %+v", members)
	}
}

func TestChannelsListsTheClusterCounts(t *testing.T) {
	_, s := states(t)
	ctx := context.Background()
	for _, step := range []struct {
		node int
		ch   string
	}{{0, "presence-a"}, {1, "presence-a"}, {2, "private-b"}, {0, "public-c"}} {
		must(s[step.node].Subscribed(ctx, step.ch))
	}
	must(s[0].Join(ctx, "presence-a", "u1", nil, 0))
	must(s[1].Join(ctx, "presence-a", "u1", nil, 0))
	must(s[2].Subscribed(ctx, "private-gone"))
	must(s[2].Unsubscribed(ctx, "private-gone"))
	all := must(s[1].Channels(ctx, ""))
	want := []ChannelCount{{"presence-a", 2, 1}, {"private-b", 1, 0}, {"public-c", 1, 0}}
	if !slices.Equal(all, want) {
		t.Fatalf("channels %+v, want %+v", all, want)
	}
	if got := must(s[1].Channels(ctx, "pr")); len(got) != 2 {
		t.Fatalf("prefix pr: %+v", got)
	}
}

func TestDeadNodeIsCleanedOnceByItsClaimer(t *testing.T) {
	cfg, s := states(t)
	ctx := context.Background()
	addr := redistest.Addr(t)
	reg := func(id string) *Registry {
		c := cfg
		c.NodeID, c.Heartbeat, c.NodeTTL = id, 100*time.Millisecond, 500*time.Millisecond
		return NewRegistry(newClient(t, addr), c, func() NodeInfo { return NodeInfo{} }, nil)
	}
	r0, r1, r2 := reg("n0"), reg("n1"), reg("n2")
	t.Cleanup(func() { _ = r0.Close(ctx); _ = r1.Close(ctx) })

	// n2 alone holds private-x; alice is on n0 and n2, dave only on n2.
	must(s[2].Subscribed(ctx, "private-x"))
	must(s[0].Subscribed(ctx, "presence-p"))
	must(s[2].Subscribed(ctx, "presence-p"))
	must(s[0].Join(ctx, "presence-p", "alice", nil, 0))
	must(s[2].Join(ctx, "presence-p", "alice", nil, 0))
	must(s[2].Join(ctx, "presence-p", "dave", nil, 0))

	r2.stop() // SIGKILL: no goodbye
	<-r2.done
	var claimer *Registry
	var dead []string
	pushertest.Eventually(t, "n2 reaped", func() bool {
		for _, r := range []*Registry{r0, r1} {
			if got := must(r.Reap(ctx)); len(got) > 0 {
				claimer, dead = r, append(dead, got...)
			}
		}
		return len(dead) > 0
	})
	if !slices.Equal(dead, []string{"n2"}) {
		t.Fatalf("claimed %v, want n2 once", dead)
	}
	cleanups := must(s[0].CleanNode(ctx, "n2"))
	want := []Cleanup{{Channel: "presence-p", Removed: []string{"dave"}}, {Channel: "private-x", Vacated: true}}
	if len(cleanups) != 2 || cleanups[0].Channel != want[0].Channel || !slices.Equal(cleanups[0].Removed, want[0].Removed) ||
		cleanups[0].Vacated || cleanups[1].Channel != "private-x" || !cleanups[1].Vacated || len(cleanups[1].Removed) != 0 {
		t.Fatalf("cleanups %+v, want %+v", cleanups, want)
	}
	if again := must(s[1].CleanNode(ctx, "n2")); len(again) != 0 {
		t.Fatalf("a second clean announced %+v", again)
	}
	if err := claimer.Bury(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	if got := must(r1.Reap(ctx)); len(got) != 0 {
		t.Fatalf("buried node claimed again: %v", got)
	}
	members := must(s[0].Members(ctx, "presence-p"))
	if len(members) != 1 || members[0].UserID != "alice" {
		t.Fatalf("members after the clean-up %+v", members)
	}
	if n := must(s[0].Subscriptions(ctx, "presence-p")); n != 1 {
		t.Fatalf("presence-p has %d subscriptions, want n0's 1", n)
	}
	if got := must(s[0].Channels(ctx, "")); len(got) != 1 || got[0].Name != "presence-p" {
		t.Fatalf("channels %+v", got)
	}
}

func TestRestoreAfterRedisLostEverything(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	cfg := Config{Prefix: "p", Heartbeat: 50 * time.Millisecond, NodeTTL: time.Second}
	// What each node holds locally, as its edge would report it.
	local := map[string][]LocalChannel{
		"n0": {{Name: "presence-p", Subscriptions: 2, Members: []LocalMember{{UserID: "alice", Sockets: 2, Info: []byte(`{"name":"A"}`)}}}},
		"n1": {
			{Name: "presence-p", Subscriptions: 1, Members: []LocalMember{{UserID: "alice", Sockets: 1, Info: []byte(`{"name":"A"}`)}}},
			{Name: "public-q", Subscriptions: 3},
		},
	}
	st := map[string]*State{}
	restored := make(chan string, 10)
	for _, id := range []string{"n0", "n1"} {
		c := cfg
		c.NodeID = id
		client := newClient(t, srv.Addr)
		st[id] = NewState(client, c)
		for _, ch := range local[id] {
			for range ch.Subscriptions {
				must(st[id].Subscribed(ctx, ch.Name))
			}
			for _, m := range ch.Members {
				for range m.Sockets {
					must(st[id].Join(ctx, ch.Name, m.UserID, m.Info, 0))
				}
			}
		}
		r := NewRegistry(client, c, func() NodeInfo { return NodeInfo{} }, func() error {
			if err := st[id].Restore(ctx, local[id]); err != nil {
				return err // the next beat tries again
			}
			restored <- id
			return nil
		})
		t.Cleanup(func() { _ = r.Close(ctx) })
		pushertest.Eventually(t, "registered", func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.lastErr == nil && r.beats > 0
		})
	}
	before := must(st["n0"].Channels(ctx, ""))

	srv.Stop()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for len(got) < 2 {
		select {
		case id := <-restored:
			got[id] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("restored only %v", got)
		}
	}
	after := must(st["n1"].Channels(ctx, ""))
	if !slices.Equal(before, after) || len(after) != 2 {
		t.Fatalf("channels before %+v, after the restore %+v", before, after)
	}
	if m := must(st["n0"].Members(ctx, "presence-p")); len(m) != 1 || string(m[0].Info) != `{"name":"A"}` {
		t.Fatalf("members %+v", m)
	}
	// The restored counts give the right transitions: alice stays while a
	// socket of hers remains anywhere.
	if must(st["n1"].Leave(ctx, "presence-p", "alice")) || must(st["n0"].Leave(ctx, "presence-p", "alice")) {
		t.Fatal("alice removed while she has sockets")
	}
	if !must(st["n0"].Leave(ctx, "presence-p", "alice")) {
		t.Fatal("alice's last socket did not remove her")
	}
}

func TestPublishReceiptCountsTheClusterAndCachesTheLastEvent(t *testing.T) {
	cfg, s := states(t)
	ctx := context.Background()
	b := startBroker(t, newClient(t, redistest.Addr(t)), cfg, &recorder{})
	for i := range 3 {
		must(s[i].Subscribed(ctx, "cache-feed"))
	}
	r := must(b.Publish(ctx, "cache-feed", []byte("one"), PublishOptions{CacheTTL: 300 * time.Millisecond}))
	if r.Subscriptions != 3 || r.Seq != 1 {
		t.Fatalf("receipt %+v, want seq 1 and 3 subscriptions", r)
	}
	must(b.Publish(ctx, "cache-feed", []byte("two"), PublishOptions{CacheTTL: 300 * time.Millisecond}))
	if got := must(b.Cached(ctx, "cache-feed")); string(got) != "two" {
		t.Fatalf("cached %q, want the last event", got)
	}
	if got := must(b.Cached(ctx, "other")); got != nil {
		t.Fatalf("cached %q for a channel never published", got)
	}
	pushertest.Eventually(t, "cache expiry", func() bool { return must(b.Cached(ctx, "cache-feed")) == nil })
	if r := must(b.Publish(ctx, "nobody", []byte("x"), PublishOptions{})); r.Subscriptions != 0 {
		t.Fatalf("receipt %+v for a channel with no subscriptions", r)
	}
}

func TestCountersCapTheClusterAndDeadNodesGiveBack(t *testing.T) {
	_, s := states(t)
	ctx := context.Background()
	// A cap of 5 connections over three nodes.
	admitted := 0
	for i := range 8 {
		if must(s[i%3].Acquire(ctx, "connections", 5)) {
			admitted++
		}
	}
	if admitted != 5 || must(s[0].Count(ctx, "connections")) != 5 {
		t.Fatalf("admitted %d, counted %d; want the cap of 5", admitted, must(s[0].Count(ctx, "connections")))
	}
	if err := s[0].Release(ctx, "connections"); err != nil {
		t.Fatal(err)
	}
	if !must(s[1].Acquire(ctx, "connections", 5)) {
		t.Fatal("a released unit was not available to another node")
	}
	// n2 holds one of them (i = 2; at i = 5 the cap was reached); it dies and
	// is cleaned.
	cleanups := must(s[0].CleanNode(ctx, "n2"))
	if len(cleanups) != 0 {
		t.Fatalf("counters announced as channel transitions: %+v", cleanups)
	}
	if n := must(s[0].Count(ctx, "connections")); n != 4 {
		t.Fatalf("after n2's clean-up %d counted, want 4", n)
	}
	if got := must(s[0].Channels(ctx, "")); len(got) != 0 {
		t.Fatalf("counters listed as channels: %+v", got)
	}
}

// A node cleaned as dead while it still ran (or a Redis that lost its data)
// writes its units back: the cap counts them again.
func TestRestoreCounterPutsBackANodesUnits(t *testing.T) {
	_, s := states(t)
	ctx := context.Background()
	for range 2 {
		must(s[0].Acquire(ctx, "connections", 3))
	}
	must(s[1].Acquire(ctx, "connections", 3))
	must(s[0].CleanNode(ctx, "n0"))
	if n := must(s[1].Count(ctx, "connections")); n != 1 {
		t.Fatalf("after n0's clean-up %d counted, want 1", n)
	}
	if err := s[0].RestoreCounter(ctx, "connections", 2); err != nil {
		t.Fatal(err)
	}
	if n := must(s[1].Count(ctx, "connections")); n != 3 {
		t.Fatalf("after n0 restored 2 units %d counted, want 3", n)
	}
	if must(s[2].Acquire(ctx, "connections", 3)) {
		t.Fatal("the cap admitted a unit over restored units")
	}
	// Restoring twice sets, it does not add; zero removes the node's units.
	if err := s[0].RestoreCounter(ctx, "connections", 2); err != nil {
		t.Fatal(err)
	}
	if err := s[1].RestoreCounter(ctx, "connections", 0); err != nil {
		t.Fatal(err)
	}
	if n := must(s[2].Count(ctx, "connections")); n != 2 {
		t.Fatalf("%d counted, want n0's 2", n)
	}
	// A restored node that dies is cleaned like any other.
	must(s[2].CleanNode(ctx, "n0"))
	if n := must(s[2].Count(ctx, "connections")); n != 0 {
		t.Fatalf("%d counted after n0's clean-up, want 0", n)
	}
}
