package delivery

import "context"

// Driver delivers events to subscribers and answers channel queries. Implementations:
// delivery/embedded (in-process edge) and delivery/pusher (Pusher HTTP API). Drivers do
// not validate the domain rules the Publisher enforces, but they return ErrInvalid for
// what they cannot send.
type Driver interface {
	// Publish delivers e to its channels.
	Publish(ctx context.Context, e Event) (Result, error)
	// PublishBatch delivers each event independently: results[i] and errs[i] belong to
	// events[i], and one failure does not stop the others. Both slices have len(events).
	PublishBatch(ctx context.Context, events []Event) ([]Result, []error)
	// SendToUser delivers one event to every connection signed in as userID, through the
	// reserved #server-to-user-{userID} channel.
	SendToUser(ctx context.Context, userID, name, data string) (Result, error)
	// Channels lists occupied channels whose name starts with prefix, sorted by name,
	// leaving out Hidden ones.
	Channels(ctx context.Context, prefix string) ([]ChannelInfo, error)
	// Channel describes one channel; an unoccupied channel is not an error
	// (Occupied false), and a Hidden one is answered as unoccupied.
	Channel(ctx context.Context, name string) (ChannelInfo, error)
	// PresenceMembers lists the members of a presence channel; ErrInvalid for a
	// non-presence channel.
	PresenceMembers(ctx context.Context, channel string) ([]Member, error)
	// Health reports the driver's state; it must be cheap and never block on I/O.
	Health() Health
}
