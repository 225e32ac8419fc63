package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/redistest"
)

func newClient(t *testing.T, addr string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// recorder collects what a broker's handler gets.
type recorder struct {
	mu    sync.Mutex
	msgs  []Message
	delay time.Duration
}

func (r *recorder) handle(m Message) {
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

// ownRedisPair starts a Redis of the test's own and, on it, a subscribing and
// a publishing broker, the subscriber subscribed to chans.
func ownRedisPair(t *testing.T, cfg Config, chans ...string) (srv *redistest.Server, sub, pub *Broker, rec *recorder) {
	t.Helper()
	srv = redistest.Start(t)
	rec = &recorder{}
	sub = startBroker(t, newClient(t, srv.Addr), cfg, rec)
	pub = startBroker(t, newClient(t, srv.Addr), cfg, &recorder{})
	for _, ch := range chans {
		if err := sub.Subscribe(context.Background(), ch); err != nil {
			t.Fatal(err)
		}
	}
	return srv, sub, pub, rec
}

func startBroker(t *testing.T, c rueidis.Client, cfg Config, r *recorder) *Broker {
	t.Helper()
	b := NewBroker(c, cfg, r.handle)
	t.Cleanup(b.Close)
	pushertest.Eventually(t, "broker up", func() bool { return b.Stats().Up })
	return b
}

// checkPayloads fails unless got holds exactly want's payloads in order, with
// strictly increasing sequence numbers.
func checkPayloads(t *testing.T, got []Message, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i, m := range got {
		if string(m.Payload) != want[i] {
			t.Fatalf("message %d = %q, want %q", i, m.Payload, want[i])
		}
		if i > 0 && m.Seq <= got[i-1].Seq {
			t.Fatalf("message %d has seq %d after %d", i, m.Seq, got[i-1].Seq)
		}
	}
}

func payloads(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("event-%03d", i)
	}
	return out
}

func TestPublishReachesEverySubscribedNodeInOrder(t *testing.T) {
	addr := redistest.Addr(t)
	cfg := Config{Prefix: redistest.Prefix(t)}
	var recs [3]recorder
	var brokers [3]*Broker
	for i := range brokers {
		brokers[i] = startBroker(t, newClient(t, addr), cfg, &recs[i])
	}
	ctx := context.Background()
	// Nodes 0 and 1 have subscribers; node 2 only publishes.
	for _, b := range brokers[:2] {
		if err := b.Subscribe(ctx, "private-team-1"); err != nil {
			t.Fatal(err)
		}
	}
	want := payloads(200)
	for _, p := range want {
		if _, err := brokers[2].Publish(ctx, "private-team-1", []byte(p), PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		pushertest.Eventually(t, "delivery", func() bool { return len(recs[i].snapshot()) == len(want) })
		checkPayloads(t, recs[i].snapshot(), want)
	}
	if n := len(recs[2].snapshot()); n != 0 {
		t.Fatalf("the node without subscribers received %d messages", n)
	}
	if s := brokers[0].Stats(); s.Lost != 0 || s.Recovered != 0 {
		t.Fatalf("stats %+v: nothing should be lost or recovered", s)
	}
}

func TestPublishedBeforeSubscribeIsNotDelivered(t *testing.T) {
	addr := redistest.Addr(t)
	cfg := Config{Prefix: redistest.Prefix(t)}
	var rec recorder
	sub := startBroker(t, newClient(t, addr), cfg, &rec)
	pub := startBroker(t, newClient(t, addr), cfg, &recorder{})
	ctx := context.Background()
	for _, p := range []string{"old-1", "old-2"} {
		if _, err := pub.Publish(ctx, "c", []byte(p), PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sub.Subscribe(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, "c", []byte("new"), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	pushertest.Eventually(t, "new message", func() bool { return len(rec.snapshot()) >= 1 })
	checkPayloads(t, rec.snapshot(), []string{"new"})
	if got := rec.snapshot()[0].Seq; got != 3 {
		t.Fatalf("seq = %d, want 3", got)
	}
}

func TestPrefixesNeverCross(t *testing.T) {
	addr := redistest.Addr(t)
	var recA, recB recorder
	a := startBroker(t, newClient(t, addr), Config{Prefix: redistest.Prefix(t)}, &recA)
	b := startBroker(t, newClient(t, addr), Config{Prefix: redistest.Prefix(t)}, &recB)
	ctx := context.Background()
	for _, br := range []*Broker{a, b} {
		if err := br.Subscribe(ctx, "shared-name"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Publish(ctx, "shared-name", []byte("for-a"), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, "shared-name", []byte("for-b"), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	pushertest.Eventually(t, "both", func() bool { return len(recA.snapshot()) == 1 && len(recB.snapshot()) == 1 })
	// One more round trip on each, so a stray cross message would have arrived.
	for _, br := range []*Broker{a, b} {
		if _, err := br.Publish(ctx, "shared-name", []byte("end"), PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pushertest.Eventually(t, "end", func() bool { return len(recA.snapshot()) == 2 && len(recB.snapshot()) == 2 })
	checkPayloads(t, recA.snapshot(), []string{"for-a", "end"})
	checkPayloads(t, recB.snapshot(), []string{"for-b", "end"})
}

func TestQueueOverflowIsCaughtUpFromHistory(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	rec := recorder{delay: 200 * time.Microsecond}
	sub := startBroker(t, newClient(t, addr), Config{Prefix: prefix, QueueSize: 1}, &rec)
	pub := startBroker(t, newClient(t, addr), Config{Prefix: prefix}, &recorder{})
	ctx := context.Background()
	if err := sub.Subscribe(ctx, "busy"); err != nil {
		t.Fatal(err)
	}
	want := payloads(300)
	var wg sync.WaitGroup
	// Overlapping publishers: the order is whatever Redis numbered.
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(want); i += 4 {
				if _, err := pub.Publish(ctx, "busy", []byte(want[i]), PublishOptions{}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	pushertest.Eventually(t, "all delivered", func() bool { return len(rec.snapshot()) == len(want) })
	got := rec.snapshot()
	for i, m := range got {
		if m.Seq != uint64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
	}
	s := sub.Stats()
	if s.Dropped == 0 || s.Recovered == 0 || s.Lost != 0 {
		t.Fatalf("stats %+v: want drops caught up from the history, nothing lost", s)
	}
}

func TestHistoryTooShortCountsLost(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	rec := recorder{delay: time.Millisecond}
	sub := startBroker(t, newClient(t, addr), Config{Prefix: prefix, QueueSize: 1, HistorySize: 5}, &rec)
	pub := startBroker(t, newClient(t, addr), Config{Prefix: prefix, HistorySize: 5}, &recorder{})
	ctx := context.Background()
	if err := sub.Subscribe(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	const n = 500
	for i := range n {
		if _, err := pub.Publish(ctx, "c", []byte(strconv.Itoa(i)), PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The last message is always still in the history, so it is delivered.
	pushertest.Eventually(t, "the last message", func() bool {
		got := rec.snapshot()
		return len(got) > 0 && got[len(got)-1].Seq == n
	})
	if s := sub.Stats(); s.Received+s.Lost != n {
		t.Fatalf("stats %+v: received and lost should add up to %d", s, n)
	}
	got := rec.snapshot()
	for i := 1; i < len(got); i++ {
		if got[i].Seq <= got[i-1].Seq {
			t.Fatalf("out of order: %d after %d", got[i].Seq, got[i-1].Seq)
		}
	}
	if sub.Stats().Lost == 0 {
		t.Fatal("a history of 5 cannot have covered the gaps, yet nothing was counted lost")
	}
}

func TestRedisRestartRefusesThenResumes(t *testing.T) {
	srv, sub, pub, rec := ownRedisPair(t, Config{Prefix: "p"}, "c")
	ctx := context.Background()
	if _, err := pub.Publish(ctx, "c", []byte("before"), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	pushertest.Eventually(t, "before", func() bool { return len(rec.snapshot()) == 1 })

	srv.Stop()
	pushertest.Eventually(t, "subscriber sees the loss", func() bool { return !sub.Stats().Up })
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := pub.Publish(pctx, "c", []byte("during"), PublishOptions{})
	cancel()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("publish during the outage: %v, want ErrUnavailable", err)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	pushertest.Eventually(t, "subscriber back", func() bool { return sub.Stats().Up })
	// The restarted Redis is empty: a new history epoch starts at 1.
	pushertest.Eventually(t, "publish after the restart", func() bool {
		_, err := pub.Publish(ctx, "c", []byte("after"), PublishOptions{})
		return err == nil
	})
	pushertest.Eventually(t, "after", func() bool { return len(rec.snapshot()) == 2 })
	// Sequence numbers restart with the new history: compare payloads only.
	if got := rec.snapshot(); string(got[0].Payload) != "before" || string(got[1].Payload) != "after" || got[1].Seq != 1 {
		t.Fatalf("got %+v, want before then after (seq 1 of a new history)", got)
	}
	if s := sub.Stats(); s.Reconnects == 0 {
		t.Fatalf("stats %+v: want a reconnect", s)
	}
}

func TestLostPubSubConnectionCatchesUp(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	var rec recorder
	sub := startBroker(t, newClient(t, addr), Config{Prefix: prefix}, &rec)
	pub := startBroker(t, newClient(t, addr), Config{Prefix: prefix}, &recorder{})
	ctx := context.Background()
	if err := sub.Subscribe(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	want := payloads(300)
	killed := false
	for i, p := range want {
		if _, err := pub.Publish(ctx, "c", []byte(p), PublishOptions{}); err != nil {
			t.Fatal(err)
		}
		if i == 100 {
			// Cut every pub/sub connection of the test's Redis: the subscriber's
			// misses what is published until it is back.
			if _, err := redistest.Do(addr, "CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	if !killed {
		t.Fatal("no kill")
	}
	pushertest.Eventually(t, "all delivered", func() bool { return len(rec.snapshot()) == len(want) })
	checkPayloads(t, rec.snapshot(), want)
	if s := sub.Stats(); s.Reconnects == 0 || s.Lost != 0 {
		t.Fatalf("stats %+v: want a reconnect and nothing lost", s)
	}
}

func TestCommandsPerPublishDoNotGrowWithSubscribers(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	perPublish := func(nodes int) float64 {
		cfg := Config{Prefix: "p" + strconv.Itoa(nodes)}
		var recs = make([]recorder, nodes)
		for i := range nodes {
			b := startBroker(t, newClient(t, srv.Addr), cfg, &recs[i])
			if err := b.Subscribe(ctx, "c"); err != nil {
				t.Fatal(err)
			}
		}
		pub := startBroker(t, newClient(t, srv.Addr), cfg, &recorder{})
		if _, err := pub.Publish(ctx, "c", []byte("warm"), PublishOptions{}); err != nil { // loads the script
			t.Fatal(err)
		}
		for i := range recs {
			pushertest.Eventually(t, "warm", func() bool { return len(recs[i].snapshot()) == 1 })
		}
		if _, err := redistest.Do(srv.Addr, "CONFIG", "RESETSTAT"); err != nil {
			t.Fatal(err)
		}
		const n = 100
		for range n {
			if _, err := pub.Publish(ctx, "c", []byte("x"), PublishOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		stats, err := redistest.CommandCalls(srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		var calls int
		// Only the publish path: evalsha and what the script runs.
		for _, cmd := range []string{"evalsha", "hincrby", "hget", "expire", "xadd", "publish", "hset", "del"} {
			calls += stats[cmd]
		}
		return float64(calls) / n
	}
	one, three := perPublish(1), perPublish(3)
	if one != three || one == 0 {
		t.Fatalf("Redis commands per publish: %.2f with one subscribed node, %.2f with three", one, three)
	}
	t.Logf("Redis commands per publish: %.2f (1 EVALSHA and what its script runs)", one)
}

// TestCongestedChannelHoldsPublishers: a node says a channel is congested;
// a publish through another node reports the hold in its receipt (from the
// publish script, no extra call), Congestion sees it too, another node
// cannot clear it, and the node that set it can.
func TestCongestedChannelHoldsPublishers(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	var recs [3]recorder
	congestedNode := startBroker(t, newClient(t, addr), Config{Prefix: prefix, NodeID: "n0"}, &recs[0])
	publisher := startBroker(t, newClient(t, addr), Config{Prefix: prefix, NodeID: "n1"}, &recs[1])
	other := startBroker(t, newClient(t, addr), Config{Prefix: prefix, NodeID: "n2"}, &recs[2])
	ctx := context.Background()

	r, err := publisher.Publish(ctx, "busy", []byte("a"), PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Hold != 0 {
		t.Fatalf("hold %v before any node said the channel is congested", r.Hold)
	}
	if err := congestedNode.SetCongested(ctx, "busy", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	r, err = publisher.Publish(ctx, "busy", []byte("b"), PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Hold <= 4*time.Second || r.Hold > 5*time.Second {
		t.Fatalf("receipt hold %v, want the congestion's remaining ~5s", r.Hold)
	}
	if r, err := publisher.Publish(ctx, "quiet", []byte("c"), PublishOptions{}); err != nil || r.Hold != 0 {
		t.Fatalf("another channel: hold %v, err %v", r.Hold, err)
	}
	if err := other.ClearCongested(ctx, "busy"); err != nil {
		t.Fatal(err)
	}
	if d, err := publisher.Congestion(ctx, "busy"); err != nil || d <= 0 {
		t.Fatalf("after another node's clear: congestion %v, err %v; want it to stand", d, err)
	}
	if err := congestedNode.ClearCongested(ctx, "busy"); err != nil {
		t.Fatal(err)
	}
	if d, err := publisher.Congestion(ctx, "busy"); err != nil || d != 0 {
		t.Fatalf("after the node's own clear: congestion %v, err %v", d, err)
	}
	if r, err := publisher.Publish(ctx, "busy", []byte("d"), PublishOptions{}); err != nil || r.Hold != 0 {
		t.Fatalf("after the clear: hold %v, err %v", r.Hold, err)
	}
	// A word that is not renewed expires by itself.
	if err := congestedNode.SetCongested(ctx, "busy", 30*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	pushertest.Eventually(t, "the congested key to expire", func() bool {
		d, err := publisher.Congestion(ctx, "busy")
		return err == nil && d == 0
	})
}

// publishing publishes to chans round-robin until stop is called, which returns
// what was published per channel; a failed publish fails the test.
func publishing(t *testing.T, pub *Broker, chans []string) (stop func() map[string][]string) {
	return publishLoop(pub, chans, "", func(err error) bool {
		t.Error(err)
		return false
	})
}

// publishingAccepted is publishing through a migration or a failover: a
// publication Redis refused is not counted, and payloads are tag and the
// round's number.
func publishingAccepted(pub *Broker, chans []string, tag string) (stop func() map[string][]string) {
	return publishLoop(pub, chans, tag, func(error) bool { return true })
}

// publishLoop publishes to chans round after round (tag and the round's
// number) until stop is called, which returns what Redis accepted per channel.
// On a failure it goes on while refused says so.
func publishLoop(pub *Broker, chans []string, tag string, refused func(error) bool) (stop func() map[string][]string) {
	done := make(chan struct{})
	sentc := make(chan map[string][]string)
	go func() {
		sent := map[string][]string{}
		defer func() { sentc <- sent }()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			for _, ch := range chans {
				p := tag + strconv.Itoa(i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := pub.Publish(ctx, ch, []byte(p), PublishOptions{})
				cancel()
				if err == nil {
					sent[ch] = append(sent[ch], p)
				} else if !refused(err) {
					<-done
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return func() map[string][]string {
		close(done)
		return <-sentc
	}
}

// waitDelivered waits until rec holds as many messages as sent, and checks each
// of chans got exactly its own, in order. It returns how many were sent.
func waitDelivered(t *testing.T, rec *recorder, sent map[string][]string, chans []string) int {
	t.Helper()
	total := 0
	for _, ps := range sent {
		total += len(ps)
	}
	pushertest.Eventually(t, "all delivered", func() bool { return len(rec.snapshot()) >= total })
	got := byChannel(rec.snapshot())
	for _, ch := range chans {
		checkPayloads(t, got[ch], sent[ch])
	}
	return total
}

// TestCatchUpLeavesTheBaselineToSubscribe: a connection's catch-up of a
// channel can run while Subscribe waits for the channel's head (the
// connection subscribes every channel registered, Subscribe's too). Had it
// taken the head it read as the baseline, a message published between
// Subscribe's read and the catch-up's, after Subscribe returned, would be
// skipped for good (TestControlAsksNodesThroughRedis lost a request so about
// one run in twenty). The steps are Subscribe's and the worker's, in that
// order, on a broker whose connection is up.
func TestCatchUpLeavesTheBaselineToSubscribe(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	got := make(chan Message, 4)
	b := NewBroker(newClient(t, addr), Config{Prefix: prefix, NodeID: "sub"}, func(m Message) { got <- m })
	t.Cleanup(b.Close)
	pub := NewBroker(newClient(t, addr), Config{Prefix: prefix, NodeID: "pub"}, func(Message) {})
	t.Cleanup(pub.Close)
	pushertest.Eventually(t, "broker up", func() bool { return b.Stats().Up })
	ctx := context.Background()
	const ch = "raced"

	// Subscribe registers the channel and reads its head...
	st := &subState{}
	b.mu.Lock()
	b.subs[ch] = st
	b.mu.Unlock()
	epoch, seq, err := b.head(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	// ...a message is published (in the live system: after Subscribe
	// returned, but before the catch-up read the head)...
	if _, err := pub.Publish(ctx, ch, []byte("one"), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	// ...the connection's catch-up runs, then Subscribe sets its baseline.
	b.catchUp(ctx, ch)
	b.base(ch, st, epoch, seq)
	// The next catch-up (or live message) must deliver it.
	b.catchUp(ctx, ch)
	select {
	case m := <-got:
		if m.Seq != 1 || string(m.Payload) != "one" {
			t.Fatalf("got %d %q, want 1 \"one\"", m.Seq, m.Payload)
		}
	case <-time.After(time.Second):
		t.Fatalf("the message published after the baseline was never delivered (state %+v)", *st)
	}
}

// A node follows a channel's newest epoch: a message of an older one (a
// connection being replaced delivers it late) was delivered already, and a
// newer epoch's publishes past its base are new even when this node has
// delivered their numbers before (Redis lost the publishes that had them).
func TestLiveFollowsTheNewestEpoch(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	got := make(chan Message, 8)
	b := NewBroker(newClient(t, addr), Config{Prefix: prefix}, func(m Message) { got <- m })
	t.Cleanup(b.Close)
	ctx := context.Background()
	const ch = "epochs"
	b.mu.Lock()
	b.subs[ch] = &subState{based: true, epoch: "o.2~5~2000", last: 6}
	b.mu.Unlock()
	live := func(epoch string, seq int, payload string) {
		b.live(ctx, item{topic: b.keys.topic(ch), payload: fmt.Sprintf("%s:%d:%s", epoch, seq, payload)})
	}
	live("o.1~0~1000", 6, "late, older epoch") // dropped
	live("o.1", 7, "late, older format")       // dropped
	live("o.2~5~2000", 6, "duplicate")         // dropped
	live("o.2~5~2000", 7, "seven")
	live("o.3~4~3000", 5, "after a loss")
	var payloads []string
	for len(got) > 0 {
		payloads = append(payloads, string((<-got).Payload))
	}
	if fmt.Sprint(payloads) != fmt.Sprint([]string{"seven", "after a loss"}) {
		t.Fatalf("delivered %q, want [seven, after a loss]", payloads)
	}
	if st, _ := b.state(ch); st.epoch != "o.3~4~3000" || st.last != 5 {
		t.Fatalf("state %+v, want epoch o.3~4~3000 at 5", st)
	}
}

func TestEpochOf(t *testing.T) {
	for _, c := range []struct {
		epoch string
		want  epochInfo
	}{
		{"", epochInfo{}},
		{"a1b2.3", epochInfo{}},
		{"a1b2.3~0~1796687302768920", epochInfo{base: 0, began: 1796687302768920}},
		{"a1b2.3~42~1796687302768920", epochInfo{base: 42, began: 1796687302768920}},
	} {
		if got := epochOf(c.epoch); got != c.want {
			t.Errorf("epochOf(%q) = %+v, want %+v", c.epoch, got, c.want)
		}
	}
	if !older("a.1", "b.1~0~5") || older("b.1~0~5", "a.1") || older("b.1~0~5", "b.1~0~5") {
		t.Error("older: an epoch without a clock is older than one with; none is older than itself")
	}
}
