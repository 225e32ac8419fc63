package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/milequest/pushercm/errcode"
	"github.com/milequest/pushercm/lifecycle"
	"github.com/milequest/pushercm/protocol"
)

// Cluster is the engine several nodes share (package cluster, on Redis, wired
// by the app). With none (the default) the hub is the whole server: fan-out,
// presence, occupancy and users are this process's own, at in-memory speed.
// With one, the hub keeps its local sockets and the Cluster carries:
//   - fan-out: every publish (gRPC, HTTP API, client events, presence
//     announcements) is one Cluster.Publish; each node listening to the
//     channel gets it back through Server.Receive and encodes the frame once
//     for its sockets;
//   - occupancy and presence: each socket's subscribe and leave is counted in
//     the Cluster, which reports the cluster-wide transitions (occupied,
//     vacated, member added, removed) to exactly one node, which announces
//     them;
//   - users: a signed-in socket counts as a subscription of its
//     #server-to-user-{id} channel, so SendToUser and terminate_connections
//     reach the user's sockets on every node, and the channel's occupied and
//     vacated transitions are the user's online and offline for watchlists.
//
// Implementations are safe for concurrent use. Errors that mean "Redis did not
// answer" wrap ErrUnavailable; a presence join over the member limit wraps
// ErrLimit.
type Cluster interface {
	// Publish hands payload to every node listening to channel (this one
	// included), with cacheTTL > 0 keeping it as a cache channel's last
	// event. It returns the channel's subscriptions across the cluster when
	// the publication was made, and whether a node said it is congested.
	Publish(ctx context.Context, channel string, payload []byte, cacheTTL time.Duration) (Published, error)
	// Congested says to every node, for ttl, that this node's subscribers of
	// channel lag behind; Uncongested takes it back (this node's word only).
	// Hold is how much longer channel is said congested (0: it is not).
	Congested(ctx context.Context, channel string, ttl time.Duration) error
	Uncongested(ctx context.Context, channel string) error
	Hold(ctx context.Context, channel string) (time.Duration, error)
	// Cached is a cache channel's last payload, nil when none.
	Cached(ctx context.Context, channel string) ([]byte, error)
	// Listen makes the node receive channel's publications (Server.Receive)
	// made after it returns; Unlisten stops it. Both are idempotent. A
	// Listen that fails for want of Redis is made again when Redis is back.
	Listen(ctx context.Context, channel string) error
	Unlisten(ctx context.Context, channel string) error
	// Subscribed and Unsubscribed count one socket of this node in or out of
	// channel; occupied / vacated are the cluster-wide transitions.
	Subscribed(ctx context.Context, channel string) (occupied bool, err error)
	Unsubscribed(ctx context.Context, channel string) (vacated bool, err error)
	// Join and Leave count one presence socket of userID; added / removed
	// are the cluster-wide member transitions. maxMembers > 0 refuses a new
	// member past it (ErrLimit).
	Join(ctx context.Context, channel, userID string, info []byte, maxMembers int) (added bool, err error)
	Leave(ctx context.Context, channel, userID string) (removed bool, err error)
	// Members lists a presence channel's members across the cluster.
	Members(ctx context.Context, channel string) ([]protocol.Member, error)
	// Channels lists the occupied channels whose name starts with prefix;
	// Counts gives the subscriptions and users of each named channel.
	Channels(ctx context.Context, prefix string) ([]ChannelCount, error)
	Counts(ctx context.Context, channels []string) ([]ChannelCount, error)
	// Acquire counts one unit of counter for this node unless the cluster's
	// total is already limit; Release gives one back. They hold the
	// per-user subscription limit for the cluster.
	Acquire(ctx context.Context, counter string, limit int) (bool, error)
	Release(ctx context.Context, counter string) error
}

// Published is what the Cluster confirmed of a publication.
type Published struct {
	// Subscriptions is the channel's subscriptions across the cluster when
	// the publication was made.
	Subscriptions int64
	// Hold > 0: a node said the channel is congested (its subscribers there
	// lag behind), for about that much longer: the publisher should wait.
	Hold time.Duration
}

// UserSubscriptionsCounter names a user's cluster-wide subscription count.
func UserSubscriptionsCounter(userID string) string { return "subs:" + userID }

// ErrUnavailable: the cluster's engine (Redis) did not answer, so the
// operation was not done. A publish refused with it was delivered to nobody.
var ErrUnavailable = &errcode.Error{Code: errcode.ConnectionFailed, Message: "edge: cluster unavailable", Public: "the cluster's shared store is unreachable", Temporary: true}

// ChannelCount is a channel's subscriptions and presence users across the
// cluster.
type ChannelCount struct {
	Name          string
	Subscriptions int64
	Users         int64
}

// LocalChannel is what this node holds in one channel (Snapshot), so that the
// Cluster can be told again after it lost it.
type LocalChannel struct {
	Name          string
	Subscriptions int
	Members       []LocalMember
}

// LocalMember is one presence user's sockets on this node.
type LocalMember struct {
	UserID  string
	Sockets int
	Info    []byte
}

// Cleanup is what a dead node left in one channel, as the Cluster reports it
// to the node that cleaned it up (see NodeGone).
type Cleanup struct {
	Channel string
	Vacated bool
	Removed []string
}

// WithCluster makes the server one node of a cluster sharing c. Call
// Server.Receive with every publication c hands back.
func WithCluster(c Cluster) Option {
	return func(o *options) { o.cluster = c }
}

// controlChannel carries what every node hears: users coming online and
// going offline (watchlists). No Pusher channel can have this name.
const controlChannel = "#cluster"

// Payload operations, the first byte of a publication's payload. The rest is
// an argument, a newline, and a body.
const (
	opEvent     = 'e' // argument: the socket to skip; body: the event's JSON frame
	opTerminate = 't' // on a user's channel: close its sockets
	opOnline    = 'o' // on controlChannel, argument: the user now online
	opOffline   = 'f' // on controlChannel, argument: the user now offline
)

func envelope(op byte, arg string, body []byte) []byte {
	b := make([]byte, 0, 2+len(arg)+len(body))
	b = append(b, op)
	b = append(b, arg...)
	b = append(b, '\n')
	return append(b, body...)
}

func openEnvelope(p []byte) (op byte, arg string, body []byte, ok bool) {
	if len(p) < 2 {
		return 0, "", nil, false
	}
	i := bytes.IndexByte(p[1:], '\n')
	if i < 0 {
		return 0, "", nil, false
	}
	return p[0], string(p[1 : 1+i]), p[2+i:], true
}

// clusterTimeout bounds each of a socket's cluster calls.
const clusterTimeout = 5 * time.Second

// listener counts the local reasons to listen to one channel.
type listener struct {
	refs  int
	ready chan struct{} // closed when the Listen call returned
	gone  chan struct{} // set when the last reference left: closed after Unlisten
}

type listeners struct {
	mu sync.Mutex
	m  map[string]*listener
}

// listen takes a reference on channel's subscription to the cluster and
// returns once publications made from now on are received.
func (s *Server) listen(ctx context.Context, channel string) {
	for {
		s.lis.mu.Lock()
		l := s.lis.m[channel]
		if l != nil && l.gone != nil {
			g := l.gone
			s.lis.mu.Unlock()
			<-g
			continue
		}
		if l != nil {
			l.refs++
			s.lis.mu.Unlock()
			select {
			case <-l.ready:
			case <-ctx.Done():
			}
			return
		}
		l = &listener{refs: 1, ready: make(chan struct{})}
		s.lis.m[channel] = l
		s.lis.mu.Unlock()
		if err := s.opts.cluster.Listen(ctx, channel); err != nil {
			s.clusterMissed("listen", channel, err)
		}
		close(l.ready)
		return
	}
}

// unlisten drops a reference taken by listen.
func (s *Server) unlisten(ctx context.Context, channel string) {
	s.lis.mu.Lock()
	l := s.lis.m[channel]
	if l == nil || l.gone != nil {
		s.lis.mu.Unlock()
		return
	}
	if l.refs--; l.refs > 0 {
		s.lis.mu.Unlock()
		return
	}
	l.gone = make(chan struct{})
	s.lis.mu.Unlock()
	<-l.ready
	if err := s.opts.cluster.Unlisten(ctx, channel); err != nil {
		s.clusterMissed("unlisten", channel, err)
	}
	s.lis.mu.Lock()
	delete(s.lis.m, channel)
	s.lis.mu.Unlock()
	close(l.gone)
}

// clusterFailed records a call that should have changed the node's counts
// in the cluster and did not: they may be off until Snapshot is written back
// (Dirty).
func (s *Server) clusterFailed(what, channel string, err error) {
	s.clDirty.Store(true)
	s.clFails.Add(1)
	s.cfg.Logger.Warn("cluster call failed; the node's state will be written back when Redis answers", "op", what, "channel", channel, "err", err)
}

// clusterMissed records a cluster call that changes no counts (a read, an
// announcement, a listen the broker makes again by itself): counted and
// logged, nothing to write back.
func (s *Server) clusterMissed(what, channel string, err error) {
	s.clFails.Add(1)
	s.cfg.Logger.Warn("cluster call failed", "op", what, "channel", channel, "err", err)
}

// ClusterFailures counts the socket-side cluster calls (subscribe, leave,
// join, sign-in, announcements) that Redis did not answer.
func (s *Server) ClusterFailures() uint64 { return s.clFails.Load() }

// MarkDirty asks for Snapshot to be written back (Dirty reports it).
func (s *Server) MarkDirty() { s.clDirty.Store(true) }

// Dirty reports, and clears, whether a cluster call failed since the last
// call: the caller then writes Snapshot back to the cluster.
func (s *Server) Dirty() bool { return s.clDirty.Swap(false) }

// UserSubscriptions is, per user, the subscriptions of this node's sockets
// that hold a unit of the user's cluster-wide count, so that the counts can
// be written back after Redis lost them.
func (s *Server) UserSubscriptions() map[string]int {
	return s.hub.userSubscriptions()
}

// Snapshot is everything this node holds: each channel's local
// subscriptions and presence sockets, and each signed-in user's sockets (as
// its #server-to-user- channel).
func (s *Server) Snapshot() []LocalChannel {
	return s.hub.snapshot()
}

// clusterOp is a socket's leave to report to the cluster after the hub lock
// is released: a channel (with the presence user, if any), or its user's
// channel when user is set.
type clusterOp struct {
	channel, uid, socketID string
	user                   bool
	// counted: release a unit of counted's subscription count.
	counted string
}

// clusterLeaves reports ops to the cluster in the background, in order.
func (s *Server) clusterLeaves(ops []clusterOp) {
	dones := make([]chan struct{}, len(ops))
	for i, op := range ops {
		dones[i] = s.leaving.add(op.channel)
	}
	s.clOps.Add(1)
	go func() {
		defer s.clOps.Done()
		ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
		defer cancel()
		for i, op := range ops {
			s.clusterLeave(ctx, op)
			s.leaving.done(op.channel, dones[i])
		}
	}()
}

// leaving holds, per channel, the leaves this node is reporting to the
// cluster. A join of the channel on this node waits for those under way when
// it starts (wait), so that the cluster sees this node's leave and join in
// the order the sockets made them, and their webhooks reach the sender in
// that order too: a quick leave and rejoin is then a held channel_vacated
// that the channel_occupied cancels, not an occupied sent first and a
// vacated held after it. Leaves that start later do not hold the join up.
type leaving struct {
	mu sync.Mutex
	ch map[string][]chan struct{} // closed when the leave is reported
}

func (l *leaving) add(channel string) chan struct{} {
	done := make(chan struct{})
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ch == nil {
		l.ch = make(map[string][]chan struct{})
	}
	l.ch[channel] = append(l.ch[channel], done)
	return done
}

func (l *leaving) done(channel string, done chan struct{}) {
	close(done)
	l.mu.Lock()
	defer l.mu.Unlock()
	pending := l.ch[channel]
	for i, c := range pending {
		if c == done {
			pending = append(pending[:i], pending[i+1:]...)
			break
		}
	}
	if len(pending) == 0 {
		delete(l.ch, channel)
	} else {
		l.ch[channel] = pending
	}
}

// wait returns once the leaves of channel under way when it was called are
// reported, or ctx ends.
func (l *leaving) wait(ctx context.Context, channel string) { l.under(channel).wait(ctx) }

// under is the leaves of channel under way now.
func (l *leaving) under(channel string) pendingLeaves {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append(pendingLeaves(nil), l.ch[channel]...)
}

// pendingLeaves are leaves under way at one instant.
type pendingLeaves []chan struct{}

// wait returns once they are reported, or ctx ends.
func (p pendingLeaves) wait(ctx context.Context) {
	for _, c := range p {
		select {
		case <-c:
		case <-ctx.Done():
			return
		}
	}
}

func (s *Server) clusterLeave(ctx context.Context, op clusterOp) {
	cl := s.opts.cluster
	now := s.opts.now()
	if op.counted != "" {
		if err := cl.Release(ctx, UserSubscriptionsCounter(op.counted)); err != nil {
			s.clusterFailed("release", op.channel, err)
		}
	}
	if op.user {
		vacated, err := cl.Unsubscribed(ctx, op.channel)
		if err != nil {
			s.clusterFailed("sign out", op.channel, err)
		} else if vacated {
			s.publishControl(ctx, opOffline, op.uid)
		}
		s.unlisten(ctx, op.channel)
		return
	}
	var p pending
	if op.uid != "" {
		removed, err := cl.Leave(ctx, op.channel, op.uid)
		if err != nil {
			s.clusterFailed("leave", op.channel, err)
		} else if removed {
			s.announceRemoved(ctx, op.channel, op.uid, op.socketID, now, &p)
		}
	}
	vacated, err := cl.Unsubscribed(ctx, op.channel)
	if err != nil {
		s.clusterFailed("unsubscribe", op.channel, err)
	} else if vacated {
		announceVacated(op.channel, now, &p)
	}
	s.unlisten(ctx, op.channel)
	s.flush(&p)
}

func (s *Server) announceRemoved(ctx context.Context, channel, uid, socketID string, now time.Time, p *pending) {
	frame := protocol.EncodeEvent(protocol.EventMemberRemoved, channel, protocol.MemberRemovedData(uid), "")
	if _, err := s.opts.cluster.Publish(ctx, channel, envelope(opEvent, "", frame), 0); err != nil {
		s.clusterMissed("member_removed", channel, err)
	}
	p.evs = append(p.evs, lifecycle.Event{Type: lifecycle.MemberRemoved, Time: now, SocketID: socketID, UserID: uid, Channel: channel})
	p.hooks = append(p.hooks, protocol.WebhookEvent{Name: protocol.WebhookMemberRemoved, Channel: channel, UserID: uid})
}

func announceVacated(channel string, now time.Time, p *pending) {
	p.evs = append(p.evs, lifecycle.Event{Type: lifecycle.ChannelVacated, Time: now, Channel: channel})
	p.hooks = append(p.hooks, protocol.WebhookEvent{Name: protocol.WebhookChannelVacated, Channel: channel})
}

func (s *Server) publishControl(ctx context.Context, op byte, uid string) {
	if _, err := s.opts.cluster.Publish(ctx, controlChannel, envelope(op, uid, nil), 0); err != nil {
		s.clusterMissed("watchlist", uid, err)
	}
}

// NodeGone announces what a dead node left behind, as the Cluster reported
// it to this node (the one that cleaned it up): member_removed to the
// channel's subscribers and the webhooks, channel_vacated, and users gone
// offline.
func (s *Server) NodeGone(ctx context.Context, left []Cleanup) {
	now := s.opts.now()
	var p pending
	for _, c := range left {
		if uid, ok := strings.CutPrefix(c.Channel, protocol.ServerToUserPrefix); ok {
			if c.Vacated {
				s.publishControl(ctx, opOffline, uid)
			}
			continue
		}
		for _, uid := range c.Removed {
			s.announceRemoved(ctx, c.Channel, uid, "", now, &p)
		}
		if c.Vacated {
			announceVacated(c.Channel, now, &p)
		}
	}
	s.flush(&p)
}

// Receive delivers one publication the Cluster handed back to this node's
// sockets (for an event: the frame encoded once for all of them).
func (s *Server) Receive(channel string, payload []byte) {
	op, arg, body, ok := openEnvelope(payload)
	if !ok {
		return
	}
	switch op {
	case opEvent:
		frame := wsFrame(opText, body)
		var n int
		if uid, ok := strings.CutPrefix(channel, protocol.ServerToUserPrefix); ok {
			n = s.hub.postUser(uid, frame, arg)
		} else {
			// A congested channel here is the cluster's to tell the
			// publishers (see Congestion).
			n, _ = s.hub.postChannel(channel, frame, arg)
		}
		s.st.messagesOut.Add(uint64(n))
		if d, ok := s.opts.metrics.(DeliveryObserver); ok && n > 0 {
			d.Delivered(n)
		}
	case opTerminate:
		if uid, ok := strings.CutPrefix(channel, protocol.ServerToUserPrefix); ok {
			s.terminateLocal(uid)
		}
	case opOnline, opOffline:
		s.hub.notifyWatchers(arg, op == opOnline)
	}
}

// publishCluster is Publish through the cluster: one publication per channel,
// delivered by Receive on every node listening to it. congested is the first
// of the channels a node said is congested, "" when none was: the caller
// then holds (holdCluster; see Congestion).
func (s *Server) publishCluster(ctx context.Context, chans []protocol.Channel, m Message) (delivered int, congested string, err error) {
	for _, ch := range chans {
		name := ch.Name
		frame := protocol.EncodeEvent(m.Event, name, m.Data, "")
		var ttl time.Duration
		if ch.Cache {
			ttl = s.cfg.CacheTTL
		}
		res, err := s.opts.cluster.Publish(ctx, name, envelope(opEvent, m.ExcludeSocketID, frame), ttl)
		if err != nil {
			return delivered, "", fmt.Errorf("%w: publish to %s: %w", ErrUnavailable, name, err)
		}
		if res.Hold > 0 && congested == "" && s.hub.holding {
			congested = name
		}
		n := res.Subscriptions
		if m.ExcludeSocketID != "" && n > 0 && s.holds(m.ExcludeSocketID, name) {
			n--
		}
		delivered += int(n)
		if s.watchingMessages() {
			s.emit(lifecycle.Event{Type: lifecycle.Published, Time: s.opts.now(), Channel: name, UserID: ch.UserID, Name: m.Event, Delivered: int(n)})
		}
	}
	return delivered, congested, nil
}

// publishedCluster reports a cluster publish to the metrics: its deliveries
// are counted where the sockets are (Receive), when the metrics can.
func (s *Server) publishedCluster(delivered int, start time.Time) {
	mt := s.opts.metrics
	if mt == nil {
		return
	}
	if _, ok := mt.(DeliveryObserver); ok {
		delivered = 0
	}
	mt.Published(delivered, time.Since(start))
}

// holds says whether this node's socket id is in channel (a user's channel:
// signed in as that user).
func (s *Server) holds(socketID, channel string) bool {
	return s.hub.holds(socketID, channel)
}

// subscribeCluster is subscribe on a node of a cluster: the cluster's calls
// (listen, join, count, members, cache) are made before the hub lock is
// taken, then the socket joins the local channel.
func (s *Server) subscribeCluster(c *conn, ch protocol.Channel, member *protocol.Member, clientEvents bool) error {
	cl := s.opts.cluster
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	now := s.opts.now()

	// This node's leaves of the channel reach the cluster first.
	s.leaving.wait(ctx, ch.Name)

	// signedIn is the socket's user as the hub holds it (c.userID is the
	// hub's to read).
	removed, again, nsubs, userSubs, signedIn := s.hub.subscriptionState(c, ch.Name)
	switch {
	case removed:
		return fmt.Errorf("%w: socket %s is closing", ErrNotFound, c.id)
	case again:
		members := s.clusterMembers(ctx, ch)
		s.hub.setClientEvents(c, ch.Name, clientEvents)
		c.sendRaw(wsFrame(opText, succeededData(ch, members)))
		return nil
	case !protocol.Within(nsubs+1, s.cfg.Limits.MaxSubscriptionsPerConnection):
		return &subError{ErrLimit, protocol.SubErrLimitReached, "Too many subscriptions on this connection", protocol.CodeOverCapacity}
	case s.cfg.MaxSubscriptionsPerUser > 0 && signedIn != "" && userSubs+1 > s.cfg.MaxSubscriptionsPerUser:
		return &subError{ErrLimit, protocol.SubErrLimitReached, "Too many subscriptions for this user", protocol.CodeOverCapacity}
	}

	// The per-user subscription limit holds for the cluster: a unit of the
	// user's count, unless Redis does not answer (the local check above
	// then stands alone).
	counted := ""
	if max := s.cfg.MaxSubscriptionsPerUser; max > 0 && signedIn != "" {
		ok, err := cl.Acquire(ctx, UserSubscriptionsCounter(signedIn), max)
		switch {
		case err != nil:
			s.clusterFailed("subscriptions per user", ch.Name, err)
		case !ok:
			return &subError{ErrLimit, protocol.SubErrLimitReached, "Too many subscriptions for this user", protocol.CodeOverCapacity}
		default:
			counted = signedIn
		}
	}
	s.listen(ctx, ch.Name)
	added := false
	if member != nil {
		var err error
		added, err = cl.Join(ctx, ch.Name, member.UserID, member.UserInfo, s.cfg.Limits.MaxPresenceMembers)
		if errors.Is(err, ErrLimit) {
			s.unlisten(ctx, ch.Name)
			if counted != "" {
				if err := cl.Release(ctx, UserSubscriptionsCounter(counted)); err != nil {
					s.clusterFailed("release", ch.Name, err)
				}
			}
			return &subError{ErrLimit, protocol.SubErrLimitReached, "Presence channel is full", protocol.CodeOverCapacity}
		}
		if err != nil {
			s.clusterFailed("join", ch.Name, err)
		}
		if added {
			// Announced before this socket's members are read and its
			// subscription_succeeded sent: a socket that subscribes after
			// that has the member in its list and does not get member_added
			// for it too.
			frame := protocol.EncodeEvent(protocol.EventMemberAdded, ch.Name, protocol.MemberAddedData(*member), "")
			if _, err := cl.Publish(ctx, ch.Name, envelope(opEvent, c.id, frame), 0); err != nil {
				s.clusterMissed("member_added", ch.Name, err)
			}
		}
	}
	occupied, err := cl.Subscribed(ctx, ch.Name)
	if err != nil {
		s.clusterFailed("subscribe", ch.Name, err)
	}
	members := s.clusterMembers(ctx, ch)
	var cached []byte
	cacheErr := error(nil)
	if ch.Cache {
		cached, cacheErr = cl.Cached(ctx, ch.Name)
	}

	var replay []byte // the cached event, nil for a cache miss
	if ch.Cache {
		if _, _, body, ok := openEnvelope(cached); cacheErr == nil && ok {
			replay = wsFrame(opText, body)
		}
	}
	var p pending
	joined, closing := s.hub.joinCluster(c, ch, member, clientEvents, counted, wsFrame(opText, succeededData(ch, members)), replay, &p)
	if !joined {
		// Closed, or the same subscription made twice at once: undo ours.
		op := clusterOp{channel: ch.Name, socketID: c.id, counted: counted}
		if member != nil {
			op.uid = member.UserID
		}
		s.clusterLeaves([]clusterOp{op})
		if closing {
			return fmt.Errorf("%w: socket %s is closing", ErrNotFound, c.id)
		}
		return nil
	}
	uid := ""
	if member != nil {
		uid = member.UserID
	}
	if occupied {
		p.evs = append(p.evs, lifecycle.Event{Type: lifecycle.ChannelOccupied, Time: now, Channel: ch.Name})
		p.hooks = append(p.hooks, protocol.WebhookEvent{Name: protocol.WebhookChannelOccupied, Channel: ch.Name})
	}
	if added {
		p.evs = append(p.evs, lifecycle.Event{Type: lifecycle.MemberAdded, Time: now, SocketID: c.id, UserID: uid, Channel: ch.Name, UserInfo: member.UserInfo})
		p.hooks = append(p.hooks, protocol.WebhookEvent{Name: protocol.WebhookMemberAdded, Channel: ch.Name, UserID: uid})
	}
	p.evs = append(p.evs, lifecycle.Event{Type: lifecycle.Subscribed, Time: now, SocketID: c.id, UserID: uid, Channel: ch.Name})
	s.flush(&p)
	return nil
}

// joinCluster is subscribeCluster's part in the hub, after the cluster's
// calls: c joins the local channel, holding a unit of counted's subscription
// count when counted is set, and is sent succeeded, then replay or a cache
// miss (on a cache channel). joined is false when c closed meanwhile
// (closing) or the same subscription was made twice at once: the caller
// undoes its cluster calls.
func (h *hub) joinCluster(c *conn, ch protocol.Channel, member *protocol.Member, clientEvents bool, counted string, succeeded, replay []byte, p *pending) (joined, closing bool) {
	h.lock()
	defer h.mu.Unlock()
	if _, again := c.subs[ch.Name]; c.removed || again {
		return false, c.removed
	}
	chn := h.channels[ch.Name]
	if chn == nil {
		chn = &channel{info: ch, subs: make(map[*conn]struct{}, 1)}
		if member != nil {
			chn.members = make(map[string]*presenceMember, 1)
		}
		h.channels[ch.Name] = chn
	}
	uid := ""
	if member != nil {
		uid = member.UserID
		m := chn.members[uid]
		if m == nil {
			m = &presenceMember{}
			chn.members[uid] = m
		}
		m.info = member.UserInfo
		m.conns++
	}
	chn.subs[c] = struct{}{}
	if c.subs == nil {
		c.subs = make(map[string]string, 1)
	}
	c.subs[ch.Name] = uid
	if counted != "" {
		if c.counted == nil {
			c.counted = make(map[string]struct{}, 1)
		}
		c.counted[ch.Name] = struct{}{}
	}
	c.setClientEventsLocked(ch.Name, clientEvents)
	h.subscriptions.Add(1)
	c.sendRaw(succeeded)
	if ch.Cache {
		if replay != nil {
			c.sendRaw(replay)
		} else {
			c.sendRaw(wsFrame(opText, protocol.EncodeNoData(protocol.EventCacheMiss, ch.Name)))
			p.hooks = append(p.hooks, protocol.WebhookEvent{Name: protocol.WebhookCacheMiss, Channel: ch.Name})
		}
	}
	return true, false
}

// clusterMembers lists a presence channel's members across the cluster (nil
// for other kinds); without Redis, this node's own.
func (s *Server) clusterMembers(ctx context.Context, ch protocol.Channel) []protocol.Member {
	if ch.Kind != protocol.KindPresence {
		return nil
	}
	ms, err := s.opts.cluster.Members(ctx, ch.Name)
	if err == nil {
		return ms
	}
	s.clusterMissed("members", ch.Name, err)
	return s.hub.localMembers(ch.Name, ms)
}

// succeededData encodes subscription_succeeded for ch (with members for
// presence).
func succeededData(ch protocol.Channel, members []protocol.Member) []byte {
	data := "{}"
	if ch.Kind == protocol.KindPresence {
		if members == nil {
			members = []protocol.Member{}
		}
		data = protocol.PresenceSucceededData(members)
	}
	return protocol.EncodeEvent(protocol.EventSubscriptionSucceeded, ch.Name, data, "")
}

// signinCluster counts a socket's sign-in in the cluster (its user's
// channel) and listens to that channel. online is true for the user's first
// socket anywhere: the caller then tells every node's watchers. It runs
// without the hub lock.
func (s *Server) signinCluster(uid string) (online bool) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	name := protocol.ServerToUserChannel(uid)
	s.listen(ctx, name)
	occupied, err := s.opts.cluster.Subscribed(ctx, name)
	if err != nil {
		s.clusterFailed("sign in", name, err)
		return false
	}
	return occupied
}

// sendWatchlist sends c the current status of ids, across the cluster.
func (s *Server) sendWatchlist(ctx context.Context, c *conn, ids []string) {
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = protocol.ServerToUserChannel(id)
	}
	counts, err := s.opts.cluster.Counts(ctx, names)
	var online, offline []string
	for i, id := range ids {
		on := false
		if err == nil && i < len(counts) {
			on = counts[i].Subscriptions > 0
		} else {
			on = s.hub.online(id)
		}
		if on {
			online = append(online, id)
		} else {
			offline = append(offline, id)
		}
	}
	if err != nil {
		s.clusterMissed("watchlist", "", err)
	}
	c.sendRaw(eventFrame(protocol.EventWatchlist, "", protocol.WatchlistData(online, offline), ""))
}

// terminateLocal closes this node's sockets signed in as userID.
func (s *Server) terminateLocal(userID string) int {
	list := s.hub.userConns(userID)
	for _, c := range list {
		c.closeWithError(protocol.CodeUnauthorized, "You got disconnected by the app.")
	}
	return len(list)
}

// clusterChannelInfo turns a cluster count into a ChannelInfo.
func (s *Server) clusterChannelInfo(ctx context.Context, cc ChannelCount, now time.Time) ChannelInfo {
	ci := ChannelInfo{Name: cc.Name, Occupied: cc.Subscriptions > 0, SubscriptionCount: int(cc.Subscriptions), UserCount: int(cc.Users)}
	if ch, err := protocol.ParseChannel(cc.Name, s.cfg.Limits.MaxChannelNameLength); err == nil && ch.Cache {
		if p, err := s.opts.cluster.Cached(ctx, cc.Name); err == nil {
			if _, _, body, ok := openEnvelope(p); ok {
				if m, err := protocol.DecodeMessage(body); err == nil {
					ci.Cache = &CachedEvent{Event: m.Event, Data: m.DataString(), ExpiresAt: now.Add(s.cfg.CacheTTL)}
				}
			}
		}
	}
	return ci
}
