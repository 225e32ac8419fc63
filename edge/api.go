package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/milequest/pushercm/protocol"
)

// ConnectionInfo describes one socket.
type ConnectionInfo struct {
	SocketID string
	// UserID is the signed-in user (pusher:signin), empty otherwise.
	UserID       string
	RemoteAddr   string
	UserAgent    string
	ConnectedAt  time.Time
	LastActivity time.Time
	// Channels are the subscribed channels, sorted.
	Channels []string
	// MessagesIn and MessagesOut count frames received and written.
	MessagesIn, MessagesOut uint64
	// QueuedBytes were handed to the event loop and not yet accepted by the kernel.
	QueuedBytes int64
}

// ConnectionFilter selects connections. Empty fields match everything.
type ConnectionFilter struct {
	// UserID matches the signed-in user or a presence user id of the socket.
	UserID string
	// Channel matches sockets subscribed to it.
	Channel string
	// After is a cursor: only socket ids sorting after it are returned.
	After string
	// Limit bounds the page; 0 means 100, at most 1000.
	Limit int
}

// Connections lists sockets in socket id order. next is the cursor of the following
// page, empty on the last one.
func (s *Server) Connections(f ConnectionFilter) (list []ConnectionInfo, next string) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	return s.hub.connections(f, limit)
}

func (c *conn) hasUserLocked(uid string) bool {
	if c.userID == uid {
		return true
	}
	for _, u := range c.subs {
		if u == uid {
			return true
		}
	}
	return false
}

func (c *conn) infoLocked() ConnectionInfo {
	chs := make([]string, 0, len(c.subs))
	for name := range c.subs {
		chs = append(chs, name)
	}
	sort.Strings(chs)
	return ConnectionInfo{
		SocketID:     c.id,
		UserID:       c.userID,
		RemoteAddr:   c.remoteAddr,
		UserAgent:    c.userAgent,
		ConnectedAt:  time.Unix(0, c.connectedAt),
		LastActivity: time.Unix(0, c.lastActivity.Load()),
		Channels:     chs,
		MessagesIn:   c.msgsIn.Load(),
		MessagesOut:  c.msgsOut.Load(),
		QueuedBytes:  max(c.queued.Load(), 0),
	}
}

// Connection describes one socket, or ErrNotFound.
func (s *Server) Connection(socketID string) (ConnectionInfo, error) {
	info, ok := s.hub.connectionInfo(socketID)
	if !ok {
		return ConnectionInfo{}, fmt.Errorf("%w: socket %q", ErrNotFound, socketID)
	}
	return info, nil
}

func (s *Server) conn(socketID string) (*conn, error) {
	c := s.hub.conn(socketID)
	if c == nil {
		return nil, fmt.Errorf("%w: socket %q", ErrNotFound, socketID)
	}
	return c, nil
}

// Disconnect closes a socket with a close code: 1000, or a Pusher code 4000-4999 (a
// pusher:error with the same code and reason is sent first). ErrNotFound, ErrInvalid.
func (s *Server) Disconnect(socketID string, code int, reason string) error {
	if code == 0 {
		code = 1000
	}
	if code != 1000 && (code < 4000 || code > 4999) {
		return fmt.Errorf("%w: close code %d, want 1000 or 4000-4999", ErrInvalid, code)
	}
	c, err := s.conn(socketID)
	if err != nil {
		return err
	}
	if code >= 4000 {
		c.closeWithError(code, reason)
	} else {
		c.closeWith(code, reason, false)
	}
	return nil
}

// TerminateUser closes every connection signed in as userID with 4009 and returns how
// many were closed. Presence-only users are not affected (as Pusher). In a cluster
// it reaches the user's sockets on every node, and the count is theirs when the
// request was made; ErrUnavailable when the cluster did not take it.
func (s *Server) TerminateUser(ctx context.Context, userID string) (closed int, err error) {
	if cl := s.opts.cluster; cl != nil {
		name := protocol.ServerToUserChannel(userID)
		n, err := cl.Publish(ctx, name, envelope(opTerminate, "", nil), 0)
		if err != nil {
			return 0, fmt.Errorf("%w: terminate %s: %w", ErrUnavailable, userID, err)
		}
		return int(n.Subscriptions), nil
	}
	return s.terminateLocal(userID), nil
}

// Subscribe joins a socket to a channel on the server's authority (no auth token). The
// client receives subscription_succeeded and then the channel's events. Presence
// channels use the socket's signed-in user, or the socket id as user id.
func (s *Server) Subscribe(socketID, channel string) error {
	ch, err := protocol.ParseChannel(channel, s.cfg.Limits.MaxChannelNameLength)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrInvalid, err.Error())
	}
	c, err := s.conn(socketID)
	if err != nil {
		return err
	}
	var member *protocol.Member
	uid, info := s.hub.user(c)
	switch ch.Kind {
	case protocol.KindPresence:
		if uid == "" {
			uid = c.id
		}
		member = &protocol.Member{UserID: uid, UserInfo: info}
	case protocol.KindServerToUser:
		if uid != ch.UserID {
			return fmt.Errorf("%w: socket %s is not signed in as %q", ErrInvalid, socketID, ch.UserID)
		}
	}
	// A server-side subscription is the service's decision and carries no
	// signed grant: it may send client events (when they are enabled).
	if err := s.subscribe(c, ch, member, true); err != nil {
		return err
	}
	if ch.Kind.NeedsAuth() {
		c.authorized.Store(true)
	}
	return nil
}

// Unsubscribe removes a socket from a channel. ErrNotFound when either is unknown.
func (s *Server) Unsubscribe(socketID, channel string) error {
	c, err := s.conn(socketID)
	if err != nil {
		return err
	}
	if !s.unsubscribe(c, channel) {
		return fmt.Errorf("%w: socket %s is not subscribed to %q", ErrNotFound, socketID, channel)
	}
	return nil
}

// CachedEvent is the last event a cache channel keeps.
type CachedEvent struct {
	Event     string
	Data      string
	ExpiresAt time.Time
}

// ChannelInfo describes a channel.
type ChannelInfo struct {
	Name     string
	Occupied bool
	// SubscriptionCount counts sockets; UserCount distinct presence users (0 otherwise).
	SubscriptionCount, UserCount int
	// Cache is the cached event of a cache channel, nil when empty or expired.
	Cache *CachedEvent
}

func (h *hub) channelInfoLocked(name string, chn *channel, now time.Time) ChannelInfo {
	ci := ChannelInfo{Name: name}
	if chn != nil {
		ci.Occupied = true
		ci.SubscriptionCount = len(chn.subs)
		ci.UserCount = len(chn.members)
	}
	if e, ok := h.cache.get(name); ok && now.Before(e.expires) {
		ci.Cache = &CachedEvent{Event: e.event, Data: e.data, ExpiresAt: e.expires}
	}
	return ci
}

// Channels lists occupied channels whose name starts with prefix, sorted by name
// (in a cluster, the cluster's; ErrUnavailable without Redis).
func (s *Server) Channels(ctx context.Context, prefix string) ([]ChannelInfo, error) {
	now := s.opts.now()
	if cl := s.opts.cluster; cl != nil {
		list, err := cl.Channels(ctx, prefix)
		if err != nil {
			return nil, fmt.Errorf("%w: channels: %w", ErrUnavailable, err)
		}
		out := make([]ChannelInfo, 0, len(list))
		for _, cc := range list {
			if !strings.HasPrefix(cc.Name, protocol.ServerToUserPrefix) && cc.Name != controlChannel {
				out = append(out, s.clusterChannelInfo(ctx, cc, now))
			}
		}
		return out, nil
	}
	return s.hub.channelInfos(prefix, now), nil
}

// Channel describes one channel. An unoccupied channel with a valid name is returned
// with Occupied false (and its cache, if any); an invalid name is ErrInvalid.
func (s *Server) Channel(ctx context.Context, name string) (ChannelInfo, error) {
	if _, err := protocol.ParseChannel(name, s.cfg.Limits.MaxChannelNameLength); err != nil {
		return ChannelInfo{}, fmt.Errorf("%w: %s", ErrInvalid, err.Error())
	}
	now := s.opts.now()
	if cl := s.opts.cluster; cl != nil {
		counts, err := cl.Counts(ctx, []string{name})
		if err != nil || len(counts) != 1 {
			return ChannelInfo{}, fmt.Errorf("%w: channel %s: %w", ErrUnavailable, name, err)
		}
		counts[0].Name = name
		return s.clusterChannelInfo(ctx, counts[0], now), nil
	}
	return s.hub.channelInfo(name, now), nil
}

// Member is one distinct user of a presence channel.
type Member struct {
	UserID   string
	UserInfo json.RawMessage
}

// PresenceMembers lists the distinct users of a presence channel sorted by user id;
// empty when unoccupied. ErrInvalid for non-presence channels.
func (s *Server) PresenceMembers(ctx context.Context, channel string) ([]Member, error) {
	ch, err := protocol.ParseChannel(channel, s.cfg.Limits.MaxChannelNameLength)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, err.Error())
	}
	if ch.Kind != protocol.KindPresence {
		return nil, fmt.Errorf("%w: %q is not a presence channel", ErrInvalid, channel)
	}
	if cl := s.opts.cluster; cl != nil {
		ms, err := cl.Members(ctx, channel)
		if err != nil {
			return nil, fmt.Errorf("%w: members of %s: %w", ErrUnavailable, channel, err)
		}
		out := make([]Member, len(ms))
		for i, m := range ms {
			out[i] = Member{UserID: m.UserID, UserInfo: json.RawMessage(m.UserInfo)}
		}
		return out, nil
	}
	return s.hub.members(channel), nil
}
