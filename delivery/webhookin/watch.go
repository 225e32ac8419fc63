package webhookin

import (
	"fmt"

	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/lifecycle"
)

// ErrClosed ends the watchers of a closed Receiver; it wraps
// delivery.ErrUnavailable, so the gRPC API answers UNAVAILABLE.
var ErrClosed = fmt.Errorf("%w: webhook receiver closed", delivery.ErrUnavailable)

// Watch subscribes to the view's lifecycle events with a buffer of the
// given size (0 means lifecycle.DefaultBuffer). A watcher whose buffer fills
// is cut off with lifecycle.ErrLagged.
func (r *Receiver) Watch(buffer int) *lifecycle.Watcher { return r.hub.Watch(buffer) }

// WatchMessages is Watch: the view has no message events, so a watcher
// that asks for them gets the lifecycle events alone.
func (r *Receiver) WatchMessages(buffer int) *lifecycle.Watcher {
	return r.hub.WatchMessages(buffer)
}

// Close ends every watcher with an error wrapping delivery.ErrUnavailable.
func (r *Receiver) Close() { r.hub.Close(ErrClosed) }
