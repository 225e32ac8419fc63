package edge

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/protocol"
)

// holdOutbox stops the first flusher before its next fan-out of the outbox
// until release is called (also at cleanup), so that what is published
// meanwhile stays in the outbox: only a membership change (hub.lock) fans it
// out. It publishes tick to channel (c reads it) to wake the flusher, and
// returns once the flusher waits.
func holdOutbox(t *testing.T, s *Server, c *tclient, channel string) (release func()) {
	t.Helper()
	gate, waiting := make(chan struct{}), make(chan struct{}, 1)
	hook := func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
		<-gate
	}
	beforeFanOut.Store(&hook)
	var once sync.Once
	release = func() {
		once.Do(func() {
			beforeFanOut.Store(nil)
			close(gate)
		})
	}
	t.Cleanup(release)
	if _, err := s.Publish(context.Background(), Message{Channels: []string{channel}, Event: "tick", Data: "{}"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waiting:
	case <-time.After(waitFor):
		t.Fatal("the flusher did not reach its fan-out")
	}
	return release
}

// heldPublish publishes m while the flusher is held, and checks that it waits
// in the outbox.
func heldPublish(t *testing.T, s *Server, m Message) {
	t.Helper()
	if _, err := s.Publish(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	s.hub.out.mu.Lock()
	held := len(s.hub.out.q) > 0
	s.hub.out.mu.Unlock()
	if !held {
		t.Fatal("the publish left the outbox while the flusher was held")
	}
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
	s := startServer(t, testConfig())
	a := connect(t, s)
	a.subscribeOK("room", "")
	b := connect(t, s)
	release := holdOutbox(t, s, a, "room")
	heldPublish(t, s, Message{Channels: []string{"room"}, Event: "before", Data: "{}"})
	// The held flusher may be the one that writes b's frames: wait for the hub
	// to hold the subscription, then let the answer out.
	b.subscribe("room", "", "")
	pushertest.Eventually(t, "b subscribed", func() bool {
		s.hub.mu.RLock()
		defer s.hub.mu.RUnlock()
		return len(s.hub.channels["room"].subs) == 2
	})
	release()
	b.expect(protocol.EventSubscriptionSucceeded, "room")
	if _, err := s.Publish(context.Background(), Message{Channels: []string{"room"}, Event: "after", Data: "{}"}); err != nil {
		t.Fatal(err)
	}
	a.expect("tick", "room")
	a.expect("before", "room")
	a.expect("after", "room")
	if m := b.next(); m.Event != "after" {
		t.Fatalf("new subscriber got %s first, want only events published after it joined", m.Event)
	}
}

// TestOutboxLeavingSubscriberGetsEarlierEvents: a socket that unsubscribes
// while a publish made before still waits in the outbox gets it, before
// anything sent after it left.
func TestOutboxLeavingSubscriberGetsEarlierEvents(t *testing.T) {
	s := startServer(t, testConfig())
	a := connect(t, s)
	a.subscribeOK("room", "")
	release := holdOutbox(t, s, a, "room")
	heldPublish(t, s, Message{Channels: []string{"room"}, Event: "before", Data: "{}"})
	a.send(map[string]any{"event": protocol.EventUnsubscribe, "data": map[string]any{"channel": "room"}})
	pushertest.Eventually(t, "unsubscribed", func() bool {
		s.hub.mu.RLock()
		defer s.hub.mu.RUnlock()
		return s.hub.channels["room"] == nil
	})
	release()
	a.expect("tick", "room")
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
