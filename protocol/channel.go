package protocol

import (
	"errors"
	"fmt"
	"strings"
)

// ChannelKind is the authorization class of a channel, decided by its name prefix.
type ChannelKind uint8

const (
	// KindPublic channels need no auth.
	KindPublic ChannelKind = iota
	// KindPrivate channels need a socket_id:channel signature.
	KindPrivate
	// KindPresence channels need a socket_id:channel:channel_data signature and track members.
	KindPresence
	// KindPrivateEncrypted channels are private channels whose payloads are end-to-end
	// encrypted by the publisher; the server forwards data untouched.
	KindPrivateEncrypted
	// KindServerToUser is the reserved #server-to-user-{id} channel of a signed-in user.
	KindServerToUser
)

func (k ChannelKind) String() string {
	switch k {
	case KindPublic:
		return "public"
	case KindPrivate:
		return "private"
	case KindPresence:
		return "presence"
	case KindPrivateEncrypted:
		return "private-encrypted"
	case KindServerToUser:
		return "server-to-user"
	}
	return fmt.Sprintf("ChannelKind(%d)", uint8(k))
}

// NeedsAuth reports whether a subscription to this kind carries an HMAC auth token.
func (k ChannelKind) NeedsAuth() bool {
	return k == KindPrivate || k == KindPresence || k == KindPrivateEncrypted
}

// ServerToUserPrefix is the reserved prefix of per-user channels (§3.5).
const ServerToUserPrefix = "#server-to-user-"

// ServerToUserChannel returns the reserved channel name of a user.
func ServerToUserChannel(userID string) string { return ServerToUserPrefix + userID }

// Channel is a parsed channel name.
type Channel struct {
	Name string
	Kind ChannelKind
	// Cache is true for the cache- variants: the last event is replayed to new subscribers.
	Cache bool
	// UserID is set for KindServerToUser.
	UserID string
}

// IsPresence reports whether the channel tracks members.
func (c Channel) IsPresence() bool { return c.Kind == KindPresence }

// prefixes lists name prefixes, longest first, so that private-encrypted-cache- wins over
// private-encrypted- and private-.
var prefixes = []struct {
	prefix string
	kind   ChannelKind
	cache  bool
}{
	{"private-encrypted-cache-", KindPrivateEncrypted, true},
	{"private-encrypted-", KindPrivateEncrypted, false},
	{"presence-cache-", KindPresence, true},
	{"private-cache-", KindPrivate, true},
	{"presence-", KindPresence, false},
	{"private-", KindPrivate, false},
	{"cache-", KindPublic, true},
}

// Channel name errors.
var (
	ErrChannelNameEmpty   = errors.New("protocol: channel name is empty")
	ErrChannelNameTooLong = errors.New("protocol: channel name too long")
	ErrChannelNameChars   = errors.New("protocol: channel name has characters outside [A-Za-z0-9_\\-=@,.;]")
	ErrChannelReserved    = errors.New("protocol: channel name uses the reserved # prefix")
)

// DefaultMaxChannelNameLength is Pusher's documented channel name limit.
const DefaultMaxChannelNameLength = 164

// ValidChannelChar reports whether c is allowed in a channel name.
func ValidChannelChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '_', '-', '=', '@', ',', '.', ';':
		return true
	}
	return false
}

func validChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if !ValidChannelChar(s[i]) {
			return false
		}
	}
	return true
}

// ParseChannel classifies and validates a channel name. maxLen <= 0 means
// DefaultMaxChannelNameLength. The only accepted name with '#' is #server-to-user-{id}
// where id uses the channel character set.
func ParseChannel(name string, maxLen int) (Channel, error) {
	if maxLen <= 0 {
		maxLen = DefaultMaxChannelNameLength
	}
	if name == "" {
		return Channel{}, ErrChannelNameEmpty
	}
	if len(name) > maxLen {
		return Channel{}, fmt.Errorf("%w: %d > %d", ErrChannelNameTooLong, len(name), maxLen)
	}
	if name[0] == '#' {
		id, ok := strings.CutPrefix(name, ServerToUserPrefix)
		if !ok || id == "" {
			return Channel{}, fmt.Errorf("%w: %q", ErrChannelReserved, name)
		}
		if !validChars(id) {
			return Channel{}, fmt.Errorf("%w: %q", ErrChannelNameChars, name)
		}
		return Channel{Name: name, Kind: KindServerToUser, UserID: id}, nil
	}
	if !validChars(name) {
		return Channel{}, fmt.Errorf("%w: %q", ErrChannelNameChars, name)
	}
	for _, p := range prefixes {
		if strings.HasPrefix(name, p.prefix) {
			return Channel{Name: name, Kind: p.kind, Cache: p.cache}, nil
		}
	}
	return Channel{Name: name, Kind: KindPublic}, nil
}

// KindOf classifies a name by prefix without validating it.
func KindOf(name string) (kind ChannelKind, cache bool) {
	if strings.HasPrefix(name, ServerToUserPrefix) {
		return KindServerToUser, false
	}
	for _, p := range prefixes {
		if strings.HasPrefix(name, p.prefix) {
			return p.kind, p.cache
		}
	}
	return KindPublic, false
}
