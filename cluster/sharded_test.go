package cluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/redistest"
)

// redisCluster is a Redis Cluster of the test's own and a way to tell which
// master owns a channel.
type redisCluster struct {
	seeds  []string
	ranges []slotRange
}

func startRedisCluster(t *testing.T) *redisCluster {
	t.Helper()
	return newRedisCluster(t, redistest.StartCluster(t))
}

// newRedisCluster reads which master owns which slots of the cluster seeds
// belong to.
func newRedisCluster(t *testing.T, seeds []string) *redisCluster {
	t.Helper()
	rc := &redisCluster{seeds: seeds}
	v, err := redistest.Do(rc.seeds[0], "CLUSTER", "SLOTS")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range v.([]any) {
		r := r.([]any)
		m := r[2].([]any)
		rc.ranges = append(rc.ranges, slotRange{lo: uint16(r[0].(int64)), hi: uint16(r[1].(int64)),
			addr: net.JoinHostPort(m[0].(string), strconv.FormatInt(m[1].(int64), 10))})
	}
	return rc
}

func (rc *redisCluster) client(t *testing.T) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: rc.seeds, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// master is the address of the master that owns channel.
func (rc *redisCluster) master(c rueidis.Client, prefix, channel string) string {
	cmd := c.B().Spublish().Channel(keyspace{prefix}.topic(channel)).Message("").Build()
	slot := cmd.Slot()
	for _, r := range rc.ranges {
		if r.lo <= slot && slot <= r.hi {
			return r.addr
		}
	}
	return ""
}

// spread names n channels owned by each master.
func (rc *redisCluster) spread(c rueidis.Client, prefix string, n int) map[string][]string {
	out := map[string][]string{}
	for i := 0; len(out) < len(rc.ranges) || slices.ContainsFunc(rc.ranges, func(r slotRange) bool { return len(out[r.addr]) < n }); i++ {
		ch := fmt.Sprint("ch-", i)
		if m := rc.master(c, prefix, ch); len(out[m]) < n {
			out[m] = append(out[m], ch)
		}
	}
	return out
}

func commandCalls(t *testing.T, addr, cmd string) int {
	t.Helper()
	calls, err := redistest.CommandCalls(addr)
	if err != nil {
		t.Fatal(err)
	}
	return calls[cmd]
}

func shardChannels(t *testing.T, addr, prefix string) []string {
	t.Helper()
	v, err := redistest.Do(addr, "PUBSUB", "SHARDCHANNELS", prefix+":*")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	slices.Sort(out)
	return out
}

// byChannel splits messages per channel.
func byChannel(msgs []Message) map[string][]Message {
	out := map[string][]Message{}
	for _, m := range msgs {
		out[m.Channel] = append(out[m.Channel], m)
	}
	return out
}

// shardedPair is a subscribing and a publishing broker on a Redis Cluster of
// the test's own, under one prefix.
type shardedPair struct {
	rc       *redisCluster
	rec      *recorder
	sub, pub *Broker
}

const shardedPrefix = "sharded"

func startShardedPair(t *testing.T, cfg Config) shardedPair {
	t.Helper()
	cfg.Prefix = shardedPrefix
	p := shardedPair{rc: startRedisCluster(t), rec: &recorder{}}
	p.sub = startBroker(t, p.rc.client(t), cfg, p.rec)
	p.pub = startBroker(t, p.rc.client(t), cfg, &recorder{})
	return p
}

// subscribe subscribes the subscriber to every channel of spread (n per
// master), in one list it returns.
func (p shardedPair) subscribe(t *testing.T, spread map[string][]string) []string {
	t.Helper()
	var all []string
	for _, cs := range spread {
		all = append(all, cs...)
	}
	p.subscribeAll(t, all)
	return all
}

func (p shardedPair) subscribeAll(t *testing.T, chans []string) {
	t.Helper()
	for _, ch := range chans {
		if err := p.sub.Subscribe(context.Background(), ch); err != nil {
			t.Fatal(err)
		}
	}
}

// On Redis Cluster a publication is one SPUBLISH that reaches only the master
// owning the channel, and a node subscribes each channel on that master.
func TestShardedPubSubOnRedisCluster(t *testing.T) {
	sp := startShardedPair(t, Config{})
	rc, sub, pub, rec := sp.rc, sp.sub, sp.pub, sp.rec
	const prefix = shardedPrefix
	ctx := context.Background()
	chans := rc.spread(sub.client, prefix, 3)
	all := sp.subscribe(t, chans)
	// Every channel is subscribed on its own master, and only there.
	pushertest.Eventually(t, "every channel subscribed", func() bool {
		for m, cs := range chans {
			if len(shardChannels(t, m, prefix)) != len(cs) {
				return false
			}
		}
		return true
	})
	for m, cs := range chans {
		var want []string
		for _, ch := range cs {
			want = append(want, keyspace{prefix}.topic(ch))
		}
		slices.Sort(want)
		if got := shardChannels(t, m, prefix); !slices.Equal(got, want) {
			t.Fatalf("master %s has shard channels %v, want %v", m, got, want)
		}
	}
	want := payloads(50)
	for _, p := range want {
		for _, ch := range all {
			if _, err := pub.Publish(ctx, ch, []byte(p), PublishOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	pushertest.Eventually(t, "all delivered", func() bool { return len(rec.snapshot()) >= len(want)*len(all) })
	got := byChannel(rec.snapshot())
	for _, ch := range all {
		checkPayloads(t, got[ch], want)
	}
	for m, cs := range chans {
		if n := commandCalls(t, m, "publish"); n != 0 {
			t.Errorf("master %s ran PUBLISH %d times, want none", m, n)
		}
		if n := commandCalls(t, m, "spublish"); n != len(want)*len(cs) {
			t.Errorf("master %s ran SPUBLISH %d times, want %d (its own channels' publications)", m, n, len(want)*len(cs))
		}
		if n := commandCalls(t, m, "ssubscribe"); n < len(cs) {
			t.Errorf("master %s ran SSUBSCRIBE %d times, want at least %d", m, n, len(cs))
		}
		if n := commandCalls(t, m, "subscribe"); n != 0 {
			t.Errorf("master %s ran SUBSCRIBE %d times, want none", m, n)
		}
	}
	if s := sub.Stats(); s.Lost != 0 || s.Recovered != 0 || !s.Up {
		t.Fatalf("stats %+v: want up, nothing lost or recovered", s)
	}
}

// Killing one master's pub/sub connections loses nothing: the broker
// subscribes that master's channels again and catches them up.
func TestShardedPubSubSurvivesKilledConnections(t *testing.T) {
	sp := startShardedPair(t, Config{})
	rc, sub, pub, rec := sp.rc, sp.sub, sp.pub, sp.rec
	const prefix = shardedPrefix
	chans := rc.spread(sub.client, prefix, 2)
	all := sp.subscribe(t, chans)
	stop := publishing(t, pub, all)
	time.Sleep(50 * time.Millisecond)
	victim := rc.ranges[0].addr
	if _, err := redistest.Do(victim, "CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatal(err)
	}
	pushertest.Eventually(t, "reconnected", func() bool { s := sub.Stats(); return s.Reconnects > 0 && s.Up })
	pushertest.Eventually(t, "resubscribed", func() bool { return len(shardChannels(t, victim, prefix)) == len(chans[victim]) })
	time.Sleep(50 * time.Millisecond)
	waitDelivered(t, rec, stop(), all)
	if s := sub.Stats(); s.Lost != 0 {
		t.Fatalf("stats %+v: want nothing lost", s)
	}
}

// Unsubscribed channels stay subscribed on their master until its connection
// is replaced; the replacement loses nothing and touches no other master.
func TestShardedUnsubscribeReplacesOneMastersConnection(t *testing.T) {
	sp := startShardedPair(t, Config{HistorySize: 1})
	rc, sub, pub, rec := sp.rc, sp.sub, sp.pub, sp.rec
	const prefix = shardedPrefix
	ctx := context.Background()
	spread := rc.spread(sub.client, prefix, 1)
	victim := rc.ranges[0].addr
	live := sp.subscribe(t, spread)
	// The first channel of a master is subscribed by the run loop, which
	// connects to the master; wait for that before counting stale channels.
	pushertest.Eventually(t, "every channel subscribed", func() bool {
		for m := range spread {
			if len(shardChannels(t, m, prefix)) != 1 {
				return false
			}
		}
		return true
	})
	stop := publishing(t, pub, live)
	var gone []string
	for i := 0; len(gone) < staleMin; i++ {
		if ch := fmt.Sprint("gone-", i); rc.master(sub.client, prefix, ch) == victim {
			gone = append(gone, ch)
		}
	}
	for _, ch := range gone {
		if err := sub.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
		if err := sub.Unsubscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	pushertest.Eventually(t, "the connection replaced", func() bool { return sub.Stats().Recycles == 1 })
	pushertest.Eventually(t, "the stale channels gone from Redis", func() bool { return len(shardChannels(t, victim, prefix)) == 1 })
	if s := sub.Stats(); s.Stale != 0 || s.Subscribed != len(live) || !s.Up {
		t.Fatalf("stats after the replacement %+v: want up, %d channels, none stale", s, len(live))
	}
	time.Sleep(50 * time.Millisecond)
	// With a history of one message, a gap could not be filled: every message
	// came live, exactly once.
	total := waitDelivered(t, rec, stop(), live)
	if s := sub.Stats(); s.Lost != 0 || s.Recycles != 1 {
		t.Fatalf("stats %+v: want nothing lost, one replacement", s)
	}
	// A message to an unsubscribed channel reaches no handler.
	if _, err := pub.Publish(ctx, gone[0], []byte("x"), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, live[0], []byte("last"), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	pushertest.Eventually(t, "last", func() bool { return len(rec.snapshot()) == total+1 })
	if got := rec.snapshot(); got[len(got)-1].Channel != live[0] {
		t.Fatalf("last message on %q, want %s", got[len(got)-1].Channel, live[0])
	}
}

// A channel's slot moved to another master while it is published: Redis
// unsubscribes it on the old master, and the broker subscribes it on the new
// one and catches it up, losing nothing.
func TestShardedPubSubFollowsAMigratedSlot(t *testing.T) {
	sp := startShardedPair(t, Config{})
	rc, sub, pub, rec := sp.rc, sp.sub, sp.pub, sp.rec
	const prefix = shardedPrefix
	from, to := rc.ranges[0].addr, rc.ranges[1].addr
	spread := rc.spread(sub.client, prefix, 2)
	moving, staying := spread[from][0], spread[from][1]
	all := append([]string{staying}, spread[to]...)
	all = append(all, moving)
	sp.subscribeAll(t, all)
	pushertest.Eventually(t, "every channel subscribed", func() bool {
		return len(shardChannels(t, from, prefix)) == 2 && len(shardChannels(t, to, prefix)) == 2
	})

	// A publication Redis refused (ASK, TRYAGAIN during the migration) is not
	// counted.
	stop := publishingAccepted(pub, all, "")
	time.Sleep(50 * time.Millisecond)

	id := func(addr string) string {
		v, err := redistest.Do(addr, "CLUSTER", "MYID")
		if err != nil {
			t.Fatal(err)
		}
		return v.(string)
	}
	fromID, toID := id(from), id(to)
	slot := strconv.Itoa(int(sub.slotOf(moving)))
	must := func(addr string, args ...string) any {
		v, err := redistest.Do(addr, args...)
		if err != nil {
			t.Fatalf("%s %v: %v", addr, args, err)
		}
		return v
	}
	must(to, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID)
	must(from, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID)
	host, port, _ := net.SplitHostPort(to)
	for {
		keys := must(from, "CLUSTER", "GETKEYSINSLOT", slot, "100").([]any)
		if len(keys) == 0 {
			break
		}
		args := []string{"MIGRATE", host, port, "", "0", "5000", "KEYS"}
		for _, k := range keys {
			args = append(args, k.(string))
		}
		must(from, args...)
	}
	for _, r := range rc.ranges {
		must(r.addr, "CLUSTER", "SETSLOT", slot, "NODE", toID)
	}

	pushertest.Eventually(t, "the channel subscribed on its new master", func() bool {
		return slices.Contains(shardChannels(t, to, prefix), keyspace{prefix}.topic(moving)) &&
			!slices.Contains(shardChannels(t, from, prefix), keyspace{prefix}.topic(moving))
	})
	time.Sleep(100 * time.Millisecond)
	waitDelivered(t, rec, stop(), all)
	if s := sub.Stats(); s.Lost != 0 || !s.Up {
		t.Fatalf("stats %+v: want up, nothing lost", s)
	}
}

// A master is killed and its replica takes over (Redis Cluster's own
// failover): the subscriber's connection to the dead master breaks, it
// subscribes the master's channels on the promoted replica and catches them
// up; every publish Redis accepted, before and after, is delivered once, in
// order.
func TestShardedPubSubFollowsAFailover(t *testing.T) {
	c := redistest.StartClusterWithReplicas(t)
	rc := newRedisCluster(t, c.Addrs)
	const prefix = shardedPrefix
	cfg := Config{Prefix: prefix}
	rec := &recorder{}
	sub := startBroker(t, rc.client(t), cfg, rec)
	pub := startBroker(t, rc.client(t), cfg, &recorder{})
	spread := rc.spread(sub.client, prefix, 2)
	victim := rc.ranges[0].addr
	all := (shardedPair{sub: sub}).subscribe(t, spread)
	pushertest.Eventually(t, "every channel subscribed", func() bool {
		n := 0
		for _, r := range rc.ranges {
			n += len(shardChannels(t, r.addr, prefix))
		}
		return n == len(all)
	})

	stop := publishingAccepted(pub, all, "")
	time.Sleep(100 * time.Millisecond)
	sent := stop()
	// Everything the victim accepted is on its replica before it dies: this
	// failover loses nothing (TestBrokerDeliversAfterRedisLostWrites is the
	// one that does).
	redistest.EventuallyReplicated(t, c.Addrs)
	c.Kill(victim)

	var promoted string
	pushertest.EventuallyWithin(t, 30*time.Second, "a replica promoted in the victim's place", func() error {
		if promoted = redistest.SlotOwner(c.Addrs, int64(rc.ranges[0].lo)); promoted == "" || promoted == victim {
			return fmt.Errorf("slots %d.. still on %s", rc.ranges[0].lo, victim)
		}
		return nil
	})
	stop = publishingAccepted(pub, all, "after-")
	pushertest.EventuallyWithin(t, 30*time.Second, "the victim's channels subscribed on the promoted replica", func() error {
		if got := len(shardChannels(t, promoted, prefix)); got != len(spread[victim]) {
			sub.mu.Lock()
			var shards []string
			for a, sh := range sub.shards {
				shards = append(shards, fmt.Sprintf("%s(broken=%v live=%d)", a, sh.broken.Load(), sh.live))
			}
			slots := fmt.Sprint(sub.slots)
			sub.mu.Unlock()
			dbg := fmt.Sprintf("slots=%v shards=%v stats=%+v", slots, shards, sub.Stats())
			return fmt.Errorf("%d of %d on %s; %s", got, len(spread[victim]), promoted, dbg)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	for ch, ps := range stop() {
		sent[ch] = append(sent[ch], ps...)
	}
	for _, ch := range spread[victim] {
		if n := len(sent[ch]); n == 0 || !strings.HasPrefix(sent[ch][n-1], "after-") {
			t.Fatalf("no publish to %s accepted after the failover", ch)
		}
	}
	waitDelivered(t, rec, sent, all)
	if s := sub.Stats(); s.Lost != 0 || !s.Up {
		t.Fatalf("stats %+v: want up, nothing lost", s)
	}
}
