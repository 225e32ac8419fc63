package edge

import (
	"errors"

	"github.com/milequest/pushercm/lifecycle"
)

// Sentinel errors of the in-process API. Returned errors wrap one of them with detail;
// test with errors.Is. A lower-layer cause (a protocol channel-name error, say) is kept
// as text only, so the chain holds just the one edge sentinel.
var (
	// ErrNotFound: unknown socket id, channel or user.
	ErrNotFound = errors.New("edge: not found")
	// ErrInvalid: a malformed argument (channel name, event name, code).
	ErrInvalid = errors.New("edge: invalid argument")
	// ErrLimit: a configured limit refused the operation (payload size, channel count,
	// subscriptions per connection, presence members).
	ErrLimit = errors.New("edge: limit exceeded")
	// ErrClosed: the server is shutting down or not started.
	ErrClosed = errors.New("edge: server closed")
	// ErrWatcherLagged: a Watcher did not keep up with lifecycle events and was cut off.
	ErrWatcherLagged = lifecycle.ErrLagged
	// ErrConfig: invalid Config.
	ErrConfig = errors.New("edge: invalid config")
)
