package edge

import (
	"runtime"
	"sync"
	"time"
)

// flusher writes the frames queued on connections. Publishing only appends a shared
// frame to each subscriber's pending list; a flusher then writes everything a socket
// has pending in one write. Under load several frames per socket accumulate while the
// flusher is busy, so they coalesce into one syscall (and one read on the client)
// without adding a timer or latency when idle.
type flusher struct {
	mu      sync.Mutex
	dirty   []*conn
	wake    chan struct{}
	scratch []byte
}

func newFlushers() []*flusher {
	// One P stays free for the poller and HTTP handlers, so a big fan-out does not
	// delay reading the next publish.
	n := max(runtime.GOMAXPROCS(0)-1, 1)
	fs := make([]*flusher, n)
	for i := range fs {
		fs[i] = &flusher{wake: make(chan struct{}, 1)}
	}
	return fs
}

func (f *flusher) add(c *conn) {
	f.mu.Lock()
	f.dirty = append(f.dirty, c)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// run flushes until stop is closed, then flushes what is left once more.
func (f *flusher) run(stop <-chan struct{}) {
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

func (f *flusher) drain(batch *[]*conn) {
	for {
		f.mu.Lock()
		b := f.dirty
		f.dirty = (*batch)[:0]
		f.mu.Unlock()
		if len(b) == 0 {
			*batch = b
			return
		}
		for i, c := range b {
			f.scratch = c.flush(f.scratch)
			b[i] = nil
			if i%256 == 255 {
				runtime.Gosched() // let the poller and handlers in during long fan-outs
			}
		}
		*batch = b
	}
}

// enqueue appends frame to c's pending frames and schedules a flush.
func (c *conn) enqueue(frame []byte) bool { return c.push(frame, false) }

// enqueueFinal queues the close frame; nothing is queued after it.
func (c *conn) enqueueFinal(frame []byte) bool { return c.push(frame, true) }

func (c *conn) push(frame []byte, final bool) bool {
	c.pmu.Lock()
	if c.pendingClosed {
		c.pmu.Unlock()
		return false
	}
	c.pendingClosed = final
	if len(c.pending) == 0 && c.s.writeObs != nil {
		c.pendingSince = time.Now().UnixNano()
	}
	c.pending = append(c.pending, frame)
	sched := !c.scheduled
	c.scheduled = true
	c.pmu.Unlock()
	if sched {
		if c.fl == nil {
			// Not started (tests drive handlers directly): write inline.
			c.flush(nil)
		} else {
			c.fl.add(c)
		}
	}
	return true
}

// flush writes c's pending frames in one write, using scratch to join them.
func (c *conn) flush(scratch []byte) []byte {
	c.pmu.Lock()
	p := c.pending
	since := c.pendingSince
	c.pending = nil
	c.scheduled = false
	c.pmu.Unlock()
	if o := c.s.writeObs; o != nil && len(p) > 0 {
		defer func() { o.Written(time.Duration(time.Now().UnixNano()-since), len(p)) }()
	}
	switch len(p) {
	case 0:
		return scratch
	case 1:
		_, _ = c.nc.Write(p[0])
	default:
		scratch = scratch[:0]
		for _, f := range p {
			scratch = append(scratch, f...)
		}
		_, _ = c.nc.Write(scratch)
		if cap(scratch) > 1<<20 {
			scratch = nil // do not keep a huge buffer after a burst
		}
	}
	// Give the list back for reuse so steady publishing does not allocate per socket;
	// small lists only, so an idle socket keeps at most a few pointers.
	if cap(p) <= 8 {
		clear(p)
		c.pmu.Lock()
		if c.pending == nil {
			c.pending = p[:0]
		}
		c.pmu.Unlock()
	}
	return scratch
}
