package delivery

import (
	"encoding/json"
	"time"

	"github.com/milequest/pushercm/protocol"
)

// Event is one publish request in domain terms.
type Event struct {
	// ID is the idempotency key. Empty means "generate one"; a generated id is never a
	// duplicate, so it is not remembered.
	ID string
	// Channels receive the event; 1..100 valid channel names, no duplicates.
	Channels []string
	// Name is the Pusher event name, 1..200 bytes, not in the pusher: namespaces.
	Name string
	// Data is forwarded to subscribers as the frame's data string, byte for byte.
	Data string
	// UserID is the user on whose behalf the event is published. It is metadata for
	// tracing and logs; it does not route the event (SendToUser does that).
	UserID string
	// ExcludeSocketID, when set, is the connection that does not receive the event
	// (Pusher's socket_id exclusion), typically the originator's own socket.
	ExcludeSocketID string
	// OccurredAt is when the fact happened at the producer (zero: not given). It is
	// metadata for logs and traces; Pusher frames have no place for it.
	OccurredAt time.Time
}

// Result is what a driver reports for one delivered event.
type Result struct {
	// DeliveredTo counts the connections the event was written to (embedded driver), or
	// the sum of the per-channel subscription counts Pusher reported (pusher driver;
	// see that package for presence channels and apps without subscription counting).
	DeliveredTo int
}

// Outcome is the Publisher's answer for one event (the SendEvent response).
type Outcome struct {
	// EventID is the event's id, generated when the request had none.
	EventID string
	// DeliveredTo is the driver's count for this call; 0 for a duplicate.
	DeliveredTo int
	// Duplicate is true when the id was seen inside the idempotency window, in which case
	// the event was not delivered again.
	Duplicate bool
	// Channels echoes the channels the event was published to.
	Channels []string
}

// ChannelInfo describes one channel as the driver sees it.
type ChannelInfo struct {
	Name     string
	Occupied bool
	// SubscriptionCount is the number of subscribed connections (0 when unknown).
	SubscriptionCount int
	// UserCount is the number of distinct presence members (presence channels only).
	UserCount int
}

// Member is one presence channel member.
type Member struct {
	UserID string
	// UserInfo is the member's user_info JSON; nil when the driver cannot know it
	// (Pusher's HTTP API returns ids only).
	UserInfo json.RawMessage
}

// BreakerState is the state of a driver's circuit breaker.
type BreakerState string

// Breaker states. Drivers without a breaker report BreakerNone.
const (
	BreakerNone     BreakerState = ""
	BreakerClosed   BreakerState = "closed"
	BreakerOpen     BreakerState = "open"
	BreakerHalfOpen BreakerState = "half-open"
)

// Health is a driver's view of its own state, for the health evaluator.
type Health struct {
	// Driver names the driver ("embedded", "pusher").
	Driver string
	// Healthy is false while the driver cannot deliver (breaker open, hub stopped).
	Healthy bool
	// Breaker is the circuit breaker state, BreakerNone for drivers without one.
	Breaker BreakerState
	// ConsecutiveFailures counts upstream failures since the last success.
	ConsecutiveFailures int
	// LastError describes the most recent upstream failure, for operators (may be empty).
	LastError string
	// Since is when the breaker last changed state (zero when never).
	Since time.Time
}

// Hidden says whether a channel is internal plumbing that channel reads never
// show: the per-user #server-to-user- channels SendToUser routes through.
// Drivers leave them out of Channels and answer Channel for them as
// unoccupied.
func Hidden(name string) bool {
	kind, _ := protocol.KindOf(name)
	return kind == protocol.KindServerToUser
}
