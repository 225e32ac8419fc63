package edge

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/milequest/pushercm/lifecycle"
	"github.com/milequest/pushercm/protocol"
)

// hub is the edge's membership state: the sockets, the occupied channels,
// the signed-in users, the watchlists, the cache channels' last events, and
// every conn's subscriptions and sign-in, all under mu. Nothing done under mu
// blocks: socket writes are queued (event loop), and the cluster's Redis
// calls and the webhook and lifecycle dispatch run outside it, between two of
// the hub's critical sections. Methods named ...Locked are called with mu
// held; lock takes it for a change of membership (see outbox).
type hub struct {
	mu       sync.RWMutex
	conns    map[string]*conn
	channels map[string]*channel
	users    map[string]map[*conn]struct{}
	watching map[string]map[*conn]struct{} // user id -> sockets with it on their watchlist
	cache    *cacheStore
	out      outbox
	// fanner is the flusher that fans the outbox out, set once the flushers
	// run; nil means publishes queue on each socket themselves.
	fanner atomic.Pointer[flusher]
	// subscriptions counts the sockets' subscriptions, for Stats.
	subscriptions atomic.Int64

	// Set by init, read-only after.
	limits         protocol.Limits
	maxSubsPerUser int  // Config.MaxSubscriptionsPerUser
	clustered      bool // a node of a cluster: the cluster decides presence and vacated
	stamp          bool // outbox entries carry their post time (a WriteObserver)
	now            func() time.Time
}

func (h *hub) init(cfg Config, clustered, stamp bool, now func() time.Time) {
	h.conns = make(map[string]*conn)
	h.channels = make(map[string]*channel)
	h.users = make(map[string]map[*conn]struct{})
	h.watching = make(map[string]map[*conn]struct{})
	h.cache = newCacheStore(cfg.MaxCacheChannels)
	h.limits = cfg.Limits
	h.maxSubsPerUser = cfg.MaxSubscriptionsPerUser
	h.clustered = clustered
	h.stamp = stamp
	h.now = now
}

// channel is an occupied channel. It exists while it has subscribers.
type channel struct {
	info    protocol.Channel
	subs    map[*conn]struct{}
	members map[string]*presenceMember // presence only, by user id
}

type presenceMember struct {
	info  []byte
	conns int
}

type cachedEvent struct {
	event, data string
	expires     time.Time
}

// subError is a subscription refusal with the pusher:subscription_error fields.
type subError struct {
	base   error
	typ    string
	msg    string
	status int
}

func (e *subError) Error() string { return e.msg }
func (e *subError) Unwrap() error { return e.base }

// pending collects lifecycle events and webhooks produced under hub.mu, dispatched
// after it is released.
type pending struct {
	evs   []lifecycle.Event
	hooks []protocol.WebhookEvent
	// leaves are reported to the cluster (when there is one) afterwards.
	leaves []clusterOp
}

func (s *Server) flush(p *pending) {
	if len(p.leaves) > 0 {
		s.clusterLeaves(p.leaves)
		p.leaves = nil
	}
	for _, e := range p.evs {
		s.emit(e)
	}
	if w := s.opts.webhooks; w != nil {
		for _, h := range p.hooks {
			w.Notify(h)
			s.emitWebhook(h)
		}
	}
}

// emitWebhook tells message watchers that a webhook was queued.
func (s *Server) emitWebhook(h protocol.WebhookEvent) {
	if s.watchingMessages() {
		s.emit(lifecycle.Event{Type: lifecycle.Webhook, Time: s.opts.now(), Name: h.Name, Channel: h.Channel, SocketID: h.SocketID, UserID: h.UserID})
	}
}

// subscribe joins c to ch; member is the presence identity (nil for other kinds). It
// sends subscription_succeeded, member_added to the others, and the cache replay or
// miss. Joining twice is idempotent and answers success again.
//
// clientEvents is what the subscription's auth grants; false records the channel as
// subscribe-only, so the socket's client events there are refused. Joining again
// replaces the grant with the newer one.
func (s *Server) subscribe(c *conn, ch protocol.Channel, member *protocol.Member, clientEvents bool) error {
	if s.opts.cluster != nil && ch.Kind != protocol.KindServerToUser {
		return s.subscribeCluster(c, ch, member, clientEvents)
	}
	now := s.opts.now()
	var p pending
	s.hub.lock()
	if c.removed {
		s.hub.mu.Unlock()
		return fmt.Errorf("%w: socket %s is closing", ErrNotFound, c.id)
	}
	chn := s.hub.channels[ch.Name]
	if _, again := c.subs[ch.Name]; again {
		c.setClientEventsLocked(ch.Name, clientEvents)
		c.sendRaw(wsFrame(opText, s.hub.succeededLocked(chn)))
		s.hub.mu.Unlock()
		return nil
	}
	if !protocol.Within(len(c.subs)+1, s.cfg.Limits.MaxSubscriptionsPerConnection) {
		s.hub.mu.Unlock()
		return &subError{ErrLimit, protocol.SubErrLimitReached, "Too many subscriptions on this connection", protocol.CodeOverCapacity}
	}
	if max := s.cfg.MaxSubscriptionsPerUser; max > 0 && c.userID != "" && s.hub.userSubscriptionsLocked(c.userID)+1 > max {
		s.hub.mu.Unlock()
		return &subError{ErrLimit, protocol.SubErrLimitReached, "Too many subscriptions for this user", protocol.CodeOverCapacity}
	}
	newUser := false
	if member != nil {
		var known bool
		if chn != nil {
			_, known = chn.members[member.UserID]
		}
		if !known {
			n := 1
			if chn != nil {
				n += len(chn.members)
			}
			if !protocol.Within(n, s.cfg.Limits.MaxPresenceMembers) {
				s.hub.mu.Unlock()
				return &subError{ErrLimit, protocol.SubErrLimitReached, "Presence channel is full", protocol.CodeOverCapacity}
			}
			newUser = true
		}
	}
	occupied := chn == nil
	if occupied {
		chn = &channel{info: ch, subs: make(map[*conn]struct{}, 1)}
		if member != nil {
			chn.members = make(map[string]*presenceMember, 1)
		}
		s.hub.channels[ch.Name] = chn
		p.evs = append(p.evs, lifecycle.Event{Type: lifecycle.ChannelOccupied, Time: now, Channel: ch.Name})
		p.hooks = append(p.hooks, protocol.WebhookEvent{Name: protocol.WebhookChannelOccupied, Channel: ch.Name})
	}
	if newUser {
		// Tell the others before the new member is in the subscriber set, encoded once.
		frame := eventFrame(protocol.EventMemberAdded, ch.Name, protocol.MemberAddedData(*member), "")
		for sub := range chn.subs {
			sub.sendRaw(frame)
		}
		chn.members[member.UserID] = &presenceMember{info: member.UserInfo}
		p.evs = append(p.evs, lifecycle.Event{Type: lifecycle.MemberAdded, Time: now, SocketID: c.id, UserID: member.UserID, Channel: ch.Name, UserInfo: member.UserInfo})
		p.hooks = append(p.hooks, protocol.WebhookEvent{Name: protocol.WebhookMemberAdded, Channel: ch.Name, UserID: member.UserID})
	}
	uid := ""
	if member != nil {
		uid = member.UserID
		chn.members[uid].conns++
	}
	chn.subs[c] = struct{}{}
	if c.subs == nil {
		c.subs = make(map[string]string, 1)
	}
	c.subs[ch.Name] = uid
	c.setClientEventsLocked(ch.Name, clientEvents)
	s.hub.subscriptions.Add(1)
	c.sendRaw(wsFrame(opText, s.hub.succeededLocked(chn)))
	if ch.Cache {
		if e, ok := s.hub.cache.get(ch.Name); ok && now.Before(e.expires) {
			c.sendRaw(eventFrame(e.event, ch.Name, e.data, ""))
		} else {
			c.sendRaw(wsFrame(opText, protocol.EncodeNoData(protocol.EventCacheMiss, ch.Name)))
			p.hooks = append(p.hooks, protocol.WebhookEvent{Name: protocol.WebhookCacheMiss, Channel: ch.Name})
		}
	}
	s.hub.mu.Unlock()
	p.evs = append(p.evs, lifecycle.Event{Type: lifecycle.Subscribed, Time: now, SocketID: c.id, UserID: uid, Channel: ch.Name})
	s.flush(&p)
	return nil
}

// succeededLocked encodes subscription_succeeded for chn (presence data for presence).
func (h *hub) succeededLocked(chn *channel) []byte {
	data := "{}"
	if chn.info.Kind == protocol.KindPresence {
		ms := make([]protocol.Member, 0, len(chn.members))
		for id, m := range chn.members {
			ms = append(ms, protocol.Member{UserID: id, UserInfo: m.info})
		}
		sort.Slice(ms, func(i, j int) bool { return ms[i].UserID < ms[j].UserID })
		data = protocol.PresenceSucceededData(ms)
	}
	return protocol.EncodeEvent(protocol.EventSubscriptionSucceeded, chn.info.Name, data, "")
}

// unsubscribe removes c from channel name; unknown channels are ignored (Pusher sends
// no reply to pusher:unsubscribe).
func (s *Server) unsubscribe(c *conn, name string) bool {
	var p pending
	s.hub.lock()
	uid, ok := c.subs[name]
	if ok {
		s.hub.leaveLocked(c, name, uid, s.opts.now(), &p)
	}
	s.hub.mu.Unlock()
	s.flush(&p)
	return ok
}

// setClientEventsLocked records whether c's subscription to name may send client
// events. hub.mu must be held for writing.
func (c *conn) setClientEventsLocked(name string, allowed bool) {
	if allowed {
		delete(c.subscribeOnly, name)
		return
	}
	if c.subscribeOnly == nil {
		c.subscribeOnly = make(map[string]struct{}, 1)
	}
	c.subscribeOnly[name] = struct{}{}
}

func (h *hub) leaveLocked(c *conn, name, uid string, now time.Time, p *pending) {
	delete(c.subs, name)
	delete(c.subscribeOnly, name)
	chn := h.channels[name]
	if chn == nil {
		return
	}
	delete(chn.subs, c)
	h.subscriptions.Add(-1)
	p.evs = append(p.evs, lifecycle.Event{Type: lifecycle.Unsubscribed, Time: now, SocketID: c.id, UserID: uid, Channel: name})
	if h.clustered && chn.info.Kind != protocol.KindServerToUser {
		// The cluster decides member_removed and vacated (clusterLeave).
		op := clusterOp{channel: name, uid: uid, socketID: c.id}
		if _, ok := c.counted[name]; ok {
			delete(c.counted, name)
			op.counted = c.userID
		}
		p.leaves = append(p.leaves, op)
		if m := chn.members[uid]; m != nil {
			if m.conns--; m.conns <= 0 {
				delete(chn.members, uid)
			}
		}
		if len(chn.subs) == 0 {
			delete(h.channels, name)
		}
		return
	}
	if m := chn.members[uid]; m != nil {
		m.conns--
		if m.conns <= 0 {
			delete(chn.members, uid)
			frame := eventFrame(protocol.EventMemberRemoved, name, protocol.MemberRemovedData(uid), "")
			for sub := range chn.subs {
				sub.sendRaw(frame)
			}
			p.evs = append(p.evs, lifecycle.Event{Type: lifecycle.MemberRemoved, Time: now, SocketID: c.id, UserID: uid, Channel: name})
			p.hooks = append(p.hooks, protocol.WebhookEvent{Name: protocol.WebhookMemberRemoved, Channel: name, UserID: uid})
		}
	}
	if len(chn.subs) == 0 {
		delete(h.channels, name)
		p.evs = append(p.evs, lifecycle.Event{Type: lifecycle.ChannelVacated, Time: now, Channel: name})
		p.hooks = append(p.hooks, protocol.WebhookEvent{Name: protocol.WebhookChannelVacated, Channel: name})
	}
}

// removeConn takes c out of the hub (implicit unsubscribe of every channel). Idempotent.
func (s *Server) removeConn(c *conn, code int, reason string) {
	var p pending
	s.hub.lock()
	removed := s.hub.removeLocked(c, &p)
	s.hub.mu.Unlock()
	if removed {
		s.afterRemove(c, code, reason, &p)
	}
}

// removeLocked is removeConn's part under the hub lock (taken with lock); it
// reports false when c was already removed. afterRemove finishes it unlocked.
func (h *hub) removeLocked(c *conn, p *pending) bool {
	if c.removed {
		return false
	}
	now := h.now()
	c.removed = true
	delete(h.conns, c.id)
	names := make([]string, 0, len(c.subs))
	for name := range c.subs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		h.leaveLocked(c, name, c.subs[name], now, p)
	}
	if c.userID != "" {
		if set := h.users[c.userID]; set != nil {
			delete(set, c)
			if len(set) == 0 {
				delete(h.users, c.userID)
				if !h.clustered {
					h.notifyWatchersLocked(c.userID, false)
				}
			}
		}
		if h.clustered {
			p.leaves = append(p.leaves, clusterOp{channel: protocol.ServerToUserChannel(c.userID), uid: c.userID, socketID: c.id, user: true})
		}
	}
	h.setWatchlistLocked(c, nil)
	return true
}

// afterRemove releases c's slot and reports its removal (removeLocked's pending
// events, then Disconnected).
func (s *Server) afterRemove(c *conn, code int, reason string, p *pending) {
	s.release(c.clientKey)
	p.evs = append(p.evs, lifecycle.Event{Type: lifecycle.Disconnected, Time: s.opts.now(), SocketID: c.id, UserID: c.userID, Code: code, Reason: reason})
	s.flush(p)
}

// Message is one publish: Event with Data to every subscriber of Channels except the
// socket ExcludeSocketID. Channels named #server-to-user-{id} go to that user's
// signed-in connections.
type Message struct {
	Channels        []string
	Event           string
	Data            string
	ExcludeSocketID string
}

func (s *Server) validateEvent(event, data string) error {
	if event == "" {
		return fmt.Errorf("%w: event name is empty", ErrInvalid)
	}
	if len(event) > s.cfg.Limits.MaxEventNameLength {
		return fmt.Errorf("%w: event name longer than %d", ErrLimit, s.cfg.Limits.MaxEventNameLength)
	}
	if len(data) > s.cfg.Limits.MaxPayloadBytes {
		return fmt.Errorf("%w: data is %d bytes, over %d", ErrLimit, len(data), s.cfg.Limits.MaxPayloadBytes)
	}
	return nil
}

// Publish sends m to every subscriber of its channels and returns how many sockets
// it is queued for: the subscribers at the time of the call, less the excluded
// socket (one closed before its write, as a slow consumer or by its client, is still
// counted). The frame is encoded once per channel; cache channels remember it.
func (s *Server) Publish(ctx context.Context, m Message) (delivered int, err error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.draining.Load() {
		return 0, ErrClosed
	}
	if err := s.validateEvent(m.Event, m.Data); err != nil {
		return 0, err
	}
	if len(m.Channels) == 0 {
		return 0, fmt.Errorf("%w: no channels", ErrInvalid)
	}
	if len(m.Channels) > s.cfg.Limits.MaxChannelsPerTrigger {
		return 0, fmt.Errorf("%w: %d channels, over %d", ErrLimit, len(m.Channels), s.cfg.Limits.MaxChannelsPerTrigger)
	}
	chans := make([]protocol.Channel, len(m.Channels))
	for i, name := range m.Channels {
		ch, err := protocol.ParseChannel(name, s.cfg.Limits.MaxChannelNameLength)
		if err != nil {
			return 0, fmt.Errorf("%w: %s", ErrInvalid, err.Error())
		}
		chans[i] = ch
	}
	if s.opts.cluster != nil {
		delivered, err = s.publishCluster(ctx, chans, m)
		if err != nil {
			return delivered, err
		}
		s.st.published.Add(1)
		s.publishedCluster(delivered, start)
		return delivered, nil
	}
	expires := s.opts.now().Add(s.cfg.CacheTTL)
	for _, ch := range chans {
		if ch.Kind == protocol.KindServerToUser {
			delivered += s.sendToUser(ch.UserID, m.Event, m.Data, m.ExcludeSocketID)
			continue
		}
		frame := eventFrame(m.Event, ch.Name, m.Data, "")
		if ch.Cache {
			s.hub.mu.Lock()
			s.hub.cache.put(ch.Name, cachedEvent{event: m.Event, data: m.Data, expires: expires})
			s.hub.mu.Unlock()
		}
		n := 0
		s.hub.mu.RLock()
		if chn := s.hub.channels[ch.Name]; chn != nil {
			n = s.hub.postLocked(chn, "", frame, m.ExcludeSocketID)
		}
		s.hub.mu.RUnlock()
		s.st.messagesOut.Add(uint64(n))
		delivered += n
		if s.watchingMessages() {
			s.emit(lifecycle.Event{Type: lifecycle.Published, Time: s.opts.now(), Channel: ch.Name, Name: m.Event, Delivered: n})
		}
	}
	s.st.published.Add(1)
	if mt := s.opts.metrics; mt != nil {
		mt.Published(delivered, time.Since(start))
	}
	return delivered, nil
}

// SendToUser sends event to every connection signed in as userID, on the channel
// #server-to-user-{userID}, whether or not it subscribed to it (as Pusher does), and
// returns how many it is queued for (counted as Publish counts).
func (s *Server) SendToUser(ctx context.Context, userID, event, data string) (delivered int, err error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.draining.Load() {
		return 0, ErrClosed
	}
	if userID == "" || len(userID) > s.cfg.Limits.MaxUserIDLength {
		return 0, fmt.Errorf("%w: user id must be 1 to %d characters", ErrInvalid, s.cfg.Limits.MaxUserIDLength)
	}
	if err := s.validateEvent(event, data); err != nil {
		return 0, err
	}
	if s.opts.cluster != nil {
		ch := protocol.Channel{Name: protocol.ServerToUserChannel(userID), Kind: protocol.KindServerToUser, UserID: userID}
		if delivered, err = s.publishCluster(ctx, []protocol.Channel{ch}, Message{Event: event, Data: data}); err != nil {
			return delivered, err
		}
		s.st.published.Add(1)
		s.publishedCluster(delivered, start)
		return delivered, nil
	}
	delivered = s.sendToUser(userID, event, data, "")
	s.st.published.Add(1)
	if mt := s.opts.metrics; mt != nil {
		mt.Published(delivered, time.Since(start))
	}
	return delivered, nil
}

func (s *Server) sendToUser(userID, event, data, exclude string) int {
	frame := eventFrame(event, protocol.ServerToUserChannel(userID), data, "")
	s.hub.mu.RLock()
	n := s.hub.postLocked(nil, userID, frame, exclude)
	s.hub.mu.RUnlock()
	s.st.messagesOut.Add(uint64(n))
	if s.watchingMessages() {
		s.emit(lifecycle.Event{Type: lifecycle.Published, Time: s.opts.now(), Channel: protocol.ServerToUserChannel(userID), UserID: userID, Name: event, Delivered: n})
	}
	return n
}

// setWatchlistLocked replaces c's watchlist and sends the current status of the new one
// (pusher_internal:watchlist_events); in a cluster the caller sends it
// (sendWatchlist), after the lock.
func (h *hub) setWatchlistLocked(c *conn, ids []string) {
	for _, id := range c.watchlist {
		if set := h.watching[id]; set != nil {
			delete(set, c)
			if len(set) == 0 {
				delete(h.watching, id)
			}
		}
	}
	c.watchlist = ids
	if len(ids) == 0 {
		return
	}
	if h.clustered {
		for _, id := range ids {
			set := h.watching[id]
			if set == nil {
				set = make(map[*conn]struct{}, 1)
				h.watching[id] = set
			}
			set[c] = struct{}{}
		}
		return
	}
	var online, offline []string
	for _, id := range ids {
		set := h.watching[id]
		if set == nil {
			set = make(map[*conn]struct{}, 1)
			h.watching[id] = set
		}
		set[c] = struct{}{}
		if len(h.users[id]) > 0 {
			online = append(online, id)
		} else {
			offline = append(offline, id)
		}
	}
	c.sendRaw(eventFrame(protocol.EventWatchlist, "", protocol.WatchlistData(online, offline), ""))
}

// notifyWatchersLocked tells the sockets watching userID that it came online (first
// signed-in socket) or went offline (last one left).
func (h *hub) notifyWatchersLocked(userID string, online bool) {
	set := h.watching[userID]
	if len(set) == 0 {
		return
	}
	ids := []string{userID}
	var data string
	if online {
		data = protocol.WatchlistData(ids, nil)
	} else {
		data = protocol.WatchlistData(nil, ids)
	}
	frame := eventFrame(protocol.EventWatchlist, "", data, "")
	for c := range set {
		c.sendRaw(frame)
	}
}

// userSubscriptionsLocked counts the subscriptions of every socket signed in as uid.
// The caller holds h.mu. A user has few sockets, so this is a short walk.
func (h *hub) userSubscriptionsLocked(uid string) int {
	n := 0
	for c := range h.users[uid] {
		n += len(c.subs)
	}
	return n
}
