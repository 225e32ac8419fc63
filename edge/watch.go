package edge

import "github.com/milequest/pushercm/lifecycle"

// Watch subscribes to lifecycle events with a buffer of the given size
// (0 means lifecycle.DefaultBuffer). A watcher whose buffer fills is cut off
// with ErrWatcherLagged; after Shutdown every watcher ends with ErrClosed.
func (s *Server) Watch(buffer int) *lifecycle.Watcher {
	if s.draining.Load() {
		return lifecycle.Ended(ErrClosed)
	}
	return s.events.Watch(buffer)
}

// WatchMessages is Watch plus the message events (Published, ClientEvent,
// Webhook). While no such watcher exists, publishing pays one atomic load
// for them.
func (s *Server) WatchMessages(buffer int) *lifecycle.Watcher {
	if s.draining.Load() {
		return lifecycle.Ended(ErrClosed)
	}
	return s.events.WatchMessages(buffer)
}

// watchingMessages says whether any watcher wants message events.
func (s *Server) watchingMessages() bool { return s.events.WatchingMessages() }

func (s *Server) emit(e lifecycle.Event) { s.events.Emit(e) }
