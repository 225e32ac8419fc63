package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/redistest"
)

// A Redis that refuses writes (MISCONF) also refuses PING. rueidis panics in its
// reader when the PING it sends after an UNSUBSCRIBE is refused so, and that
// panic ends the process: the broker must never send one, neither itself nor by
// handing a subscribed connection back to rueidis' pool. Run in-process, this
// test dies with the panic if it does.
func TestBrokerSurvivesRedisRefusingWrites(t *testing.T) {
	cfg := Config{Prefix: "p"}
	srv, sub, pub, rec := ownRedisPair(t, cfg, "a", "b", "c")
	ctx := context.Background()

	if err := srv.RefuseWrites(); err != nil {
		t.Fatal(err)
	}
	// Unsubscribing, replacing the pub/sub connection and closing brokers all
	// happen while Redis refuses PING.
	if err := sub.Unsubscribe(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	sub.mu.Lock()
	stale := sub.stale
	sub.mu.Unlock()
	if stale != 1 {
		t.Fatalf("stale = %d after one unsubscribe, want 1", stale)
	}
	if err := sub.Subscribe(ctx, "d"); err != nil {
		t.Logf("subscribe while Redis refuses writes: %v", err)
	}
	sub.recycle <- struct{}{}
	if _, err := pub.Publish(ctx, "a", []byte("refused"), PublishOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("publish while Redis refuses writes: %v, want ErrUnavailable", err)
	}
	// A broker started now cannot connect (its PING is refused) and retries.
	late := NewBroker(newClient(t, srv.Addr), cfg, (&recorder{}).handle)
	pushertest.Eventually(t, "the late broker's refused PING", func() bool { return late.Stats().LastError != "" })
	if late.Stats().Up {
		t.Fatal("a broker came up on a Redis refusing PING")
	}
	short := NewBroker(newClient(t, srv.Addr), cfg, (&recorder{}).handle)
	if err := short.Subscribe(ctx, "a"); err != nil {
		t.Logf("subscribe on a Redis refusing writes: %v", err)
	}
	_ = short.Unsubscribe(ctx, "a")
	short.Close()
	// Give rueidis' readers time to see every reply: a panic would end the test
	// binary here.
	time.Sleep(300 * time.Millisecond)

	if err := srv.AllowWrites(); err != nil {
		t.Fatal(err)
	}
	pushertest.Eventually(t, "the late broker up", func() bool { return late.Stats().Up })
	late.Close()
	pushertest.Eventually(t, "publishes accepted again", func() bool {
		_, err := pub.Publish(ctx, "a", []byte("after"), PublishOptions{})
		return err == nil
	})
	pushertest.Eventually(t, "delivery after writes are allowed", func() bool {
		for _, m := range rec.snapshot() {
			if string(m.Payload) == "after" {
				return true
			}
		}
		return false
	})
	if _, err := pub.Publish(ctx, "b", []byte("to b"), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, "c", []byte("to c"), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	pushertest.Eventually(t, "c delivered", func() bool {
		got := rec.snapshot()
		return len(got) > 0 && got[len(got)-1].Channel == "c"
	})
	for _, m := range rec.snapshot() {
		if m.Channel == "b" {
			t.Fatalf("got %q on b after unsubscribing it", m.Payload)
		}
	}
}

// Unsubscribed channels stay subscribed on Redis until the pub/sub connection
// is replaced; replacing it while a channel is published continuously loses
// and duplicates nothing.
func TestBrokerReplacesConnectionWithStaleSubscriptions(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	var rec recorder
	sub := startBroker(t, newClient(t, addr), Config{Prefix: prefix, HistorySize: 1}, &rec)
	pub := startBroker(t, newClient(t, addr), Config{Prefix: prefix, HistorySize: 1}, &recorder{})
	ctx := context.Background()
	if err := sub.Subscribe(ctx, "live"); err != nil {
		t.Fatal(err)
	}
	stop := publishing(t, pub, []string{"live"})
	for i := range staleMin {
		ch := fmt.Sprint("gone-", i)
		if err := sub.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
		if err := sub.Unsubscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	pushertest.Eventually(t, "the connection replaced", func() bool { return sub.Stats().Recycles == 1 })
	if s := sub.Stats(); s.Stale != 0 || s.Subscribed != 1 || !s.Up {
		t.Fatalf("stats after the replacement %+v: want up, 1 channel, none stale", s)
	}
	time.Sleep(50 * time.Millisecond) // publishing goes on over the new connection
	// With a history of one message, a gap could not be filled: every message
	// came live, over one connection or the other, exactly once.
	total := waitDelivered(t, &rec, stop(), []string{"live"})
	if s := sub.Stats(); s.Lost != 0 {
		t.Fatalf("stats %+v: want nothing lost", s)
	}
	// A message to an unsubscribed channel reaches no handler.
	if _, err := pub.Publish(ctx, "gone-0", []byte("x"), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, "live", []byte("last"), PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	pushertest.Eventually(t, "last", func() bool { return len(rec.snapshot()) == total+1 })
	if got := rec.snapshot(); got[len(got)-1].Channel != "live" {
		t.Fatalf("last message on %q, want live", got[len(got)-1].Channel)
	}
}

// Redis restarted from a snapshot older than its last publishes (the default
// RDB persistence; a replica promoted before it had the last writes is the
// same): a channel's sequence goes back while its history's epoch stays. The
// publishes after the restart reuse sequence numbers the subscribing node has
// delivered already, and must be delivered all the same.
func TestBrokerDeliversAfterRedisLostWrites(t *testing.T) {
	srv, sub, pub, rec := ownRedisPair(t, Config{Prefix: "p"}, "a")
	ctx := context.Background()
	publish := func(ps ...string) {
		t.Helper()
		for _, p := range ps {
			pushertest.Eventually(t, "publish "+p+" accepted", func() bool {
				_, err := pub.Publish(ctx, "a", []byte(p), PublishOptions{})
				return err == nil
			})
		}
	}
	delivered := func(n int) {
		t.Helper()
		pushertest.Eventually(t, fmt.Sprint(n, " delivered"), func() bool { return len(rec.snapshot()) >= n })
	}
	publish("1", "2", "3")
	delivered(3)
	// LASTSAVE, which tells the script that Redis may have lost writes, counts
	// seconds: a save in the second the server started, and a restart in the
	// same second, would look like one process.
	time.Sleep(1100 * time.Millisecond)
	if _, err := redistest.Do(srv.Addr, "SAVE"); err != nil {
		t.Fatal(err)
	}
	publish("4", "5")
	delivered(5)

	srv.Stop()
	if err := srv.Restart(); err != nil { // loads the snapshot: sequence 3
		t.Fatal(err)
	}
	if v, err := redistest.Do(srv.Addr, "HGET", "p:{a}:meta", "seq"); err != nil || v != "3" {
		t.Fatalf("restored sequence = %v (%v), want 3", v, err)
	}
	pushertest.Eventually(t, "the subscriber reconnected", func() bool {
		s := sub.Stats()
		return s.Up && s.Reconnects > 0
	})
	publish("6", "7", "8")
	delivered(8)
	checkPayloadsAnySeq(t, rec.snapshot(), []string{"1", "2", "3", "4", "5", "6", "7", "8"})
}

// checkPayloadsAnySeq fails unless got holds exactly want's payloads in order.
func checkPayloadsAnySeq(t *testing.T, got []Message, want []string) {
	t.Helper()
	var ps []string
	for _, m := range got {
		ps = append(ps, string(m.Payload))
	}
	if fmt.Sprint(ps) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q", ps, want)
	}
}
