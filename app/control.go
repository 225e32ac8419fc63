package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/milequest/pushercm/cluster"
	"github.com/milequest/pushercm/edge"
	"github.com/milequest/pushercm/errcode"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/lifecycle"
	"github.com/milequest/pushercm/server"
)

// ConnectionService across nodes.
//
// Nodes talk only through Redis (cluster.Control: a request published once on
// a Broker channel, replies on a Redis list the asker BLPOPs). Socket ids say
// nothing of their node and there is no socket directory: a directory would
// cost a Redis write per connect and disconnect on the hot path and must be
// repaired when a node dies, while control calls are rare. So:
//   - a call on one socket is tried on this node first, then asked of every
//     other live node at once; the node holding the socket answers, the
//     others answer NOT_FOUND, and the first real answer settles it;
//   - ListConnections asks every node for its first page after the cursor and
//     merges them by socket id, so pages are stable across nodes;
//   - WatchConnectionEvents asks every node to forward its events on
//     eventsChannel for a lease that the watching node renews each heartbeat;
//     nodes publish nothing while nobody watches.
//
// A node that is registered but does not answer (it died less than nodeTtl
// ago) costs a call controlTimeout: lists then answer with the nodes that
// did answer, single-socket calls with NOT_FOUND.

// eventsChannel carries forwarded lifecycle events between nodes.
const eventsChannel = "#events"

// controlTimeout bounds a call's wait for other nodes' replies.
const controlTimeout = 3 * time.Second

// Control ops.
const (
	opList        = "list"
	opGet         = "get"
	opDisconnect  = "disconnect"
	opSubscribe   = "subscribe"
	opUnsubscribe = "unsubscribe"
	opWatch       = "watch"
	opMetrics     = "metrics"
	opHealth      = "health"
)

// controlPlane is a node's part in cross-node connection management.
type controlPlane struct {
	node *clusterNode
	self string

	// Set by the wiring before the node connects.
	local edgeSockets
	svc   *server.Connection

	mu       sync.Mutex
	watchers map[*clusterWatcher]struct{}
	fwd      *forwarder // non-nil while this node forwards its events
}

func newControlPlane(n *clusterNode) *controlPlane {
	return &controlPlane{node: n, self: n.cfg.NodeID, watchers: map[*clusterWatcher]struct{}{}}
}

// receive routes the Broker's control and events channels; ok is false for
// every other channel (the edge's).
func (p *controlPlane) receive(m cluster.Message) (ok bool) {
	switch m.Channel {
	case cluster.ControlChannel:
		if c := p.node.control(); c != nil {
			c.Receive(m)
		}
	case eventsChannel:
		p.remoteEvent(m.Payload)
	default:
		return false
	}
	return true
}

// unavailable gives a failure to reach Redis or a silent node the code of
// the edge's: UNAVAILABLE / CONNECTION_FAILED, not INTERNAL.
func unavailable(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errcode.As(err); !ok && (errors.Is(err, cluster.ErrUnavailable) || errors.Is(err, cluster.ErrNoAnswer)) {
		return fmt.Errorf("%w: %w", edge.ErrUnavailable, err)
	}
	return err
}

// others are the live nodes but this one.
func (p *controlPlane) others(ctx context.Context) ([]string, error) {
	if err := p.node.Err(); err != nil {
		// Known down: answer now rather than wait out the call's timeout.
		return nil, unavailable(fmt.Errorf("%w: %w", cluster.ErrUnavailable, err))
	}
	nodes, err := p.node.Nodes(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	var ids []string
	for _, n := range nodes {
		if n.ID != p.self {
			ids = append(ids, n.ID)
		}
	}
	return ids, nil
}

func (p *controlPlane) ask(ctx context.Context, nodes []string, op string, body any, enough func(cluster.Reply) bool) ([]cluster.Reply, error) {
	c := p.node.control()
	if c == nil {
		return nil, unavailable(fmt.Errorf("%w: not connected yet", cluster.ErrUnavailable))
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	replies, err := c.Ask(ctx, nodes, op, b, enough)
	return replies, unavailable(err)
}

// askOthers asks every other live node.
func (p *controlPlane) askOthers(ctx context.Context, op string, body any, enough func(cluster.Reply) bool) ([]cluster.Reply, error) {
	ids, err := p.others(ctx)
	if err != nil {
		return nil, err
	}
	return p.ask(ctx, ids, op, body, enough)
}

type socketOp struct {
	SocketID string `json:"socketId"`
	Channel  string `json:"channel,omitempty"`
	Code     int    `json:"code,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

type listReply struct {
	List []server.ConnectionInfo `json:"list"`
	Next string                  `json:"next,omitempty"`
}

type watchOp struct {
	Messages bool `json:"messages"`
}

// handle answers another node's request on this node only.
func (p *controlPlane) handle(ctx context.Context, op string, body []byte) ([]byte, error) {
	var so socketOp
	switch op {
	case opList:
		var f server.ConnectionFilter
		if err := json.Unmarshal(body, &f); err != nil {
			return nil, err
		}
		list, next := p.local.Connections(f)
		return json.Marshal(listReply{List: list, Next: next})
	case opGet, opDisconnect, opSubscribe, opUnsubscribe:
		if err := json.Unmarshal(body, &so); err != nil {
			return nil, err
		}
	case opWatch:
		var w watchOp
		if err := json.Unmarshal(body, &w); err != nil {
			return nil, err
		}
		p.forward(w.Messages)
		return nil, nil
	case opMetrics:
		return proto.Marshal(p.svc.LocalMetrics(ctx))
	case opHealth:
		return proto.Marshal(p.svc.LocalHealth(ctx))
	default:
		return nil, fmt.Errorf("%w: unknown control op %q", interceptors.ErrInvalidArgument, op)
	}
	// A socket op: NOT_FOUND unless this node holds the socket.
	ci, err := p.local.Connection(so.SocketID)
	if err != nil {
		return nil, err
	}
	switch op {
	case opGet:
		return json.Marshal(ci)
	case opDisconnect:
		err = p.local.Disconnect(so.SocketID, so.Code, so.Reason)
	case opSubscribe:
		err = p.local.Subscribe(so.SocketID, so.Channel)
	case opUnsubscribe:
		err = p.local.Unsubscribe(so.SocketID, so.Channel)
	}
	return nil, err
}

// onHolder runs a socket op where the socket is: here when this node holds
// it, else on the node that answers for it.
func (p *controlPlane) onHolder(op string, so socketOp, local func() error) ([]byte, error) {
	if _, err := p.local.Connection(so.SocketID); err == nil || !errors.Is(err, edge.ErrNotFound) {
		if err != nil {
			return nil, err
		}
		return nil, local()
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	held := func(r cluster.Reply) bool { return errcode.Code(r.Code) != errcode.NotFound }
	replies, err := p.askOthers(ctx, op, so, held)
	for _, r := range replies {
		if held(r) {
			return r.Body, r.Err()
		}
	}
	if err != nil && !errors.Is(err, cluster.ErrNoAnswer) {
		return nil, err // Redis unreachable: nobody could be asked
	}
	return nil, fmt.Errorf("%w: socket %q", edge.ErrNotFound, so.SocketID)
}

// clusterSockets is server.Sockets for a cluster node: the node's own sockets
// first, the other nodes' through the control plane.
type clusterSockets struct {
	edgeSockets
	p *controlPlane
}

func (s clusterSockets) Connections(f server.ConnectionFilter) ([]server.ConnectionInfo, string) {
	list, next := s.edgeSockets.Connections(f)
	more := next != ""
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	replies, err := s.p.askOthers(ctx, opList, f, nil)
	if err != nil {
		s.p.node.log.Warn("listing connections: some nodes did not answer", "err", err)
	}
	for _, r := range replies {
		var lr listReply
		if r.Err() != nil || json.Unmarshal(r.Body, &lr) != nil {
			continue
		}
		list = append(list, lr.List...)
		more = more || lr.Next != ""
	}
	slices.SortFunc(list, func(a, b server.ConnectionInfo) int { return strings.Compare(a.SocketID, b.SocketID) })
	if f.Limit > 0 && len(list) > f.Limit {
		list, more = list[:f.Limit], true
	}
	if !more || len(list) == 0 {
		return list, ""
	}
	return list, list[len(list)-1].SocketID
}

func (s clusterSockets) Connection(socketID string) (server.ConnectionInfo, error) {
	var ci server.ConnectionInfo
	var local error
	body, err := s.p.onHolder(opGet, socketOp{SocketID: socketID}, func() error {
		ci, local = s.edgeSockets.Connection(socketID)
		return local
	})
	if err != nil || body == nil {
		return ci, err
	}
	return ci, json.Unmarshal(body, &ci)
}

func (s clusterSockets) Disconnect(socketID string, code int, reason string) error {
	_, err := s.p.onHolder(opDisconnect, socketOp{SocketID: socketID, Code: code, Reason: reason}, func() error {
		return s.edgeSockets.Disconnect(socketID, code, reason)
	})
	return err
}

func (s clusterSockets) Subscribe(socketID, channel string) error {
	_, err := s.p.onHolder(opSubscribe, socketOp{SocketID: socketID, Channel: channel}, func() error {
		return s.edgeSockets.Subscribe(socketID, channel)
	})
	return err
}

func (s clusterSockets) Unsubscribe(socketID, channel string) error {
	_, err := s.p.onHolder(opUnsubscribe, socketOp{SocketID: socketID, Channel: channel}, func() error {
		return s.edgeSockets.Unsubscribe(socketID, channel)
	})
	return err
}

// The server.Cluster seam.

func (p *controlPlane) Self() string { return p.self }

func (p *controlPlane) Nodes(ctx context.Context) ([]server.NodeInfo, error) {
	nodes, err := p.node.Nodes(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]server.NodeInfo, len(nodes))
	for i, n := range nodes {
		out[i] = server.NodeInfo{ID: n.ID, Version: n.Version, GRPCAddr: n.GRPCAddr, HTTPAddr: n.HTTPAddr, OpsAddr: n.OpsAddr,
			Connections: int64(n.Connections), StartedAt: n.StartedAt, LastHeartbeat: n.LastHeartbeat}
	}
	return out, nil
}

func (p *controlPlane) Redis() server.RedisStatus {
	if err := p.node.Err(); err != nil {
		return server.RedisStatus{Err: err.Error()}
	}
	return server.RedisStatus{Up: true}
}

func (p *controlPlane) Remote(ctx context.Context, node, op string, resp proto.Message) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, controlTimeout)
		defer cancel()
	}
	nodes, err := p.node.Nodes(ctx)
	if err != nil {
		return unavailable(err)
	}
	if !slices.ContainsFunc(nodes, func(n cluster.NodeInfo) bool { return n.ID == node }) {
		return fmt.Errorf("%w: no live node %q", interceptors.ErrNotFound, node)
	}
	replies, err := p.ask(ctx, []string{node}, op, struct{}{}, nil)
	if err != nil {
		return err
	}
	if err := replies[0].Err(); err != nil {
		return err
	}
	return proto.Unmarshal(replies[0].Body, resp)
}

// Watching across nodes.

// forwarder publishes this node's events on eventsChannel until its lease
// ends.
type forwarder struct {
	messages bool
	until    time.Time
	w        *lifecycle.Watcher
}

// forward starts or extends forwarding this node's events (and its message
// events too when messages is set) for a lease of nodeTtl.
func (p *controlPlane) forward(messages bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	until := time.Now().Add(p.node.cfg.NodeTTL)
	if f := p.fwd; f != nil && (f.messages || !messages) {
		f.until = until
		return
	}
	if p.fwd != nil {
		messages = true
		p.fwd.w.Close() // replaced by one that also forwards message events
	}
	f := &forwarder{messages: messages, until: until}
	if messages {
		f.w = p.local.WatchMessages(4096)
	} else {
		f.w = p.local.Watch(4096)
	}
	p.fwd = f
	go p.runForwarder(f)
}

func (p *controlPlane) runForwarder(f *forwarder) {
	defer f.w.Close()
	t := time.NewTicker(p.node.cfg.Heartbeat)
	defer t.Stop()
	done := func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.fwd != f {
			return true
		}
		if time.Now().After(f.until) {
			p.fwd = nil
			return true
		}
		return false
	}
	// missed is set while events were lost on the way out (the local
	// watcher lagged, or Redis refused a publish); the next forwarded item
	// then first tells the watchers so.
	missed := false
	send := func(e forwardedEvent) bool {
		b, err := json.Marshal(e)
		if err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
		_, err = p.node.Publish(ctx, eventsChannel, b, 0)
		cancel()
		if err != nil {
			p.node.log.Debug("forwarding an event failed", "err", err)
			return false
		}
		return true
	}
	for {
		select {
		case <-t.C:
			if done() {
				return
			}
		case e, ok := <-f.w.C():
			if !ok {
				// Lagged or shut down: the next renewal starts a new one. The
				// watchers elsewhere are told they missed events.
				p.mu.Lock()
				if p.fwd == f {
					p.fwd = nil
				}
				p.mu.Unlock()
				if errors.Is(f.w.Err(), lifecycle.ErrLagged) {
					send(forwardedEvent{Event: lifecycle.Event{Node: p.self}, Missed: true})
				}
				return
			}
			if done() {
				return
			}
			if missed {
				missed = !send(forwardedEvent{Event: lifecycle.Event{Node: p.self}, Missed: true})
			}
			e.Node = p.self
			if !send(forwardedEvent{Event: e}) {
				missed = true
			}
		}
	}
}

// forwardedEvent is an event on eventsChannel. Missed marks none: it says the
// node lost some of its events on the way, so every watcher ends lagged
// rather than go on with a silent gap.
type forwardedEvent struct {
	lifecycle.Event
	Missed bool `json:",omitempty"`
}

// remoteEvent hands another node's event to this node's watchers.
func (p *controlPlane) remoteEvent(payload []byte) {
	var f forwardedEvent
	if json.Unmarshal(payload, &f) != nil || f.Node == p.self {
		return
	}
	e := f.Event
	p.mu.Lock()
	ws := make([]*clusterWatcher, 0, len(p.watchers))
	for w := range p.watchers {
		if f.Missed || !e.Type.IsMessage() || w.messages {
			ws = append(ws, w)
		}
	}
	p.mu.Unlock()
	for _, w := range ws {
		if f.Missed {
			w.end(lifecycle.ErrLagged, false)
			continue
		}
		w.deliver(e) // may end w, which takes p.mu
	}
}

// renewWatches keeps the other nodes forwarding while this node has
// watchers; called every heartbeat.
func (p *controlPlane) renewWatches(ctx context.Context) {
	p.mu.Lock()
	n, messages := len(p.watchers), false
	for w := range p.watchers {
		messages = messages || w.messages
	}
	p.mu.Unlock()
	if n == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, p.node.cfg.Heartbeat)
	defer cancel()
	_, _ = p.askOthers(ctx, opWatch, watchOp{Messages: messages}, nil)
}

// watch is server.Connection.Watch for a cluster node: this node's events
// and, once every other node acknowledged forwarding (or controlTimeout
// passed), theirs, each tagged with its node.
func (p *controlPlane) watch(buffer int, messages bool) server.EventWatcher {
	var lw *lifecycle.Watcher
	if messages {
		lw = p.local.WatchMessages(buffer)
	} else {
		lw = p.local.Watch(buffer)
	}
	w := &clusterWatcher{p: p, local: lw, messages: messages, out: make(chan lifecycle.Event, buffer), done: make(chan struct{})}
	p.mu.Lock()
	p.watchers[w] = struct{}{}
	p.mu.Unlock()
	go w.pump()
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	if _, err := p.askOthers(ctx, opWatch, watchOp{Messages: messages}, nil); err != nil {
		p.node.log.Warn("watching other nodes: some did not answer", "err", err)
	}
	return w
}

// clusterWatcher merges this node's watcher and the events other nodes
// forward into one bounded channel; when it is full the watcher ends with
// lifecycle.ErrLagged, as a local watcher does.
type clusterWatcher struct {
	p        *controlPlane
	local    *lifecycle.Watcher
	messages bool

	mu     sync.Mutex
	out    chan lifecycle.Event
	closed bool
	err    error
	done   chan struct{}
}

func (w *clusterWatcher) pump() {
	for {
		select {
		case <-w.done:
			return
		case e, ok := <-w.local.C():
			if !ok {
				w.end(w.local.Err(), true)
				return
			}
			e.Node = w.p.self
			w.deliver(e)
		}
	}
}

func (w *clusterWatcher) deliver(e lifecycle.Event) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	select {
	case w.out <- e:
		w.mu.Unlock()
	default:
		w.mu.Unlock()
		w.end(lifecycle.ErrLagged, false)
	}
}

// end closes the merged channel once with err (nil: closed by the caller).
func (w *clusterWatcher) end(err error, fromPump bool) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed, w.err = true, err
	close(w.out)
	if !fromPump {
		close(w.done)
	}
	w.mu.Unlock()
	w.p.mu.Lock()
	delete(w.p.watchers, w)
	w.p.mu.Unlock()
	w.local.Close()
}

func (w *clusterWatcher) C() <-chan lifecycle.Event { return w.out }

func (w *clusterWatcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *clusterWatcher) Close() { w.end(nil, false) }
