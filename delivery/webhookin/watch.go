package webhookin

import (
	"sync"

	"github.com/milequest/pushercm/edge"
)

// Watcher receives the view's lifecycle events. A watcher whose buffer
// fills is cut off: C is closed and Err returns edge.ErrWatcherLagged.
type Watcher struct {
	r    *Receiver
	c    chan edge.Event
	mu   sync.Mutex
	err  error
	done bool
}

// Watch subscribes to events with a buffer of the given size (0 means 256).
func (r *Receiver) Watch(buffer int) *Watcher {
	if buffer <= 0 {
		buffer = 256
	}
	w := &Watcher{r: r, c: make(chan edge.Event, buffer)}
	r.watchMu.Lock()
	defer r.watchMu.Unlock()
	if r.closed {
		w.finish(edge.ErrClosed)
		return w
	}
	r.watchers[w] = struct{}{}
	return w
}

// C is the event stream; closed when the watcher ends.
func (w *Watcher) C() <-chan edge.Event { return w.c }

// Err is nil while running or after Close, edge.ErrWatcherLagged after an
// overflow, edge.ErrClosed after the receiver closed.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close stops the watcher.
func (w *Watcher) Close() {
	w.r.watchMu.Lock()
	delete(w.r.watchers, w)
	w.r.watchMu.Unlock()
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

func (r *Receiver) emit(e edge.Event) {
	r.watchMu.Lock()
	defer r.watchMu.Unlock()
	for w := range r.watchers {
		select {
		case w.c <- e:
		default:
			delete(r.watchers, w)
			w.finish(edge.ErrWatcherLagged)
		}
	}
}

// Close ends every watcher with edge.ErrClosed.
func (r *Receiver) Close() {
	r.watchMu.Lock()
	defer r.watchMu.Unlock()
	r.closed = true
	for w := range r.watchers {
		delete(r.watchers, w)
		w.finish(edge.ErrClosed)
	}
}
