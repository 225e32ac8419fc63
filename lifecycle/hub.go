package lifecycle

import (
	"sync"
	"sync/atomic"

	"github.com/milequest/pushercm/errcode"
)

// ErrLagged ends a Watcher that did not keep up and was cut off.
var ErrLagged = errcode.New(errcode.WatcherLagged, "watcher lagged behind and was closed")

// DefaultBuffer is a watcher's buffer when Watch is given 0 or less.
const DefaultBuffer = 256

// Hub hands events from one source to its watchers. The zero value is
// ready to use; a Hub must not be copied after first use.
type Hub struct {
	mu       sync.Mutex
	watchers map[*Watcher]struct{}
	closeErr error // set by Close
	closed   bool
	// messages counts the watchers of message events, so that sources skip
	// building them when nobody watches.
	messages atomic.Int32
}

// Watcher receives a Hub's events.
type Watcher struct {
	h        *Hub // nil for a watcher that was never registered
	c        chan Event
	messages bool // receives message events too
	mu       sync.Mutex
	err      error
	done     bool
}

// Watch subscribes to lifecycle events with a buffer of the given size
// (0 or less means DefaultBuffer).
func (h *Hub) Watch(buffer int) *Watcher { return h.watch(buffer, false) }

// WatchMessages is Watch plus the message events (Published, ClientEvent,
// Webhook).
func (h *Hub) WatchMessages(buffer int) *Watcher { return h.watch(buffer, true) }

func (h *Hub) watch(buffer int, messages bool) *Watcher {
	w := newWatcher(buffer)
	w.h, w.messages = h, messages
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		w.finish(h.closeErr)
		return w
	}
	if h.watchers == nil {
		h.watchers = make(map[*Watcher]struct{})
	}
	h.watchers[w] = struct{}{}
	if messages {
		h.messages.Add(1)
	}
	return w
}

func newWatcher(buffer int) *Watcher {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	return &Watcher{c: make(chan Event, buffer)}
}

// Ended returns a watcher that has already ended with err, for a source
// that refuses new watchers before its Hub is closed (a draining server).
func Ended(err error) *Watcher {
	w := newWatcher(1)
	w.finish(err)
	return w
}

// WatchingMessages says whether any watcher wants message events.
func (h *Hub) WatchingMessages() bool { return h.messages.Load() > 0 }

// Emit sends e to every watcher that wants it, cutting off those whose
// buffer is full. It never blocks on a watcher.
func (h *Hub) Emit(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	msg := e.Type.IsMessage()
	for w := range h.watchers {
		if msg && !w.messages {
			continue
		}
		select {
		case w.c <- e:
		default:
			h.dropLocked(w)
			w.finish(ErrLagged)
		}
	}
}

// Close ends every watcher with err, and every later one at once.
func (h *Hub) Close(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed, h.closeErr = true, err
	for w := range h.watchers {
		h.dropLocked(w)
		w.finish(err)
	}
}

func (h *Hub) dropLocked(w *Watcher) {
	if _, ok := h.watchers[w]; !ok {
		return
	}
	delete(h.watchers, w)
	if w.messages {
		h.messages.Add(-1)
	}
}

// C is the event stream; it is closed when the watcher ends.
func (w *Watcher) C() <-chan Event { return w.c }

// Err is nil while the watcher runs or after Close, ErrLagged after it was
// cut off, and the Hub's close error after Hub.Close.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close stops the watcher and closes C.
func (w *Watcher) Close() {
	if w.h != nil {
		w.h.mu.Lock()
		w.h.dropLocked(w)
		w.h.mu.Unlock()
	}
	w.finish(nil)
}

func (w *Watcher) finish(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	w.done, w.err = true, err
	close(w.c)
}
