package edge

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
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
// the hub's critical sections. Each method that is not named ...Locked
// takes mu once and releases it with defer, and outside tests nothing but
// the hub's methods touches mu; the ...Locked ones are their parts, called with mu
// held. lock takes it for a change of membership (see outbox).
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
	// jam is the congested channels (see Congestion).
	jam jam

	// Set by init, read-only after.
	limits         protocol.Limits
	maxSubsPerUser int  // Config.MaxSubscriptionsPerUser
	clustered      bool // a node of a cluster: the cluster decides presence and vacated
	stamp          bool // outbox entries carry their post time (a WriteObserver)
	now            func() time.Time
	// lagBytes is the outbound queue past which a socket lags (half of
	// Config.WriteQueueBytes); congestedPercent is Config.CongestedPercent,
	// and holding is false when publishes are never held.
	lagBytes         int64
	congestedPercent int
	holding          bool
}

// init makes the hub empty, for a server of cfg.
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
	h.lagBytes = int64(cfg.WriteQueueBytes / 2)
	h.congestedPercent = cfg.CongestedPercent
	h.holding = cfg.PublishHoldMax > 0
	h.jam.chans = make(map[*channel]struct{})
	h.jam.wake = make(chan struct{}, 1)
}

// channel is an occupied channel. It exists while it has subscribers.
type channel struct {
	info    protocol.Channel
	subs    map[*conn]struct{}
	members map[string]*presenceMember // presence only, by user id
	// cong is the channel's congested spell, nil when it is not congested;
	// posted counts the bytes of its events in the outbox, not yet fanned
	// out (see Congestion).
	cong   atomic.Pointer[congestion]
	posted atomic.Int64
}

type presenceMember struct {
	info  []byte
	conns int
}

type cachedEvent struct {
	event, data string
	expires     time.Time
}

// join is subscribe's part in the hub on a single node (the cluster's is
// joinCluster). joined is false when c was in ch already: success is
// answered again and nothing is reported.
func (h *hub) join(c *conn, ch protocol.Channel, member *protocol.Member, clientEvents bool, now time.Time, p *pending) (joined bool, err error) {
	h.lock()
	defer h.mu.Unlock()
	if c.removed {
		return false, fmt.Errorf("%w: socket %s is closing", ErrNotFound, c.id)
	}
	chn := h.channels[ch.Name]
	if _, again := c.subs[ch.Name]; again {
		c.setClientEventsLocked(ch.Name, clientEvents)
		c.sendRaw(wsFrame(opText, h.succeededLocked(chn)))
		return false, nil
	}
	if !protocol.Within(len(c.subs)+1, h.limits.MaxSubscriptionsPerConnection) {
		return false, &subError{ErrLimit, protocol.SubErrLimitReached, "Too many subscriptions on this connection", protocol.CodeOverCapacity}
	}
	if max := h.maxSubsPerUser; max > 0 && c.userID != "" && h.userSubscriptionsLocked(c.userID)+1 > max {
		return false, &subError{ErrLimit, protocol.SubErrLimitReached, "Too many subscriptions for this user", protocol.CodeOverCapacity}
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
			if !protocol.Within(n, h.limits.MaxPresenceMembers) {
				return false, &subError{ErrLimit, protocol.SubErrLimitReached, "Presence channel is full", protocol.CodeOverCapacity}
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
		h.channels[ch.Name] = chn
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
	h.subscriptions.Add(1)
	c.sendRaw(wsFrame(opText, h.succeededLocked(chn)))
	if ch.Cache {
		if e, ok := h.cache.get(ch.Name); ok && now.Before(e.expires) {
			c.sendRaw(eventFrame(e.event, ch.Name, e.data, ""))
		} else {
			c.sendRaw(wsFrame(opText, protocol.EncodeNoData(protocol.EventCacheMiss, ch.Name)))
			p.hooks = append(p.hooks, protocol.WebhookEvent{Name: protocol.WebhookCacheMiss, Channel: ch.Name})
		}
	}
	return true, nil
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

// leave takes c out of channel name, if it is in it.
func (h *hub) leave(c *conn, name string, p *pending) bool {
	h.lock()
	defer h.mu.Unlock()
	uid, ok := c.subs[name]
	if ok {
		h.leaveLocked(c, name, uid, h.now(), p)
	}
	return ok
}

// signedOut says whether c is open and not signed in.
func (h *hub) signedOut(c *conn) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return c.userID == "" && !c.removed
}

// signin is handleSignin's part in the hub: c is signed in as userID and
// sent success, under the lock so that it precedes any watchlist event;
// with setWatchlist, wl (at most protocol.MaxWatchlist of it) becomes its
// watchlist, returned as watch. ok is false when c is closed, was counted
// in the cluster (counted) and signed in twice at once, or is signed in as
// another user (conflict: the caller tells the client).
func (h *hub) signin(c *conn, userID string, userInfo json.RawMessage, success []byte, wl []string, setWatchlist, counted bool) (watch []string, ok, conflict bool) {
	h.lock()
	defer h.mu.Unlock()
	if c.removed || (counted && c.userID != "") {
		return nil, false, !c.removed && c.userID != userID
	}
	if c.userID != "" && c.userID != userID {
		return nil, false, true
	}
	c.sendRaw(success)
	if c.userID == "" {
		c.userID = userID
		set := h.users[userID]
		if set == nil {
			set = make(map[*conn]struct{}, 1)
			h.users[userID] = set
			if !h.clustered {
				h.notifyWatchersLocked(userID, true)
			}
		}
		set[c] = struct{}{}
	}
	c.userInfo = userInfo
	if setWatchlist {
		if len(wl) > protocol.MaxWatchlist {
			wl = wl[:protocol.MaxWatchlist]
			c.sendError(protocol.CodeWatchlistLimit, "Watchlist limit exceeded: only the first 100 ids are watched", "")
		}
		h.setWatchlistLocked(c, wl)
		watch = wl
	}
	return watch, true, false
}

// subscriptionState is what subscribeCluster checks before its cluster
// calls: whether c is closing or in channel name already, its number of
// subscriptions and, with a per-user limit, its user's.
func (h *hub) subscriptionState(c *conn, name string) (removed, again bool, nsubs, userSubs int, uid string) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	_, again = c.subs[name]
	if h.maxSubsPerUser > 0 && c.userID != "" {
		userSubs = h.userSubscriptionsLocked(c.userID)
	}
	return c.removed, again, len(c.subs), userSubs, c.userID
}

// setClientEvents is setClientEventsLocked, for a subscription made again.
func (h *hub) setClientEvents(c *conn, name string, allowed bool) {
	h.lock()
	defer h.mu.Unlock()
	c.setClientEventsLocked(name, allowed)
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

// remove is removeConn's part in the hub: see removeLocked.
func (h *hub) remove(c *conn, p *pending) bool {
	h.lock()
	defer h.mu.Unlock()
	return h.removeLocked(c, p)
}

// removeClosing marks c closing and takes it out of the hub, unless it was
// closing already (closed false). removed is removeLocked's answer.
func (h *hub) removeClosing(c *conn, p *pending) (closed, removed bool) {
	h.lock()
	defer h.mu.Unlock()
	if !c.closing.CompareAndSwap(false, true) {
		return false, false
	}
	return true, h.removeLocked(c, p)
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
	if h.clustered {
		return // who is online is the cluster's to say
	}
	c.sendRaw(eventFrame(protocol.EventWatchlist, "", protocol.WatchlistData(online, offline), ""))
}

// putCache remembers e as the last event of cache channel name.
func (h *hub) putCache(name string, e cachedEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cache.put(name, e)
}

// notifyWatchers is notifyWatchersLocked for a cluster's announcement.
func (h *hub) notifyWatchers(userID string, online bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	h.notifyWatchersLocked(userID, online)
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

// connections is Connections' page of at most limit sockets.
func (h *hub) connections(f ConnectionFilter, limit int) (list []ConnectionInfo, next string) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var ids []string
	if f.Channel != "" {
		if chn := h.channels[f.Channel]; chn != nil {
			for c := range chn.subs {
				ids = append(ids, c.id)
			}
		}
	} else {
		ids = make([]string, 0, len(h.conns))
		for id := range h.conns {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	i := sort.SearchStrings(ids, f.After)
	if f.After != "" && i < len(ids) && ids[i] == f.After {
		i++
	}
	for ; i < len(ids); i++ {
		c := h.conns[ids[i]]
		if c == nil || (f.UserID != "" && !c.hasUserLocked(f.UserID)) {
			continue
		}
		if len(list) == limit {
			return list, list[len(list)-1].SocketID
		}
		list = append(list, c.infoLocked())
	}
	return list, ""
}

// connectionInfo describes socket socketID, if the hub has it.
func (h *hub) connectionInfo(socketID string) (ConnectionInfo, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	c := h.conns[socketID]
	if c == nil {
		return ConnectionInfo{}, false
	}
	return c.infoLocked(), true
}

// conn is socket socketID, nil when the hub does not have it.
func (h *hub) conn(socketID string) *conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.conns[socketID]
}

// user is c's signed-in user id and info ("" and nil when not signed in).
func (h *hub) user(c *conn) (string, json.RawMessage) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return c.userID, c.userInfo
}

// channelInfos describes the occupied channels whose name starts with
// prefix, sorted by name.
func (h *hub) channelInfos(prefix string, now time.Time) []ChannelInfo {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]ChannelInfo, 0, len(h.channels))
	for name, chn := range h.channels {
		if strings.HasPrefix(name, prefix) {
			out = append(out, h.channelInfoLocked(name, chn, now))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// channelInfo describes channel name, occupied or not.
func (h *hub) channelInfo(name string, now time.Time) ChannelInfo {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.channelInfoLocked(name, h.channels[name], now)
}

// members lists the distinct users of presence channel name, sorted by
// user id; empty when it is not occupied.
func (h *hub) members(name string) []Member {
	h.mu.RLock()
	defer h.mu.RUnlock()
	chn := h.channels[name]
	if chn == nil {
		return []Member{}
	}
	out := make([]Member, 0, len(chn.members))
	for id, m := range chn.members {
		out = append(out, Member{UserID: id, UserInfo: json.RawMessage(m.info)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UserID < out[j].UserID })
	return out
}

// userSubscriptions is UserSubscriptions.
func (h *hub) userSubscriptions() map[string]int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := map[string]int{}
	for _, c := range h.conns {
		if len(c.counted) > 0 {
			out[c.userID] += len(c.counted)
		}
	}
	return out
}

// snapshot is Snapshot.
func (h *hub) snapshot() []LocalChannel {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]LocalChannel, 0, len(h.channels)+len(h.users))
	for name, chn := range h.channels {
		lc := LocalChannel{Name: name, Subscriptions: len(chn.subs)}
		for id, m := range chn.members {
			lc.Members = append(lc.Members, LocalMember{UserID: id, Sockets: m.conns, Info: m.info})
		}
		out = append(out, lc)
	}
	for id, set := range h.users {
		out = append(out, LocalChannel{Name: protocol.ServerToUserChannel(id), Subscriptions: len(set)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// holds is Server.holds.
func (h *hub) holds(socketID, channel string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	c := h.conns[socketID]
	if c == nil {
		return false
	}
	if uid, ok := strings.CutPrefix(channel, protocol.ServerToUserPrefix); ok {
		return c.userID == uid
	}
	_, in := c.subs[channel]
	return in
}

// localMembers appends this node's members of presence channel name to ms,
// sorted by user id.
func (h *hub) localMembers(name string, ms []protocol.Member) []protocol.Member {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if chn := h.channels[name]; chn != nil {
		for id, m := range chn.members {
			ms = append(ms, protocol.Member{UserID: id, UserInfo: m.info})
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].UserID < ms[j].UserID })
	return ms
}

// online says whether a socket here is signed in as userID.
func (h *hub) online(userID string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.users[userID]) > 0
}

// userConns lists the sockets signed in as userID.
func (h *hub) userConns(userID string) []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	list := make([]*conn, 0, len(h.users[userID]))
	for c := range h.users[userID] {
		list = append(list, c)
	}
	return list
}

// subscription is c's subscription to channel name: the presence user id
// it joined as, whether it is subscribed, and whether only to listen.
func (h *hub) subscription(c *conn, name string) (uid string, subscribed, subscribeOnly bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	uid, subscribed = c.subs[name]
	_, subscribeOnly = c.subscribeOnly[name]
	return uid, subscribed, subscribeOnly
}

// sendOthers sends frame to the subscribers of channel name but from (a
// client event, written at once rather than through the outbox).
func (h *hub) sendOthers(name string, frame []byte, from *conn) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if chn := h.channels[name]; chn != nil {
		for sub := range chn.subs {
			if sub != from {
				sub.sendRaw(frame)
			}
		}
	}
}

// openConns is Server.openConns.
func (h *hub) openConns() []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	list := make([]*conn, 0, len(h.conns))
	for _, c := range h.conns {
		if !c.closing.Load() {
			list = append(list, c)
		}
	}
	return list
}

// add puts a new socket in the hub.
func (h *hub) add(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.conns[c.id] = c
}

// snapshotConns is Server.snapshotConns.
func (h *hub) snapshotConns(list []*conn) []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, c := range h.conns {
		list = append(list, c)
	}
	return list
}

// cacheExpired says whether the cache holds an expired entry.
func (h *hub) cacheExpired(now time.Time) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.cache.expiredFront(now)
}

// expireCache drops the cache's expired entries.
func (h *hub) expireCache(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cache.expire(now)
}

// counts fills in st's figures of the hub.
func (h *hub) counts(st *Stats) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	st.ConnectionsActive = int64(len(h.conns))
	st.Channels = len(h.channels)
	for _, chn := range h.channels {
		st.PresenceMembers += len(chn.members)
	}
	st.SignedInUsers = len(h.users)
	st.CacheEntries = h.cache.len()
	st.CacheEvicted = h.cache.evicted
}
