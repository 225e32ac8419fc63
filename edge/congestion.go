package edge

import (
	"context"
	"sync"
	"time"
)

// Congestion is how a channel whose subscribers cannot keep up slows its
// publishers down instead of losing the subscribers.
//
// Detection costs the fan-out one comparison per socket: after queueing a
// run of events on a subscriber, the outbox counts the sockets whose
// outbound queue is past half of Config.WriteQueueBytes ("lagging"). A
// channel is congested when at least Config.CongestedPercent of its
// subscribers, and at least minLagging of them, lag: one or two slow clients
// (a phone on a bad network) never hold a channel's publishers, they are
// closed with 4100 as before. Marking a channel allocates once, on the
// transition.
//
// The outbox can fall behind too, when the fan-out cannot keep up (a busy
// or starved CPU): whatever it holds for a channel reaches every subscriber
// in one step at the next fan-out. So a channel of at least minLagging
// subscribers is also congested while the outbox holds more than a quarter
// of Config.WriteQueueBytes of its events (one atomic add per publish and per
// fan-out run): a channel just under the lagging count, its sockets up to
// half full, then never gets more than a quarter more at once.
//
// While a channel is congested, a Publish to it returns only once it is no
// longer congested, after Config.PublishHoldMax at most (then the event is
// queued all the same, and a socket whose queue overflows is closed as a
// slow consumer, as without holding). The event itself is posted before the
// hold, so the hold costs an uncongested publish nothing and delivered_to is
// what it was; a caller that publishes in sequence (an HTTP or gRPC client,
// a batch) is slowed to what the subscribers read.
//
// The congestion watcher, one goroutine, re-counts the sockets of each
// congested channel every congestionCheck (an atomic load per subscriber,
// under the hub's read lock) and releases the held publishes once too few
// are past a quarter of their queue (half marks a spell, a quarter ends it:
// in a cluster the publishers hear of the next spell only after a round
// trip, and what they send meanwhile lands on top).
//
// In a cluster the node whose sockets lag tells everyone through Redis: while
// the channel stays congested it sets the channel's congested key for
// congestionTTL, renewed every congestionRenew, and clears it when the lag is
// over (Cluster.Congested, Uncongested). Every publish script reports the
// key's remaining time (no extra round trip); a publish that sees it holds
// its caller while one poller per channel and node asks Redis again every
// congestionCheck (Cluster.Hold), bounded by Config.PublishHoldMax likewise.
//
// Client events are not held: they are published from the socket's read
// loop, which must never wait, and each socket's are already rate limited
// (Limits.ClientEventsPerSecond).

// congestion is one congested spell of a channel.
type congestion struct {
	done chan struct{} // closed when the spell is over
	// Watcher only: whether the spell was checked once, and when it was
	// last announced to the cluster.
	checked   bool
	announced time.Time
}

const (
	// minLagging is the fewest lagging sockets that make a channel congested.
	minLagging = 8
	// congestionCheck is how often a congested channel is checked again.
	congestionCheck = 2 * time.Millisecond
	// congestionTTL is how long a node's word that a channel is congested
	// lasts in the cluster unless renewed; congestionRenew how often it is
	// renewed while the channel stays congested.
	congestionTTL   = 200 * time.Millisecond
	congestionRenew = 50 * time.Millisecond
)

// jam is the hub's set of congested channels, for the watcher.
type jam struct {
	mu    sync.Mutex
	chans map[*channel]struct{}
	wake  chan struct{}
}

// lagNeed is how many lagging sockets make a channel of n subscribers
// congested.
func (h *hub) lagNeed(n int) int {
	return max(minLagging, (n*h.congestedPercent+99)/100)
}

// markCongested starts a congested spell of chn, unless one is on.
func (h *hub) markCongested(chn *channel) {
	if chn.cong.Load() != nil {
		return
	}
	cg := &congestion{done: make(chan struct{})}
	if !chn.cong.CompareAndSwap(nil, cg) {
		return
	}
	h.jam.mu.Lock()
	h.jam.chans[chn] = struct{}{}
	h.jam.mu.Unlock()
	select {
	case h.jam.wake <- struct{}{}:
	default:
	}
}

// lagging counts chn's open subscribers whose outbound queue is past over
// bytes, and its subscribers.
func (h *hub) lagging(chn *channel, over int64) (lagging, subs int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range chn.subs {
		if c.queued.Load() > over && !c.closing.Load() {
			lagging++
		}
	}
	return lagging, len(chn.subs)
}

// congestedChannels appends the congested channels to list.
func (h *hub) congestedChannels(list []*channel) []*channel {
	h.jam.mu.Lock()
	defer h.jam.mu.Unlock()
	for chn := range h.jam.chans {
		list = append(list, chn)
	}
	return list
}

// endCongestion ends chn's spell cg. The channel leaves the set before its
// mark is cleared, so a fan-out that marks it again meanwhile puts it back.
func (h *hub) endCongestion(chn *channel, cg *congestion) {
	h.jam.mu.Lock()
	delete(h.jam.chans, chn)
	h.jam.mu.Unlock()
	if chn.cong.CompareAndSwap(cg, nil) {
		close(cg.done)
	}
}

// announcement is a congested channel to tell the cluster about (on), or
// one no longer congested.
type announcement struct {
	channel string
	on      bool
}

// watchCongestion checks the congested channels until the server stops; see
// Congestion. Stopping ends every spell, releasing the held publishes.
func (s *Server) watchCongestion(announce chan<- announcement) {
	defer s.done.Done()
	h := &s.hub
	var list []*channel
	t := time.NewTimer(congestionCheck)
	defer t.Stop()
	for {
		list = h.congestedChannels(list[:0])
		if len(list) == 0 {
			select {
			case <-s.stop:
				return
			case <-h.jam.wake:
				continue
			}
		}
		now := time.Now()
		for _, chn := range list {
			cg := chn.cong.Load()
			if cg == nil {
				continue
			}
			if cg.checked {
				// Over once the sockets are back under a quarter of
				// their queue: what the publishers send before they
				// hear of the next spell then has three quarters.
				if lag, n := h.lagging(chn, h.lagBytes/2); lag < h.lagNeed(n) && chn.posted.Load() <= h.lagBytes/2 {
					h.endCongestion(chn, cg)
					if announce != nil && !cg.announced.IsZero() {
						s.announce(announce, announcement{chn.info.Name, false})
					}
					continue
				}
			}
			cg.checked = true
			if announce != nil && now.Sub(cg.announced) >= congestionRenew {
				cg.announced = now
				s.announce(announce, announcement{chn.info.Name, true})
			}
		}
		clear(list)
		t.Reset(congestionCheck)
		select {
		case <-s.stop:
			for _, chn := range h.congestedChannels(list[:0]) {
				if cg := chn.cong.Load(); cg != nil {
					h.endCongestion(chn, cg)
				}
			}
			return
		case <-t.C:
		}
	}
}

// announce queues a for the announcer without waiting: a renewal that does
// not fit is made at the next one, and a congested key that is not cleared
// expires within congestionTTL.
func (s *Server) announce(q chan<- announcement, a announcement) {
	select {
	case q <- a:
	default:
	}
}

// announceCongestion tells the cluster what the watcher found, off the
// watcher's goroutine, until the server stops.
func (s *Server) announceCongestion(q <-chan announcement) {
	defer s.done.Done()
	cl := s.opts.cluster
	for {
		var a announcement
		select {
		case <-s.stop:
			return
		case a = <-q:
		}
		ctx, cancel := context.WithTimeout(context.Background(), congestionTTL)
		var err error
		if a.on {
			err = cl.Congested(ctx, a.channel, congestionTTL)
		} else {
			err = cl.Uncongested(ctx, a.channel)
		}
		cancel()
		if err != nil {
			s.clusterMissed("congestion", a.channel, err)
		}
	}
}

// holdUntil waits for done, PublishHoldMax at most, and counts the hold.
// bounded, when not nil, is read once done is closed: whether whoever closed
// it did so because PublishHoldMax passed (a cluster poller started by an
// earlier publish) rather than because the spell ended.
func (s *Server) holdUntil(ctx context.Context, done <-chan struct{}, bounded *bool) {
	start := time.Now()
	t := time.NewTimer(s.cfg.PublishHoldMax)
	timedOut := false
	select {
	case <-done:
		timedOut = bounded != nil && *bounded
	case <-t.C:
		timedOut = true
	case <-ctx.Done():
	case <-s.stop:
	}
	t.Stop()
	s.st.held.Add(1)
	s.st.heldNanos.Add(uint64(time.Since(start)))
	if timedOut {
		s.st.holdTimeouts.Add(1)
	}
}

// remoteHolds are the channels this node's publishes wait on because
// another node (or this one) said in the cluster that they are congested:
// one poller each, however many publishes wait.
type remoteHolds struct {
	mu sync.Mutex
	m  map[string]*remoteHold
}

// remoteHold is one channel's poller: done is closed when the cluster no
// longer says the channel is congested, or after PublishHoldMax; bounded,
// set before done is closed, says it was the latter.
type remoteHold struct {
	done    chan struct{}
	bounded bool
}

// holdCluster holds a publish to channel, which the cluster said is
// congested, until it no longer is (PublishHoldMax at most).
func (s *Server) holdCluster(ctx context.Context, channel string) {
	s.rholds.mu.Lock()
	h := s.rholds.m[channel]
	if h == nil {
		h = &remoteHold{done: make(chan struct{})}
		s.rholds.m[channel] = h
		s.clOps.Add(1)
		go s.pollCongestion(channel, h)
	}
	s.rholds.mu.Unlock()
	s.holdUntil(ctx, h.done, &h.bounded)
}

// pollCongestion asks the cluster every congestionCheck whether channel is
// still congested, and closes h.done when it is not, or after PublishHoldMax
// (h.bounded; the next publish that finds it congested starts another
// poller), or when the server stops.
func (s *Server) pollCongestion(channel string, h *remoteHold) {
	defer s.clOps.Done()
	defer func() {
		s.rholds.mu.Lock()
		delete(s.rholds.m, channel)
		s.rholds.mu.Unlock()
		close(h.done)
	}()
	end := time.Now().Add(s.cfg.PublishHoldMax)
	t := time.NewTimer(congestionCheck)
	defer t.Stop()
	for {
		if !time.Now().Before(end) {
			h.bounded = true
			return
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), congestionTTL)
		left, err := s.opts.cluster.Hold(ctx, channel)
		cancel()
		if err != nil || left <= 0 {
			return
		}
		t.Reset(congestionCheck)
	}
}
