package edge

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/milequest/pushercm/protocol"
)

// outboxHeld is a flush interval long enough that a publish made just after a
// round is still in the outbox while the test changes membership.
const outboxHeld = 300 * time.Millisecond

// startHeld starts a server whose outbox holds publishes for outboxHeld, and
// waits until its first round (which an idle flusher starts at once) is past.
func startHeld(t *testing.T) *Server {
	t.Helper()
	cfg := testConfig()
	cfg.FlushInterval = outboxHeld
	return startServer(t, cfg)
}

// heldPublish publishes one event right after a round has started, so that it
// waits in the outbox for the next one. It reports whether the event was still
// there afterwards (a slow machine may miss the window; callers then skip the
// parts of the test that need it).
func heldPublish(t *testing.T, s *Server, c *tclient, channel string, m Message) bool {
	t.Helper()
	// A publish to an idle flusher goes out at once and starts a round; the
	// client reading it tells us the round has started.
	if _, err := s.Publish(context.Background(), Message{Channels: []string{channel}, Event: "tick", Data: "{}"}); err != nil {
		t.Fatal(err)
	}
	c.expect("tick", channel)
	start := time.Now()
	if _, err := s.Publish(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	s.out.mu.Lock()
	held := len(s.out.q) > 0
	s.out.mu.Unlock()
	return held && time.Since(start) < outboxHeld/3
}

// TestOutboxKeepsPublishOrderAcrossChannelsAndUsers: publishes made one after
// another reach a socket in that order, whichever channel or user they are for.
func TestOutboxKeepsPublishOrderAcrossChannelsAndUsers(t *testing.T) {
	cfg := testConfig()
	cfg.FlushInterval = 50 * time.Millisecond
	cfg.UserAuthEnabled = true
	s := startServer(t, cfg)
	c := connect(t, s)
	signin(t, c, `{"id":"u1"}`)
	c.subscribeOK("a", "")
	c.subscribeOK("b", "")
	ctx := context.Background()
	const n = 60
	want := make([]string, 0, n)
	for i := range n {
		d := strconv.Itoa(i)
		want = append(want, d)
		var err error
		switch i % 3 {
		case 0:
			_, err = s.Publish(ctx, Message{Channels: []string{"a"}, Event: "e", Data: d})
		case 1:
			_, err = s.Publish(ctx, Message{Channels: []string{"b"}, Event: "e", Data: d})
		default:
			_, err = s.SendToUser(ctx, "u1", "e", d)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		m := c.expect("e", "")
		if m.str() != want[i] {
			t.Fatalf("event %d is %q on %s, want %q", i, m.str(), m.Channel, want[i])
		}
	}
}

// TestOutboxNewSubscriberGetsNoEarlierEvents: a socket that subscribes while
// an earlier publish still waits in the outbox does not get it.
func TestOutboxNewSubscriberGetsNoEarlierEvents(t *testing.T) {
	s := startHeld(t)
	a := connect(t, s)
	a.subscribeOK("room", "")
	b := connect(t, s)
	if !heldPublish(t, s, a, "room", Message{Channels: []string{"room"}, Event: "before", Data: "{}"}) {
		t.Skip("the publish left the outbox before the subscribe (machine too slow for the window)")
	}
	b.subscribeOK("room", "")
	if _, err := s.Publish(context.Background(), Message{Channels: []string{"room"}, Event: "after", Data: "{}"}); err != nil {
		t.Fatal(err)
	}
	if m := b.next(); m.Event != "after" {
		t.Fatalf("new subscriber got %s first, want only events published after it joined", m.Event)
	}
	a.expect("before", "room")
	a.expect("after", "room")
}

// TestOutboxLeavingSubscriberGetsEarlierEvents: a socket that unsubscribes
// while a publish made before still waits in the outbox gets it, before
// anything sent after it left.
func TestOutboxLeavingSubscriberGetsEarlierEvents(t *testing.T) {
	s := startHeld(t)
	a := connect(t, s)
	a.subscribeOK("room", "")
	if !heldPublish(t, s, a, "room", Message{Channels: []string{"room"}, Event: "before", Data: "{}"}) {
		t.Skip("the publish left the outbox before the unsubscribe (machine too slow for the window)")
	}
	a.send(map[string]any{"event": protocol.EventUnsubscribe, "data": map[string]any{"channel": "room"}})
	eventually(t, "unsubscribed", func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.channels["room"] == nil
	})
	a.expect("before", "room")
}

// TestOutboxDeliveredCounts: Publish counts the sockets subscribed when it is
// called, less the excluded one, and SendToUser the user's signed-in sockets.
func TestOutboxDeliveredCounts(t *testing.T) {
	cfg := testConfig()
	cfg.UserAuthEnabled = true
	s := startServer(t, cfg)
	cs := make([]*tclient, 3)
	for i := range cs {
		cs[i] = connect(t, s)
		cs[i].subscribeOK("room", "")
	}
	signin(t, cs[0], `{"id":"u1"}`)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		exclude string
		want    int
	}{{"all", "", 3}, {"one excluded", cs[1].id, 2}, {"unknown excluded", "1.2", 3}} {
		n, err := s.Publish(ctx, Message{Channels: []string{"room"}, Event: "e", Data: "{}", ExcludeSocketID: tc.exclude})
		if err != nil || n != tc.want {
			t.Fatalf("%s: delivered %d, %v; want %d", tc.name, n, err, tc.want)
		}
	}
	if n, err := s.SendToUser(ctx, "u1", "e", "{}"); err != nil || n != 1 {
		t.Fatalf("SendToUser delivered %d, %v; want 1", n, err)
	}
	if n, err := s.SendToUser(ctx, "nobody", "e", "{}"); err != nil || n != 0 {
		t.Fatalf("SendToUser to nobody delivered %d, %v; want 0", n, err)
	}
	if _, err := s.Publish(ctx, Message{Channels: []string{"room"}, Event: "last", Data: "{}"}); err != nil {
		t.Fatal(err)
	}
	for i, c := range cs {
		got, user := 0, 0
		for m := c.next(); m.Event != "last"; m = c.next() {
			switch {
			case m.Event == "e" && m.Channel == "room":
				got++
			case m.Event == "e" && m.Channel == protocol.ServerToUserChannel("u1"):
				user++
			}
		}
		want, wantUser := 3, 0
		if i == 1 {
			want = 2
		}
		if i == 0 {
			wantUser = 1
		}
		if got != want || user != wantUser {
			t.Errorf("socket %d got %d room and %d user events, want %d and %d", i, got, user, want, wantUser)
		}
	}
}

// TestOutboxConcurrentPublishAndChurn: publishes from many goroutines while
// sockets subscribe and leave; every socket that stays subscribed throughout
// gets every event once, each publisher's events in its order (run with -race).
func TestOutboxConcurrentPublishAndChurn(t *testing.T) {
	cfg := testConfig()
	cfg.FlushInterval = 2 * time.Millisecond
	s := startServer(t, cfg)
	stay := connect(t, s)
	stay.subscribeOK("room", "")
	const publishers, each = 4, 100
	ctx, cancel := context.WithCancel(context.Background())
	var churn sync.WaitGroup
	churn.Add(1)
	go func() {
		defer churn.Done()
		for i := 0; ctx.Err() == nil; i++ {
			c := connect(t, s)
			c.subscribeOK("room", "")
			if i%2 == 0 {
				c.send(map[string]any{"event": protocol.EventUnsubscribe, "data": map[string]any{"channel": "room"}})
			}
			_ = c.conn.Close()
		}
	}()
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				d := strconv.Itoa(p) + ":" + strconv.Itoa(i)
				if _, err := s.Publish(context.Background(), Message{Channels: []string{"room"}, Event: "e", Data: d}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	churn.Wait()
	next := make([]int, publishers)
	for range publishers * each {
		m := stay.expect("e", "room")
		var p, i int
		d := m.str()
		for k := range d {
			if d[k] == ':' {
				p, _ = strconv.Atoi(d[:k])
				i, _ = strconv.Atoi(d[k+1:])
			}
		}
		if i != next[p] {
			t.Fatalf("publisher %d: got event %d, want %d", p, i, next[p])
		}
		next[p]++
	}
	stay.quiet("e")
}
