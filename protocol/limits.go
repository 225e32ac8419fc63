package protocol

import (
	"errors"
	"fmt"
)

// Limits are the Pusher limits (PUSHER-PROTOCOL.md §5.5). A zero field means the Pusher
// default; a negative field means "no limit" where that makes sense (documented per field).
type Limits struct {
	// MaxPayloadBytes bounds an event's data (HTTP trigger and client events). Default 10240.
	MaxPayloadBytes int
	// MaxChannelsPerTrigger bounds the channels of one trigger. Default 100.
	MaxChannelsPerTrigger int
	// MaxBatchSize bounds the events of one batch trigger. Default 10.
	MaxBatchSize int
	// MaxEventNameLength bounds event names. Default 200.
	MaxEventNameLength int
	// MaxChannelNameLength bounds channel names. Default 164.
	MaxChannelNameLength int
	// MaxPresenceMembers bounds distinct users in one presence channel. Default 100; <0 unlimited.
	MaxPresenceMembers int
	// MaxMemberInfoBytes bounds the JSON size of a presence user_info. Default 1024.
	MaxMemberInfoBytes int
	// MaxUserIDLength bounds presence and sign-in user ids. Default 128.
	MaxUserIDLength int
	// MaxSubscriptionsPerConnection bounds channels joined by one socket. Default 100; <0 unlimited.
	MaxSubscriptionsPerConnection int
	// ClientEventsPerSecond bounds client events per connection. Default 10; <0 unlimited.
	ClientEventsPerSecond int
	// MaxConnections bounds concurrent WebSocket connections of the app. Default 5000; <0 unlimited.
	MaxConnections int
}

// Pusher's defaults.
const (
	DefaultMaxPayloadBytes               = 10 * 1024
	DefaultMaxChannelsPerTrigger         = 100
	DefaultMaxBatchSize                  = 10
	DefaultMaxEventNameLength            = 200
	DefaultMaxPresenceMembers            = 100
	DefaultMaxMemberInfoBytes            = 1024
	DefaultMaxUserIDLength               = 128
	DefaultMaxSubscriptionsPerConnection = 100
	DefaultClientEventsPerSecond         = 10
	DefaultMaxConnections                = 5000
)

// DefaultLimits returns Pusher's limits.
func DefaultLimits() Limits { return Limits{}.WithDefaults() }

// WithDefaults returns l with every zero field replaced by Pusher's default.
func (l Limits) WithDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxPayloadBytes, DefaultMaxPayloadBytes)
	def(&l.MaxChannelsPerTrigger, DefaultMaxChannelsPerTrigger)
	def(&l.MaxBatchSize, DefaultMaxBatchSize)
	def(&l.MaxEventNameLength, DefaultMaxEventNameLength)
	def(&l.MaxChannelNameLength, DefaultMaxChannelNameLength)
	def(&l.MaxPresenceMembers, DefaultMaxPresenceMembers)
	def(&l.MaxMemberInfoBytes, DefaultMaxMemberInfoBytes)
	def(&l.MaxUserIDLength, DefaultMaxUserIDLength)
	def(&l.MaxSubscriptionsPerConnection, DefaultMaxSubscriptionsPerConnection)
	def(&l.ClientEventsPerSecond, DefaultClientEventsPerSecond)
	def(&l.MaxConnections, DefaultMaxConnections)
	return l
}

// ErrLimits reports an invalid Limits value.
var ErrLimits = errors.New("protocol: invalid limits")

// Validate rejects limits that cannot be unlimited (sizes and name lengths must be
// positive after defaults are applied).
func (l Limits) Validate() error {
	l = l.WithDefaults()
	for _, f := range []struct {
		name string
		v    int
	}{
		{"MaxPayloadBytes", l.MaxPayloadBytes},
		{"MaxChannelsPerTrigger", l.MaxChannelsPerTrigger},
		{"MaxBatchSize", l.MaxBatchSize},
		{"MaxEventNameLength", l.MaxEventNameLength},
		{"MaxChannelNameLength", l.MaxChannelNameLength},
		{"MaxMemberInfoBytes", l.MaxMemberInfoBytes},
		{"MaxUserIDLength", l.MaxUserIDLength},
	} {
		if f.v < 0 {
			return fmt.Errorf("%w: %s must be positive, got %d", ErrLimits, f.name, f.v)
		}
	}
	return nil
}

// Within reports whether n is within limit, where a negative limit means unlimited.
func Within(n, limit int) bool { return limit < 0 || n <= limit }
