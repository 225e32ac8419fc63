package edge

import (
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/milequest/pushercm/protocol"
)

// flusher writes the frames queued on connections. A shared frame is appended
// to each subscriber's pending list (for publishes by the first flusher, from
// the outbox); a flusher then writes everything a socket has pending in one
// write. Under load several frames per socket accumulate while the flusher is
// busy, so they coalesce into one syscall (and one read on the client) without
// adding a timer or latency when idle.
//
// With an io_uring (Linux, unless disabled) a flusher hands up to ringEntries
// sockets' writes to the kernel in one io_uring_enter instead of one write(2)
// each. Which socket may take the ring, and what happens to a send the kernel
// takes only in part or refuses, is the socket's writer's to decide (see
// sockWriter); the flusher batches and submits.
type flusher struct {
	mu      sync.Mutex
	dirty   []*conn
	wake    chan struct{}
	scratch []byte

	// interval is the shortest time between the starts of two write rounds
	// (Config.FlushInterval); lastRound is when the last one started.
	interval  time.Duration
	lastRound time.Time

	ring  *uring
	sends []ringSend // the current io_uring batch
	arena []byte     // joined frames of the current batch

	ringSent, ringShort atomic.Int64 // sockets written by io_uring; of those, taken only in part

	// ringFault is set when a completion fails for a reason that is not the
	// socket's (see socketFault): the ring is dropped after the batch.
	ringFault error

	// fans is set on the one flusher that fans out the server's outbox at the
	// start of each round (see outbox).
	fans *Server
}

// ringSend is one socket's write in an io_uring batch; the socket is claimed
// (sockWriter.claim) until the batch is submitted.
type ringSend struct {
	c      *conn
	frames [][]byte
	since  int64
	buf    []byte
	res    int32
	done   bool // the kernel reported res
	taken  bool // the kernel took the send; without done, whether it sent is unknown
}

// ringEntries bounds one io_uring batch: the sockets of a batch stay locked
// against the event loop until it completes (a few hundred microseconds).
const ringEntries = 128

// maxArena is the largest batch arena a flusher keeps between rounds. A fan-out
// of 100 sockets with 40 events each pending (a 5 ms flush interval at 8k
// events/s) joins ~700 KB per round; dropping and re-allocating that every
// round cost more CPU than the sends themselves.
const maxArena = 4 << 20

// maxRecycledPending bounds the pending lists a socket keeps (see recycle):
// 1024 frames is what a socket takes per round at a 40 ms flush interval and
// 25k events/s on its channels.
const maxRecycledPending = 1024

func newFlushers(interval time.Duration, useRing bool, logger *slog.Logger) []*flusher {
	// One P stays free for the poller and HTTP handlers, so a big fan-out does not
	// delay reading the next publish.
	n := max(runtime.GOMAXPROCS(0)-1, 1)
	fs := make([]*flusher, n)
	for i := range fs {
		fs[i] = &flusher{wake: make(chan struct{}, 1), interval: interval}
		if useRing {
			r, err := newURing(ringEntries, ioringOpSend)
			if err != nil {
				if i == 0 {
					logger.Info("edge: io_uring unavailable, writing with write(2)", "err", err)
				}
				continue
			}
			fs[i].ring = r
		}
	}
	return fs
}

func (f *flusher) add(c *conn) {
	f.mu.Lock()
	f.dirty = append(f.dirty, c)
	f.mu.Unlock()
	f.poke()
}

// addAll schedules the sockets of cs whose flusher is f, in one step, and
// returns the others (cs reordered in place).
func (f *flusher) addAll(cs []*conn) []*conn {
	rest := cs[:0]
	f.mu.Lock()
	for _, c := range cs {
		if c.fl == f {
			f.dirty = append(f.dirty, c)
		} else {
			rest = append(rest, c)
		}
	}
	f.mu.Unlock()
	f.poke()
	return rest
}

// poke wakes the flusher for a round, unless a wake-up is already due.
func (f *flusher) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// run flushes until stop is closed, then flushes what is left once more.
func (f *flusher) run(stop <-chan struct{}) {
	defer f.closeRing()
	var batch []*conn
	for {
		select {
		case <-f.wake:
		case <-stop:
			f.drain(&batch)
			return
		}
		f.drain(&batch)
	}
}

// closeRing releases the flusher's io_uring, if it has one; later rounds write
// through the event loop.
func (f *flusher) closeRing() {
	if f.ring != nil {
		f.ring.close()
		f.ring = nil
	}
}

// beforeFanOut, when set (tests only), runs in the first flusher before each of
// its fan-outs of the outbox: blocking in it keeps publishes waiting there, so
// tests can change membership while one is pending, deterministically.
var beforeFanOut atomic.Pointer[func()]

func (f *flusher) drain(batch *[]*conn) {
	for {
		f.pace()
		if s := f.fans; s != nil {
			if hook := beforeFanOut.Load(); hook != nil {
				(*hook)()
			}
			s.hub.fanOut()
		}
		f.mu.Lock()
		b := f.dirty
		f.dirty = (*batch)[:0]
		f.mu.Unlock()
		if len(b) == 0 {
			*batch = b
			return
		}
		for i, c := range b {
			f.write(c)
			b[i] = nil
			if i%ringEntries == ringEntries-1 {
				f.submitRing()
				runtime.Gosched() // let the poller and handlers in during long fan-outs
			}
		}
		f.submitRing()
		*batch = b
	}
}

// pace waits until interval has passed since the last round started. An idle
// flusher never waits (its last round is long past); a busy one writes every
// interval, everything queued meanwhile in one write per socket.
func (f *flusher) pace() {
	if f.interval <= 0 {
		return
	}
	now := time.Now()
	if wait := f.interval - now.Sub(f.lastRound); wait > 0 {
		time.Sleep(wait)
		now = now.Add(wait)
	}
	f.lastRound = now
}

// write sends c's pending frames the way its writer says: into the current
// io_uring batch, or through the event loop.
func (f *flusher) write(c *conn) {
	p, since := c.takePending()
	if len(p) == 0 {
		return
	}
	switch c.sock.claim(f.ring != nil) {
	case routeClosed:
		c.recycle(p)
	case routeLoop:
		f.scratch = c.writeFrames(p, since, f.scratch)
		c.recycle(p)
	case routeRing:
		f.sends = append(f.sends, ringSend{c: c, frames: p, since: since})
		if len(f.sends) == ringEntries {
			f.submitRing()
		}
	}
}

// submitRing sends the current batch with one io_uring_enter and settles each
// socket: fully sent, partly sent (the rest goes to the event loop), refused by
// the kernel (all of it goes to the event loop, and the ring is dropped) or
// failed because of the socket (the socket is closed).
func (f *flusher) submitRing() {
	sends := f.sends
	if len(sends) == 0 {
		return
	}
	// Join multi-frame writes first: the arena must not move once buffers point
	// into it. Sockets that take the same frames (the subscribers of one
	// channel, fed by one outbox fan-out) share one joined copy: the kernel
	// copies what it sends, so one buffer may go to many sockets.
	need := 0
	var prev [][]byte
	for i := range sends {
		if fr := sends[i].frames; len(fr) > 1 && !sameFrames(fr, prev) {
			for _, b := range fr {
				need += len(b)
			}
			prev = fr
		}
	}
	if cap(f.arena) < need {
		// With headroom: under steady load the batch size wobbles, and a
		// fresh (zeroed) arena every round would cost more than the sends.
		f.arena = make([]byte, 0, need+need/4)
	}
	arena := f.arena[:0]
	var last *ringSend
	for i := range sends {
		s := &sends[i]
		if len(s.frames) == 1 {
			s.buf = s.frames[0]
			continue
		}
		if last != nil && sameFrames(s.frames, last.frames) {
			s.buf = last.buf
			continue
		}
		last = s
		start := len(arena)
		for _, fr := range s.frames {
			arena = append(arena, fr...)
		}
		s.buf = arena[start:len(arena):len(arena)]
	}
	for i := range sends {
		f.ring.prepSend(sends[i].c.sock.fd, sends[i].buf, uint64(i))
	}
	logger := sends[0].c.s.cfg.Logger
	taken, err := f.ring.submit(func(ud uint64, res int32) {
		if ud < uint64(len(sends)) {
			sends[ud].res, sends[ud].done = res, true
		}
	})
	for i := range sends {
		sends[i].taken = uint32(i) < taken
		sends[i].c.sock.release()
	}
	if err != nil {
		// The ring is unusable: drop it (requests it did not start die with
		// it) and write what it did not send the ordinary way.
		logger.Warn("edge: io_uring failed, writing with write(2)", "err", err)
		f.closeRing()
	}
	for i := range sends {
		f.settle(&sends[i])
		sends[i] = ringSend{}
	}
	if f.ringFault != nil {
		// The kernel refuses these sends (an opcode or flag it lacks, or no
		// memory for them): write through the event loop from now on.
		logger.Warn("edge: io_uring send failed, writing with write(2)", "err", f.ringFault)
		f.ringFault = nil
		f.closeRing()
	}
	f.sends = sends[:0]
	if cap(f.arena) > maxArena {
		f.arena = nil // do not keep a huge buffer after a burst
	}
}

// sameFrames reports whether a and b are the same frames (the same bytes in
// memory, in the same order).
func sameFrames(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) || (len(a[i]) > 0 && &a[i][0] != &b[i][0]) {
			return false
		}
	}
	return true
}

// settle applies the kernel's answer for one socket of the batch and counts it.
func (f *flusher) settle(s *ringSend) {
	c := s.c
	outcome, sent := c.sock.settle(s.buf, s.res, s.done, s.taken)
	c.queued.Add(-int64(sent))
	switch outcome {
	case ringSentAll:
		f.ringSent.Add(1)
	case ringSentPart:
		f.ringSent.Add(1)
		f.ringShort.Add(1)
	case ringRefused:
		f.ringFault = syscall.Errno(-s.res)
	}
	if o := c.s.writeObs; o != nil {
		o.Written(time.Duration(time.Now().UnixNano()-s.since), len(s.frames))
	}
	c.recycle(s.frames)
}

// enqueueFinal queues the close frame; nothing is queued after it.
func (c *conn) enqueueFinal(frame []byte) bool { return c.push(frame, true) }

// push appends frame to c's pending frames and schedules a flush (final: it
// is the close frame).
func (c *conn) push(frame []byte, final bool) bool {
	return c.pushFrames([][]byte{frame}, final, 0, nil)
}

// pushFrames appends frames to the pending list and schedules the socket's
// flush. since is when the first of them was queued (0: now), for a
// WriteObserver. With sched non-nil, a socket that needs scheduling is
// appended to it for the caller to hand to its flusher (see flusher.addAll)
// instead of taking the flusher's lock itself.
func (c *conn) pushFrames(frames [][]byte, final bool, since int64, sched *[]*conn) bool {
	c.pmu.Lock()
	if c.pendingClosed {
		c.pmu.Unlock()
		return false
	}
	c.pendingClosed = final
	if len(c.pending) == 0 && c.s.writeObs != nil {
		if since == 0 {
			since = time.Now().UnixNano()
		}
		c.pendingSince = since
	}
	if c.pending == nil {
		c.pending, c.spare = c.spare, nil
		if c.pending == nil && c.lastTaken > 8 {
			// A busy socket: one allocation of about last round's size
			// instead of growing from one.
			c.pending = make([][]byte, 0, max(c.lastTaken+c.lastTaken/4, len(frames)))
		}
	}
	c.pending = append(c.pending, frames...)
	schedule := !c.scheduled
	c.scheduled = true
	c.pmu.Unlock()
	if schedule {
		switch {
		case c.fl == nil:
			// Not started (tests drive handlers directly): write inline.
			c.flush(nil)
		case sched != nil:
			*sched = append(*sched, c)
		default:
			c.fl.add(c)
		}
	}
	return true
}

// queueFrames queues frames (size bytes in all) without blocking: one queue
// check, one lock and one count for all of them (an outbox fan-out queues a
// run of events so). It reports false when the socket is closing or the frames
// would overflow the outbound queue; overflow closes the socket as a slow
// consumer, and the frames it did not take are counted as dropped. queued is
// the socket's queue once they are in it. A socket to schedule is appended to
// sched (see pushFrames).
func (c *conn) queueFrames(frames [][]byte, size, since int64, sched *[]*conn) (queued int64, ok bool) {
	if c.closing.Load() {
		return 0, false
	}
	queued = c.queued.Add(size)
	if queued > int64(c.s.cfg.WriteQueueBytes) {
		c.queued.Add(-size)
		c.s.st.slowConsumers.Add(1)
		c.s.st.slowDropped.Add(uint64(len(frames)))
		c.closeWith(protocol.CodeOverCapacity, "Slow consumer: outbound queue full", true)
		return 0, false
	}
	if !c.pushFrames(frames, false, since, sched) {
		c.queued.Add(-size)
		return 0, false
	}
	c.msgsOut.Add(uint64(len(frames)))
	return queued, true
}

// takePending takes c's pending frames (and when the oldest was queued).
func (c *conn) takePending() ([][]byte, int64) {
	c.pmu.Lock()
	p := c.pending
	since := c.pendingSince
	c.pending = nil
	c.lastTaken = len(p)
	c.scheduled = false
	c.pmu.Unlock()
	return p, since
}

// flush writes c's pending frames in one write through the event loop, using
// scratch to join them.
func (c *conn) flush(scratch []byte) []byte {
	p, since := c.takePending()
	if len(p) == 0 {
		return scratch
	}
	scratch = c.writeFrames(p, since, scratch)
	c.recycle(p)
	return scratch
}

// writeFrames writes frames in one write through the event loop.
func (c *conn) writeFrames(p [][]byte, since int64, scratch []byte) []byte {
	if o := c.s.writeObs; o != nil {
		defer func() { o.Written(time.Duration(time.Now().UnixNano()-since), len(p)) }()
	}
	if len(p) == 1 {
		c.sock.write(p[0])
		return scratch
	}
	scratch = scratch[:0]
	for _, f := range p {
		scratch = append(scratch, f...)
	}
	c.sock.write(scratch)
	if cap(scratch) > 1<<20 {
		scratch = nil // do not keep a huge buffer after a burst
	}
	return scratch
}

// trimPending drops the spare list and an empty pending list of more than a few
// slots, so a socket that was busy does not keep its lists (up to 48 KiB) after
// its traffic stops. The sweeper calls it every pass; a socket still busy grows
// them again once per pass.
func (c *conn) trimPending() {
	c.pmu.Lock()
	if len(c.pending) == 0 && cap(c.pending) > 8 {
		c.pending = nil
	}
	c.spare = nil
	c.lastTaken = 0
	c.pmu.Unlock()
}

// recycle gives a pending list back for reuse so steady publishing does not
// allocate per socket. Lists of up to maxRecycledPending frames are kept (24 KiB
// of slice headers, only on sockets that received that many in one round, at
// most two lists, and dropped by the sweeper's next pass; see trimPending):
// under a flush interval a busy socket takes dozens to hundreds of frames per
// round, and growing a fresh list to that size every round was most of the cost
// of queueing a frame (at 40 ms, 128 frames was too few: the lists were
// allocated afresh every round and their garbage collection cost more than the
// sends the longer interval saved).
func (c *conn) recycle(p [][]byte) {
	if cap(p) > maxRecycledPending {
		return
	}
	clear(p)
	c.pmu.Lock()
	// Under steady publishing new frames are already pending by now: keep
	// the list as the spare for the next round rather than drop it.
	if c.pending == nil {
		c.pending = p[:0]
	} else if c.spare == nil {
		c.spare = p[:0]
	}
	c.pmu.Unlock()
}
