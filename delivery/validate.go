package delivery

import (
	"errors"
	"fmt"
	"strings"

	"github.com/milequest/pushercm/protocol"
)

// MaxEventIDLength bounds idempotency keys so that a key store cannot be filled with
// huge keys.
const MaxEventIDLength = 128

// reservedEventPrefixes are event-name namespaces that pusher-js interprets itself;
// a server event there would be mistaken for protocol traffic.
var reservedEventPrefixes = []string{"pusher:", "pusher_internal:"}

// Validate checks e against Pusher's default limits. See ValidateEvent.
func (e Event) Validate() error { return ValidateEvent(e, protocol.DefaultLimits()) }

// ValidateEvent checks e against limits (zero fields take Pusher's defaults) and returns
// a *ValidationError listing every violation, with paths rooted at "event", or nil.
func ValidateEvent(e Event, limits protocol.Limits) error {
	return validateEvent(&e, limits.WithDefaults())
}

// validateEvent is ValidateEvent with limits l that already have their defaults
// (the Publisher's), for the hot path: no defaulting and no copy of e per call.
func validateEvent(e *Event, l protocol.Limits) error {
	var vs []FieldViolation
	add := func(field, format string, args ...any) {
		vs = append(vs, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
	}

	if len(e.ID) > MaxEventIDLength {
		add("event.id", "must be at most %d bytes, got %d", MaxEventIDLength, len(e.ID))
	}
	switch n := len(e.Channels); {
	case n == 0:
		add("event.channels", "at least one channel is required")
	case !protocol.Within(n, l.MaxChannelsPerTrigger):
		add("event.channels", "at most %d channels per event, got %d", l.MaxChannelsPerTrigger, n)
	}
	// Duplicates: a quadratic scan for the usual handful of channels, a map beyond that
	// (a map costs an allocation on the hot path).
	var seen map[string]int
	if len(e.Channels) > 16 {
		seen = make(map[string]int, len(e.Channels))
	}
	for i, ch := range e.Channels {
		if d := channelProblem(ch, l.MaxChannelNameLength); d != "" {
			add(fmt.Sprintf("event.channels[%d]", i), "%s", d)
			continue
		}
		j := -1
		if seen != nil {
			if k, dup := seen[ch]; dup {
				j = k
			} else {
				seen[ch] = i
			}
		} else {
			for k := 0; k < i; k++ {
				if e.Channels[k] == ch {
					j = k
					break
				}
			}
		}
		if j >= 0 {
			add(fmt.Sprintf("event.channels[%d]", i), "duplicate of event.channels[%d]", j)
		}
	}
	if d := eventNameProblem(e.Name, l.MaxEventNameLength); d != "" {
		add("event.name", "%s", d)
	}
	if len(e.Data) > l.MaxPayloadBytes {
		add("event.data", "must be at most %d bytes, got %d", l.MaxPayloadBytes, len(e.Data))
	}
	if e.ExcludeSocketID != "" && !protocol.ValidSocketID(e.ExcludeSocketID) {
		add("event.exclude_socket_id", "must be a Pusher socket id (digits.digits)")
	}
	if len(e.UserID) > l.MaxUserIDLength {
		add("event.user_id", "must be at most %d bytes, got %d", l.MaxUserIDLength, len(e.UserID))
	}
	if len(vs) > 0 {
		return &ValidationError{Violations: vs}
	}
	return nil
}

// ValidateSendToUser checks the fields of a SendToUser request; paths are the request's
// top-level fields (user_id, name, data).
func ValidateSendToUser(userID, name, data string, limits protocol.Limits) error {
	l := limits.WithDefaults()
	var vs []FieldViolation
	switch {
	case userID == "":
		vs = append(vs, FieldViolation{"user_id", "is required"})
	case len(userID) > l.MaxUserIDLength:
		vs = append(vs, FieldViolation{"user_id", fmt.Sprintf("must be at most %d bytes, got %d", l.MaxUserIDLength, len(userID))})
	default:
		if _, err := protocol.ParseChannel(protocol.ServerToUserChannel(userID), protocol.DefaultMaxChannelNameLength+len(protocol.ServerToUserPrefix)); err != nil {
			vs = append(vs, FieldViolation{"user_id", "may contain only A-Z a-z 0-9 _ - = @ , . ;"})
		}
	}
	if d := eventNameProblem(name, l.MaxEventNameLength); d != "" {
		vs = append(vs, FieldViolation{"name", d})
	}
	if len(data) > l.MaxPayloadBytes {
		vs = append(vs, FieldViolation{"data", fmt.Sprintf("must be at most %d bytes, got %d", l.MaxPayloadBytes, len(data))})
	}
	if len(vs) > 0 {
		return &ValidationError{Violations: vs}
	}
	return nil
}

func channelProblem(name string, maxLen int) string {
	c, err := protocol.ParseChannel(name, maxLen)
	if err != nil {
		return channelNameProblem(err, name, maxLen)
	}
	if c.Kind == protocol.KindServerToUser {
		// Routing to users has its own call so that the user id is validated and
		// drivers can use their native user delivery.
		return "server-to-user channels are reserved: use SendToUser"
	}
	return ""
}

// channelNameProblem describes ParseChannel's error err for name.
func channelNameProblem(err error, name string, maxLen int) string {
	switch {
	case errors.Is(err, protocol.ErrChannelNameEmpty):
		return "channel name is required"
	case errors.Is(err, protocol.ErrChannelNameTooLong):
		return fmt.Sprintf("channel name must be at most %d bytes, got %d", maxLen, len(name))
	case errors.Is(err, protocol.ErrChannelNameChars):
		return "channel name may contain only A-Z a-z 0-9 _ - = @ , . ;"
	case errors.Is(err, protocol.ErrChannelReserved):
		return "channel names starting with # are reserved"
	}
	return "invalid channel name"
}

func eventNameProblem(name string, maxLen int) string {
	if name == "" {
		return "event name is required"
	}
	if len(name) > maxLen {
		return fmt.Sprintf("must be at most %d bytes, got %d", maxLen, len(name))
	}
	for _, p := range reservedEventPrefixes {
		if strings.HasPrefix(name, p) {
			return fmt.Sprintf("the %q prefix is reserved for the protocol", p)
		}
	}
	return ""
}
