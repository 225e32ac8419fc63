package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Event names of the protocol.
const (
	EventConnectionEstablished = "pusher:connection_established"
	EventError                 = "pusher:error"
	EventPing                  = "pusher:ping"
	EventPong                  = "pusher:pong"
	EventSubscribe             = "pusher:subscribe"
	EventUnsubscribe           = "pusher:unsubscribe"
	EventSignin                = "pusher:signin"
	EventSigninSuccess         = "pusher:signin_success"
	EventCacheMiss             = "pusher:cache_miss"
	EventSubscriptionError     = "pusher:subscription_error"
	EventSubscriptionSucceeded = "pusher_internal:subscription_succeeded"
	EventMemberAdded           = "pusher_internal:member_added"
	EventMemberRemoved         = "pusher_internal:member_removed"
	// ClientEventPrefix starts every client event name.
	ClientEventPrefix = "client-"
)

// Close and error codes (§1.6).
const (
	CodeTLSOnly             = 4000
	CodeAppNotFound         = 4001
	CodeAppDisabled         = 4003
	CodeOverQuota           = 4004
	CodePathNotFound        = 4005
	CodeInvalidVersion      = 4006
	CodeUnsupportedProtocol = 4007
	CodeNoProtocol          = 4008
	CodeUnauthorized        = 4009
	CodeOverCapacity        = 4100
	CodeReconnect           = 4200
	CodePongTimeout         = 4201
	CodeInactivity          = 4202
	CodeClientEventRejected = 4301
	CodeWatchlistLimit      = 4302
)

// Subscription error types (pusher:subscription_error data.type).
const (
	SubErrAuth         = "AuthError"
	SubErrLimitReached = "LimitReached"
	SubErrServer       = "ServerError"
	SubErrInvalid      = "InvalidChannel"
)

// ErrFrame reports an inbound frame that is not a protocol message.
var ErrFrame = errors.New("protocol: malformed frame")

// Message is a decoded inbound frame. Data holds the raw JSON of "data": an object, a
// string holding JSON, or absent.
type Message struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// DecodeMessage parses one inbound frame. It requires a JSON object with a non-empty
// string event.
func DecodeMessage(b []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrFrame, err)
	}
	if m.Event == "" {
		return Message{}, fmt.Errorf("%w: no event", ErrFrame)
	}
	if n := len(m.Data); n > 0 && bytes.Equal(m.Data, []byte("null")) {
		m.Data = nil
	}
	return m, nil
}

// DataString returns data in the form clients receive it: a JSON string's content, or the
// raw JSON text of any other value, or "" when absent.
func (m Message) DataString() string {
	if len(m.Data) == 0 {
		return ""
	}
	if m.Data[0] == '"' {
		var s string
		if json.Unmarshal(m.Data, &s) == nil {
			return s
		}
	}
	return string(m.Data)
}

// DecodeData unmarshals data into v, accepting both an object and a string that holds
// JSON (pusher-js sends objects; other clients send strings).
func (m Message) DecodeData(v any) error {
	if len(m.Data) == 0 {
		return fmt.Errorf("%w: no data", ErrFrame)
	}
	raw := []byte(m.Data)
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%w: %w", ErrFrame, err)
		}
		raw = []byte(s)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%w: %w", ErrFrame, err)
	}
	return nil
}

// SubscribeData is the data of pusher:subscribe. ChannelData is kept as the exact string
// received because the presence signature covers those bytes.
type SubscribeData struct {
	Channel     string   `json:"channel"`
	Auth        string   `json:"auth"`
	ChannelData JSONText `json:"channel_data"`
}

// SigninData is the data of pusher:signin.
type SigninData struct {
	Auth     string   `json:"auth"`
	UserData JSONText `json:"user_data"`
}

// JSONText decodes a JSON string to its content and any other JSON value to its raw text,
// so signatures can be checked over exactly what the client sent.
type JSONText string

// UnmarshalJSON implements json.Unmarshaler.
func (t *JSONText) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = JSONText(s)
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		*t = ""
		return nil
	}
	*t = JSONText(b)
	return nil
}

// PresenceData is the parsed channel_data of a presence subscription.
type PresenceData struct {
	// UserID is the string form of user_id (numbers keep their JSON text).
	UserID string
	// UserInfo is the raw JSON of user_info, nil when absent.
	UserInfo json.RawMessage
}

// ErrPresenceData reports channel_data or user_data without a usable id.
var ErrPresenceData = errors.New("protocol: channel_data must hold a string or number user_id")

// ParsePresenceData parses presence channel_data ({"user_id":..,"user_info":..}).
func ParsePresenceData(channelData string) (PresenceData, error) {
	return parseUser(channelData, "user_id", "user_info")
}

// ParseUserData parses sign-in user_data ({"id":..,"user_info":..,"watchlist":..}).
func ParseUserData(userData string) (PresenceData, error) {
	return parseUser(userData, "id", "user_info")
}

func parseUser(s, idField, infoField string) (PresenceData, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return PresenceData{}, fmt.Errorf("%w: %w", ErrPresenceData, err)
	}
	raw, ok := m[idField]
	if !ok || len(raw) == 0 {
		return PresenceData{}, fmt.Errorf("%w: no %s", ErrPresenceData, idField)
	}
	var id string
	switch raw[0] {
	case '"':
		if err := json.Unmarshal(raw, &id); err != nil {
			return PresenceData{}, fmt.Errorf("%w: %w", ErrPresenceData, err)
		}
	default:
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return PresenceData{}, fmt.Errorf("%w: %s is not a string or number", ErrPresenceData, idField)
		}
		id = n.String()
	}
	if id == "" {
		return PresenceData{}, fmt.Errorf("%w: empty %s", ErrPresenceData, idField)
	}
	pd := PresenceData{UserID: id}
	if info, ok := m[infoField]; ok && !bytes.Equal(info, []byte("null")) {
		pd.UserInfo = info
	}
	return pd, nil
}

// AppendEvent appends the frame {"event":e,"channel":c,"data":"<data>","user_id":u} with
// data as a JSON string. Empty channel and userID are omitted; data is always present.
func AppendEvent(dst []byte, event, channel, data, userID string) []byte {
	dst = append(dst, `{"event":`...)
	dst = AppendJSONString(dst, event)
	if channel != "" {
		dst = append(dst, `,"channel":`...)
		dst = AppendJSONString(dst, channel)
	}
	dst = append(dst, `,"data":`...)
	dst = AppendJSONString(dst, data)
	if userID != "" {
		dst = append(dst, `,"user_id":`...)
		dst = AppendJSONString(dst, userID)
	}
	return append(dst, '}')
}

// EncodeEvent returns AppendEvent(nil, ...).
func EncodeEvent(event, channel, data, userID string) []byte {
	return AppendEvent(make([]byte, 0, 48+len(event)+len(channel)+len(data)+len(data)/8), event, channel, data, userID)
}

// EncodeNoData encodes {"event":e,"channel":c} without data (pusher:cache_miss must have
// no data so pusher-js hands the callback undefined).
func EncodeNoData(event, channel string) []byte {
	b := append([]byte(`{"event":`), AppendJSONString(nil, event)...)
	if channel != "" {
		b = append(b, `,"channel":`...)
		b = AppendJSONString(b, channel)
	}
	return append(b, '}')
}

// EncodeError encodes pusher:error with data as an object {"code":N|null,"message":m}, the
// shape real Pusher sends. code 0 encodes as null (errors that do not close). channel is
// added when non-empty so pusher-js also fires the error on that channel.
func EncodeError(code int, message, channel string) []byte {
	b := []byte(`{"event":"pusher:error"`)
	if channel != "" {
		b = append(b, `,"channel":`...)
		b = AppendJSONString(b, channel)
	}
	b = append(b, `,"data":{"code":`...)
	if code == 0 {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, int64(code), 10)
	}
	b = append(b, `,"message":`...)
	b = AppendJSONString(b, message)
	return append(b, "}}"...)
}

// EncodeSubscriptionError encodes the channel-scoped pusher:subscription_error
// {"type":t,"error":msg,"status":status} (soketi's shape, fired by pusher-js on the channel).
func EncodeSubscriptionError(channel, typ, msg string, status int) []byte {
	b := []byte(`{"event":"pusher:subscription_error","channel":`)
	b = AppendJSONString(b, channel)
	b = append(b, `,"data":{"type":`...)
	b = AppendJSONString(b, typ)
	b = append(b, `,"error":`...)
	b = AppendJSONString(b, msg)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	return append(b, "}}"...)
}

// EncodeConnectionEstablished encodes the handshake frame.
func EncodeConnectionEstablished(socketID string, activityTimeoutSeconds int) []byte {
	d := make([]byte, 0, 64)
	d = append(d, `{"socket_id":`...)
	d = AppendJSONString(d, socketID)
	d = append(d, `,"activity_timeout":`...)
	d = strconv.AppendInt(d, int64(activityTimeoutSeconds), 10)
	d = append(d, '}')
	return EncodeEvent(EventConnectionEstablished, "", string(d), "")
}

// Member is one presence member for the subscription_succeeded payload.
type Member struct {
	UserID   string
	UserInfo json.RawMessage
}

// PresenceSucceededData builds {"presence":{"ids":[..],"hash":{..},"count":n}}.
func PresenceSucceededData(members []Member) string {
	b := make([]byte, 0, 64+len(members)*32)
	b = append(b, `{"presence":{"ids":[`...)
	for i, m := range members {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, m.UserID)
	}
	b = append(b, `],"hash":{`...)
	for i, m := range members {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, m.UserID)
		b = append(b, ':')
		if len(m.UserInfo) == 0 {
			b = append(b, "null"...)
		} else {
			b = append(b, m.UserInfo...)
		}
	}
	b = append(b, `},"count":`...)
	b = strconv.AppendInt(b, int64(len(members)), 10)
	b = append(b, "}}"...)
	return string(b)
}

// MemberAddedData builds {"user_id":id,"user_info":info}.
func MemberAddedData(m Member) string {
	b := append([]byte(`{"user_id":`), AppendJSONString(nil, m.UserID)...)
	if len(m.UserInfo) > 0 {
		b = append(b, `,"user_info":`...)
		b = append(b, m.UserInfo...)
	}
	return string(append(b, '}'))
}

// MemberRemovedData builds {"user_id":id}.
func MemberRemovedData(userID string) string {
	return string(append(append([]byte(`{"user_id":`), AppendJSONString(nil, userID)...), '}'))
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string literal, escaping like encoding/json but
// without HTML escaping; invalid UTF-8 becomes U+FFFD.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript eval; escape them as
		// encoding/json does.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// EventWatchlist carries online/offline changes of a signed-in user's watchlist (§3.6).
const EventWatchlist = "pusher_internal:watchlist_events"

// MaxWatchlist is how many watchlist ids Pusher keeps; more are dropped with 4302.
const MaxWatchlist = 100

// ParseWatchlist returns the watchlist ids of sign-in user_data (strings or numbers, in
// order, duplicates removed); nil when absent.
func ParseWatchlist(userData string) ([]string, error) {
	var m struct {
		Watchlist []any `json:"watchlist"`
	}
	d := json.NewDecoder(bytes.NewReader([]byte(userData)))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: watchlist: %w", ErrPresenceData, err)
	}
	out := make([]string, 0, len(m.Watchlist))
	seen := make(map[string]bool, len(m.Watchlist))
	for _, v := range m.Watchlist {
		var id string
		switch x := v.(type) {
		case string:
			id = x
		case json.Number:
			id = x.String()
		default:
			return nil, fmt.Errorf("%w: watchlist ids must be strings or numbers", ErrPresenceData)
		}
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// WatchlistData builds {"events":[{"name":"online","user_ids":[..]},{"name":"offline",..}]},
// leaving out an empty group.
func WatchlistData(online, offline []string) string {
	b := []byte(`{"events":[`)
	first := true
	for _, g := range []struct {
		name string
		ids  []string
	}{{"online", online}, {"offline", offline}} {
		if len(g.ids) == 0 {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"name":"`+g.name+`","user_ids":[`...)
		for i, id := range g.ids {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendJSONString(b, id)
		}
		b = append(b, "]}"...)
	}
	return string(append(b, "]}"...))
}
