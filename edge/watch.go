package edge

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// EventType is the kind of a lifecycle Event.
type EventType int

// Lifecycle event types.
const (
	Connected EventType = iota + 1
	Disconnected
	Subscribed
	Unsubscribed
	MemberAdded
	MemberRemoved
	ChannelOccupied
	ChannelVacated
	// Message events, sent only to watchers that ask for them
	// (WatchMessages): one per channel an event was published on, one per
	// client event relayed, one per webhook queued for sending.
	Published
	ClientEvent
	Webhook
)

// IsMessage says whether t is a message event rather than a lifecycle one.
func (t EventType) IsMessage() bool { return t >= Published && t <= Webhook }

func (t EventType) String() string {
	switch t {
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	case Subscribed:
		return "subscribed"
	case Unsubscribed:
		return "unsubscribed"
	case MemberAdded:
		return "member_added"
	case MemberRemoved:
		return "member_removed"
	case ChannelOccupied:
		return "channel_occupied"
	case ChannelVacated:
		return "channel_vacated"
	case Published:
		return "published"
	case ClientEvent:
		return "client_event"
	case Webhook:
		return "webhook"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one lifecycle change or message. Name is the event's name on
// Published and ClientEvent, the webhook's name on Webhook; Delivered is
// how many sockets a Published event was queued for. Code and Reason are set on Disconnected when the
// server closed the socket. UserInfo is the member's user_info on MemberAdded
// (as the edge holds it, so a watcher never has to look it up after the member
// may already have left); it must not be modified.
type Event struct {
	Type      EventType
	Time      time.Time
	SocketID  string
	UserID    string
	Channel   string
	Code      int
	Reason    string
	UserInfo  json.RawMessage
	Name      string
	Delivered int
}

// Watcher receives lifecycle events. A watcher whose buffer fills is cut off: its
// channel is closed and Err returns ErrWatcherLagged; other watchers are unaffected.
type Watcher struct {
	s        *Server
	c        chan Event
	messages bool // receives message events too
	mu       sync.Mutex
	err      error
	done     bool
}

// Watch subscribes to lifecycle events with a buffer of the given size (minimum 1;
// 0 means 256).
func (s *Server) Watch(buffer int) *Watcher { return s.watch(buffer, false) }

// WatchMessages is Watch plus the message events (Published, ClientEvent,
// Webhook). While no such watcher exists, publishing pays one atomic load
// for them.
func (s *Server) WatchMessages(buffer int) *Watcher { return s.watch(buffer, true) }

func (s *Server) watch(buffer int, messages bool) *Watcher {
	if buffer <= 0 {
		buffer = 256
	}
	w := &Watcher{s: s, c: make(chan Event, buffer), messages: messages}
	s.watchMu.Lock()
	if s.draining.Load() {
		s.watchMu.Unlock()
		w.finish(ErrClosed)
		return w
	}
	s.watchers[w] = struct{}{}
	if messages {
		s.messageWatchers.Add(1)
	}
	s.watchMu.Unlock()
	return w
}

// C is the event stream; it is closed when the watcher ends.
func (w *Watcher) C() <-chan Event { return w.c }

// Err is nil while the watcher runs or after Close, ErrWatcherLagged after overflow,
// ErrClosed after Shutdown.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close stops the watcher and closes C.
func (w *Watcher) Close() {
	w.s.watchMu.Lock()
	w.s.dropWatcherLocked(w)
	w.s.watchMu.Unlock()
	w.finish(nil)
}

func (s *Server) dropWatcherLocked(w *Watcher) {
	if _, ok := s.watchers[w]; !ok {
		return
	}
	delete(s.watchers, w)
	if w.messages {
		s.messageWatchers.Add(-1)
	}
}

// watchingMessages says whether any watcher wants message events.
func (s *Server) watchingMessages() bool { return s.messageWatchers.Load() > 0 }

func (w *Watcher) finish(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	w.done = true
	w.err = err
	close(w.c)
}

func (s *Server) emit(e Event) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	msg := e.Type.IsMessage()
	for w := range s.watchers {
		if msg && !w.messages {
			continue
		}
		select {
		case w.c <- e:
		default:
			s.dropWatcherLocked(w)
			w.finish(ErrWatcherLagged)
		}
	}
}

func (s *Server) closeWatchers(err error) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for w := range s.watchers {
		s.dropWatcherLocked(w)
		w.finish(err)
	}
}
