package lifecycle

import (
	"encoding/json"
	"fmt"
	"time"
)

// EventType is the kind of an Event.
type EventType int

// Event types.
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
// how many sockets a Published event was queued for. Code and Reason are set
// on Disconnected when the server closed the socket. UserInfo is the
// member's user_info on MemberAdded (as the source holds it, so a watcher
// never has to look it up after the member may already have left); it must
// not be modified.
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
	// Node is the cluster node the event happened on; empty on one node.
	// Sources leave it empty; the cluster wiring tags the events it merges.
	Node string
}
