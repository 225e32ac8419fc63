package edge

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/milequest/pushercm/internal/pushertest"
)

// stalledSubscribers dials n sockets that do not read (a tiny receive
// buffer, so they back up fast) and subscribes them to channel on the
// server's authority.
func stalledSubscribers(t *testing.T, s *Server, n int, channel string) []*tclient {
	t.Helper()
	known := map[string]bool{}
	list, _ := s.Connections(ConnectionFilter{})
	for _, ci := range list {
		known[ci.SocketID] = true
	}
	before := s.Stats().ConnectionsActive
	out := make([]*tclient, n)
	for i := range out {
		out[i] = dialRaw(t, s, "/app/"+testKey+"?protocol=7", nil, smallRecvBuf)
	}
	pushertest.Eventually(t, "stalled sockets registered", func() bool { return s.Stats().ConnectionsActive == before+int64(n) })
	list, _ = s.Connections(ConnectionFilter{})
	for _, ci := range list {
		if !known[ci.SocketID] {
			if err := s.Subscribe(ci.SocketID, channel); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// readingSubscribers connects n sockets that read everything and
// subscribes them to channel.
func readingSubscribers(t *testing.T, s *Server, n int, channel string) []*tclient {
	t.Helper()
	out := make([]*tclient, n)
	for i := range out {
		out[i] = connect(t, s)
		out[i].subscribeOK(channel, "")
		out[i].Discard()
	}
	return out
}

// congested says whether channel is congested on s.
func congested(s *Server, channel string) bool {
	s.hub.mu.RLock()
	defer s.hub.mu.RUnlock()
	chn := s.hub.channels[channel]
	return chn != nil && chn.cong.Load() != nil
}

// paced publishes 2 KB events to channel one every millisecond until stop
// says so or the wait runs out, and returns the longest publish.
func paced(t *testing.T, s *Server, channel string, stop func() bool) time.Duration {
	t.Helper()
	payload := strings.Repeat("x", 2000)
	deadline := time.Now().Add(waitFor)
	var longest time.Duration
	for !stop() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v; stats %+v", waitFor, s.Stats())
		}
		start := time.Now()
		if _, err := s.Publish(context.Background(), Message{Channels: []string{channel}, Event: "e", Data: payload}); err != nil {
			t.Fatal(err)
		}
		longest = max(longest, time.Since(start))
		time.Sleep(time.Millisecond)
	}
	return longest
}

// TestCongestedChannelHoldsPublishes: every subscriber of a channel stops
// reading; once their queues are half full a publish waits, until
// PublishHoldMax since nobody catches up, and is counted.
func TestCongestedChannelHoldsPublishes(t *testing.T) {
	cfg := testConfig()
	cfg.PublishHoldMax = 300 * time.Millisecond
	cfg.CloseGrace = 5 * time.Second
	s := startServer(t, cfg)
	stalledSubscribers(t, s, 10, "firehose")
	longest := paced(t, s, "firehose", func() bool { return s.Stats().PublishesHeld > 0 })
	st := s.Stats()
	if st.PublishHoldTimeouts != 1 || longest < cfg.PublishHoldMax || longest > cfg.PublishHoldMax+3*time.Second {
		t.Fatalf("one publish held until publishHoldMax (%v): longest publish %v, stats %+v", cfg.PublishHoldMax, longest, st)
	}
	if st.PublishHeldTime < cfg.PublishHoldMax {
		t.Fatalf("held time %v, want at least %v", st.PublishHeldTime, cfg.PublishHoldMax)
	}
	if st.SlowConsumersClosed != 0 {
		t.Fatalf("%d sockets closed before any publish was held", st.SlowConsumersClosed)
	}
}

// TestCongestionEndsWhenSubscribersCatchUp: the held publish returns as soon
// as the subscribers read again, long before PublishHoldMax, and none of
// them was closed: the publisher was slowed down, nothing was lost.
func TestCongestionEndsWhenSubscribersCatchUp(t *testing.T) {
	cfg := testConfig()
	cfg.PublishHoldMax = time.Minute
	cfg.CloseGrace = 5 * time.Second
	s := startServer(t, cfg)
	subs := stalledSubscribers(t, s, 10, "firehose")
	done := make(chan time.Duration, 1)
	go func() {
		payload := strings.Repeat("x", 2000)
		var longest time.Duration
		for s.Stats().PublishesHeld == 0 && !s.draining.Load() {
			start := time.Now()
			if _, err := s.Publish(context.Background(), Message{Channels: []string{"firehose"}, Event: "e", Data: payload}); err != nil {
				t.Error(err)
				break
			}
			longest = max(longest, time.Since(start))
			time.Sleep(time.Millisecond)
		}
		done <- longest
	}()
	pushertest.Eventually(t, "channel congested", func() bool { return congested(s, "firehose") })
	time.Sleep(50 * time.Millisecond)
	for _, c := range subs {
		c.Discard()
		close(c.noRead)
	}
	var longest time.Duration
	select {
	case longest = <-done:
	case <-time.After(waitFor):
		t.Fatalf("publish still held %v after the subscribers read again; stats %+v", waitFor, s.Stats())
	}
	st := s.Stats()
	if st.PublishesHeld != 1 || st.PublishHoldTimeouts != 0 || longest < 50*time.Millisecond {
		t.Fatalf("want one publish held (≥ 50 ms) and released by the subscribers, not the bound: longest %v, stats %+v", longest, st)
	}
	if st.SlowConsumersClosed != 0 {
		t.Fatalf("%d subscribers closed as slow consumers", st.SlowConsumersClosed)
	}
	if congested(s, "firehose") {
		t.Fatal("channel still congested")
	}
}

// TestLoneSlowSubscriberDoesNotHold: one socket that stops reading among
// others that read is closed with 4100 as before; no publish waits for it.
// Six readers: even if all of them fell behind for a moment on a loaded
// machine, with the stalled one they are fewer than minLagging, so a held
// publish can only be a bug (the share of subscribers is TestLagNeed's).
func TestLoneSlowSubscriberDoesNotHold(t *testing.T) {
	cfg := testConfig()
	cfg.WriteQueueBytes = 64 << 10
	cfg.PublishHoldMax = 10 * time.Second
	s := startServer(t, cfg)
	readingSubscribers(t, s, minLagging-2, "firehose")
	stalledSubscribers(t, s, 1, "firehose")
	longest := paced(t, s, "firehose", func() bool { return s.Stats().SlowConsumersClosed > 0 })
	if st := s.Stats(); st.PublishesHeld != 0 || st.SlowConsumerDropped == 0 {
		t.Fatalf("a lone slow subscriber: want no held publish and its dropped events counted; longest publish %v, stats %+v", longest, st)
	}
}

func TestLagNeed(t *testing.T) {
	h := hub{congestedPercent: 10}
	for _, tc := range []struct{ subs, want int }{{1, 8}, {20, 8}, {80, 8}, {81, 9}, {1000, 100}, {1001, 101}} {
		if got := h.lagNeed(tc.subs); got != tc.want {
			t.Errorf("%d subscribers: %d lagging make it congested, want %d", tc.subs, got, tc.want)
		}
	}
}

// TestOutboxBacklogHoldsPublishes: while the fan-out is stopped, events pile
// up in the outbox for a channel of readers; past a quarter of their queue
// the publish waits (it would land on every subscriber at once), and it
// returns once the fan-out has caught up, without closing anyone.
func TestOutboxBacklogHoldsPublishes(t *testing.T) {
	cfg := testConfig()
	cfg.PublishHoldMax = time.Minute
	s := startServer(t, cfg)
	subs := readingSubscribers(t, s, minLagging, "firehose")
	release := holdOutbox(t, s, subs[0], "firehose")
	payload := strings.Repeat("x", 2000)
	quarter := cfg.withDefaults().WriteQueueBytes / 4
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i <= quarter/len(payload)+1; i++ {
			if _, err := s.Publish(context.Background(), Message{Channels: []string{"firehose"}, Event: "e", Data: payload}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	pushertest.Eventually(t, "channel congested by its outbox", func() bool { return congested(s, "firehose") })
	select {
	case <-done:
		t.Fatal("the publishes returned while the outbox held a quarter queue of them")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatalf("publish still held %v after the fan-out resumed; stats %+v", waitFor, s.Stats())
	}
	if st := s.Stats(); st.PublishesHeld != 1 || st.PublishHoldTimeouts != 0 || st.SlowConsumersClosed != 0 {
		t.Fatalf("want one publish held and released by the fan-out: stats %+v", st)
	}
}

// alwaysCongested is a cluster in which every channel stays congested.
type alwaysCongested struct{ Cluster }

func (alwaysCongested) Hold(context.Context, string) (time.Duration, error) {
	return congestionTTL, nil
}

// TestClusterHoldsCountTheirBound: a publish that joins the poller another
// publish started is released by that poller's PublishHoldMax, not by its
// own timer, and is counted as held until the bound all the same.
func TestClusterHoldsCountTheirBound(t *testing.T) {
	cfg := testConfig()
	cfg.PublishHoldMax = 300 * time.Millisecond
	s, err := New(cfg, WithCluster(alwaysCongested{}))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.holdCluster(context.Background(), "firehose"); close(done) }()
	time.Sleep(cfg.PublishHoldMax / 2)
	s.holdCluster(context.Background(), "firehose") // joins the first poller
	<-done
	if st := s.Stats(); st.PublishesHeld != 2 || st.PublishHoldTimeouts != 2 {
		t.Fatalf("two publishes held until the bound, stats %+v", st)
	}
}
