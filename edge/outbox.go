package edge

import (
	"sync"
	"time"
)

// The outbox is how a publish reaches its subscribers once the edge runs.
//
// Publishing used to queue the frame on every subscriber itself, on whichever
// core ran the gRPC or HTTP handler. With calls on both cores, each subscriber's
// queue (its lock, byte count and pending list) moved between the cores' caches
// on every event, and that was most of a fan-out's cost. Now a publish only
// counts the subscribers and appends one entry to the outbox; the first flusher
// takes the outbox at the start of each of its rounds and queues the frames on
// the subscribers, all on one core. Consecutive entries for the same channel go
// to each subscriber in one step (one lock and one queue check per socket for
// the whole run), which is the common case under load and with
// Config.FlushInterval.
//
// Order: entries are fanned out in the order they were posted, so frames reach
// every socket in publish order, across channels and user sends alike.
//
// Membership: an entry is for the subscribers a channel (or a user's signed-in
// sockets) had when it was posted. Every change of membership takes the hub's
// write lock through hub.lock, which first fans out whatever the outbox holds, so
// a new subscriber never gets earlier events and a leaving one still gets the
// events published before it left, as when publishing queued them directly.
type outbox struct {
	mu    sync.Mutex
	q     []outEntry
	spare []outEntry // an emptied queue for the next swap

	// frames and sched are fanOutLocked's scratch: only one fan-out runs at a
	// time (the first flusher under hub.mu's read lock, or hub.lock under its
	// write lock).
	frames [][]byte
	sched  []*conn
}

// maxSpareOutbox bounds the emptied queue the outbox keeps for reuse.
const maxSpareOutbox = 4096

// outEntry is one publish to a channel's subscribers (chn) or to a user's
// signed-in sockets (chn nil, userID), leaving out the socket exclude.
type outEntry struct {
	chn     *channel
	userID  string
	frame   []byte
	exclude string
	since   int64 // unix nanos it was posted (only with a WriteObserver)
}

// recipientsLocked is the sockets a publish to chn (or, with chn nil, to
// userID) goes to: the channel's subscribers or the user's signed-in sockets.
// The caller holds h.mu.
func (h *hub) recipientsLocked(chn *channel, userID string) map[*conn]struct{} {
	if chn != nil {
		return chn.subs
	}
	return h.users[userID]
}

// postLocked publishes frame to the recipients of chn or userID (see
// recipientsLocked) but exclude and returns the number of sockets it is for.
// The caller holds h.mu (read or write). Before the flushers run (tests drive
// the hub directly) the frame is queued on each socket at once.
func (h *hub) postLocked(chn *channel, userID string, frame []byte, exclude string) int {
	subs := h.recipientsLocked(chn, userID)
	if len(subs) == 0 {
		return 0
	}
	f := h.fanner.Load()
	if f == nil {
		return queueOnAll(subs, frame, exclude)
	}
	n := len(subs)
	if exclude != "" {
		if c := h.conns[exclude]; c != nil {
			if _, in := subs[c]; in {
				n--
			}
		}
	}
	if n == 0 {
		return 0
	}
	e := outEntry{chn: chn, userID: userID, frame: frame, exclude: exclude}
	if h.stamp {
		e.since = time.Now().UnixNano()
	}
	h.out.mu.Lock()
	h.out.q = append(h.out.q, e)
	first := len(h.out.q) == 1
	h.out.mu.Unlock()
	if first {
		f.poke()
	}
	if chn != nil && h.holding {
		// A fan-out that falls behind would put all of this at once on
		// every subscriber: past a quarter of their queue, hold (see
		// Congestion).
		if p := chn.posted.Add(int64(len(frame))); p > h.lagBytes/2 && len(subs) >= minLagging {
			h.markCongested(chn)
		}
	}
	return n
}

// postChannel publishes frame to the subscribers of channel name but exclude
// (see postLocked); none when it is not occupied. cong is the channel's
// congested spell, if it is congested (see Congestion).
func (h *hub) postChannel(name string, frame []byte, exclude string) (n int, cong *congestion) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if chn := h.channels[name]; chn != nil {
		return h.postLocked(chn, "", frame, exclude), chn.cong.Load()
	}
	return 0, nil
}

// postUser publishes frame to the sockets signed in as userID but exclude.
func (h *hub) postUser(userID string, frame []byte, exclude string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.postLocked(nil, userID, frame, exclude)
}

// fanOut is fanOutLocked under the read lock, for the first flusher: the
// read lock keeps membership still while publishes go on.
func (h *hub) fanOut() {
	h.mu.RLock()
	defer h.mu.RUnlock()
	h.fanOutLocked()
}

// queueOnAll queues frame on every socket of subs but exclude and returns how
// many took it.
func queueOnAll(subs map[*conn]struct{}, frame []byte, exclude string) int {
	n := 0
	for c := range subs {
		if c.id != exclude && c.queueFrame(frame) {
			n++
		}
	}
	return n
}

// lock takes h.mu for a change of membership (subscribe, unsubscribe,
// sign-in, removal), after fanning out what the outbox holds.
func (h *hub) lock() {
	h.mu.Lock()
	h.fanOutLocked()
}

// fanOutLocked queues every entry of the outbox on its sockets. The caller
// holds h.mu, so membership cannot change meanwhile; publishes may go on adding
// to a fresh queue.
func (h *hub) fanOutLocked() {
	o := &h.out
	o.mu.Lock()
	q := o.q
	if len(q) == 0 {
		o.mu.Unlock()
		return
	}
	o.q, o.spare = o.spare[:0], nil
	o.mu.Unlock()

	for i := 0; i < len(q); {
		e := &q[i]
		j := i + 1
		if e.exclude == "" {
			for j < len(q) && q[j].chn == e.chn && q[j].userID == e.userID && q[j].exclude == "" {
				j++
			}
		}
		subs := h.recipientsLocked(e.chn, e.userID)
		frames, size := o.frames[:0], int64(0)
		for k := i; k < j; k++ {
			frames = append(frames, q[k].frame)
			size += int64(len(q[k].frame))
		}
		// Sockets past half their queue lag: enough of them make the
		// channel congested (see Congestion).
		lagging := 0
		for c := range subs {
			if c.id != e.exclude {
				if q, ok := c.queueFrames(frames, size, e.since, &o.sched); ok && q > h.lagBytes {
					lagging++
				}
			}
		}
		if e.chn != nil && h.holding {
			e.chn.posted.Add(-size)
			if lagging >= minLagging && lagging >= h.lagNeed(len(subs)) {
				h.markCongested(e.chn)
			}
		}
		clear(frames)
		o.frames = frames
		i = j
	}
	// Hand the sockets to schedule to their flushers, one lock each.
	for rest := o.sched; len(rest) > 0; {
		rest = rest[0].fl.addAll(rest)
	}
	clear(o.sched)
	o.sched = o.sched[:0]
	if cap(q) > maxSpareOutbox {
		return // after a burst, do not keep its queue
	}
	clear(q) // drop the frames for the collector
	o.mu.Lock()
	o.spare = q[:0]
	o.mu.Unlock()
}
