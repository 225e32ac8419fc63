package edge

import (
	"errors"

	"github.com/milequest/pushercm/errcode"
	"github.com/milequest/pushercm/lifecycle"
)

// Sentinel errors of the in-process API. Returned errors wrap one of them with detail;
// test with errors.Is. Each carries an errcode.Code, which is all a transport reads.
// A lower-layer cause (a protocol channel-name error, say) is kept as text only, so
// the chain holds just the one edge sentinel.
var (
	// ErrNotFound: unknown socket id, channel or user.
	ErrNotFound = errcode.New(errcode.NotFound, "edge: not found")
	// ErrInvalid: a malformed argument (channel name, event name, code).
	ErrInvalid = errcode.New(errcode.InvalidArgument, "edge: invalid argument")
	// ErrLimit: a configured limit refused the operation (payload size, channel count,
	// subscriptions per connection, presence members).
	ErrLimit = errcode.New(errcode.LimitExceeded, "edge: limit exceeded")
	// ErrClosed: the server is shutting down or not started.
	ErrClosed = &errcode.Error{Code: errcode.ConnectionFailed, Message: "edge: server closed", Public: "server is shutting down", Temporary: true}
	// ErrWatcherLagged: a Watcher did not keep up with lifecycle events and was cut off.
	ErrWatcherLagged = lifecycle.ErrLagged
	// ErrConfig: invalid Config.
	ErrConfig = errors.New("edge: invalid config")
)
