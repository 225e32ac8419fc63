package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/milequest/pushercm/cluster"
	"github.com/milequest/pushercm/edge"
	"github.com/milequest/pushercm/edge/webhook"
	"github.com/milequest/pushercm/protocol"
)

// clusterNode is this process's part in a cluster (redis.url set): the Redis
// client, the broker, the shared state and the node registry, behind the
// edge.Cluster seam. Redis may be unreachable at start: the node starts
// anyway, refuses what needs Redis (publishes), reports why in health, and
// dials again with backoff; once connected it subscribes what its sockets
// listen to and writes back what they hold.
type clusterNode struct {
	cfg  cluster.Config
	log  *slog.Logger
	info func() cluster.NodeInfo

	edge  *edge.Server        // set before run starts
	conns *clusterConnections // cluster.maxConnections; nil without a cap

	mu      sync.RWMutex
	client  rueidis.Client // nil until dialed
	broker  *cluster.Broker
	state   *cluster.State
	reg     *cluster.Registry
	pending map[string]struct{} // channels listened to before the broker existed
	lastErr error
	nodes   int              // live nodes seen at the last heartbeat
	ctl     *cluster.Control // nil until dialed

	// plane answers and asks the other nodes' ConnectionService calls.
	plane *controlPlane

	stop context.CancelFunc
	done chan struct{}
}

func newClusterNode(cfg cluster.Config, log *slog.Logger, info func() cluster.NodeInfo) *clusterNode {
	n := &clusterNode{cfg: cfg, log: log.With("component", "cluster", "node", cfg.NodeID), info: info,
		pending: map[string]struct{}{}, lastErr: errors.New("not connected yet"), done: make(chan struct{})}
	n.plane = newControlPlane(n)
	return n
}

// control is the node's cluster.Control, nil until Redis was dialed.
func (n *clusterNode) control() *cluster.Control {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.ctl
}

// start dials Redis (retrying with backoff until it answers) and runs the
// node's loop: write back the node's state after a failed call, reap dead
// nodes.
func (n *clusterNode) start(e *edge.Server) {
	n.edge = e
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	go n.run(ctx)
}

func (n *clusterNode) run(ctx context.Context) {
	defer close(n.done)
	delay := 100 * time.Millisecond
	for {
		client, err := cluster.Dial(n.cfg)
		if err == nil {
			n.connected(client)
			break
		}
		n.setErr(err)
		n.log.Warn("redis unreachable; retrying", "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
	t := time.NewTicker(n.cfg.ReapInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.tick(ctx)
	}
}

// connected builds the engine on a dialed client.
func (n *clusterNode) connected(client rueidis.Client) {
	broker := cluster.NewBroker(client, n.cfg, func(m cluster.Message) {
		if !n.plane.receive(m) {
			n.edge.Receive(m.Channel, m.Payload)
		}
	})
	state := cluster.NewState(client, n.cfg)
	ctl := cluster.NewControl(client, n.cfg, func(ctx context.Context, payload []byte) error {
		_, err := broker.Publish(ctx, cluster.ControlChannel, payload, cluster.PublishOptions{})
		return err
	}, n.plane.handle)
	n.mu.Lock()
	n.client, n.broker, n.state, n.ctl = client, broker, state, ctl
	pending := n.pending
	n.pending = nil
	n.lastErr = nil
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ch := range pending {
		// Kept by the broker when it fails, and made on reconnect.
		_ = broker.Subscribe(ctx, ch)
	}
	// Before registering: once other nodes see this one, they may ask it.
	_ = broker.Subscribe(ctx, cluster.ControlChannel)
	_ = broker.Subscribe(ctx, eventsChannel)
	// The calls that failed before Redis answered are covered by this
	// restore: clear the edge's mark first, so that the next tick does not
	// write the state back again, racing the sockets accepted meanwhile.
	n.edge.Dirty()
	if err := n.restore(ctx); err != nil {
		n.edge.MarkDirty()
		n.log.Warn("writing back the node's state failed; retrying", "err", err)
	}
	reg := cluster.NewRegistry(client, n.cfg, n.info, func() error {
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return n.restore(rctx)
	})
	n.mu.Lock()
	n.reg = reg
	n.mu.Unlock()
	n.log.Info("connected to redis", "prefix", n.cfg.Prefix)
}

// tick writes back the node's state when a call failed, and cleans up after
// nodes that stopped heartbeating.
func (n *clusterNode) tick(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, n.cfg.Heartbeat*2)
	defer cancel()
	if n.edge.Dirty() {
		if err := n.restore(cctx); err != nil {
			n.log.Warn("writing back the node's state failed; retrying", "err", err)
		}
	}
	n.mu.RLock()
	reg, state := n.reg, n.state
	n.mu.RUnlock()
	if reg == nil {
		return
	}
	go n.plane.renewWatches(ctx)
	if err := reg.Err(); err != nil {
		n.setErr(err)
	} else {
		n.setErr(nil)
	}
	if list, err := reg.Nodes(cctx); err == nil {
		n.mu.Lock()
		n.nodes = len(list)
		n.mu.Unlock()
	}
	dead, err := reg.Reap(cctx)
	if err != nil {
		return
	}
	for _, id := range dead {
		left, err := state.CleanNode(cctx, id)
		if err != nil {
			n.log.Warn("cleaning up a dead node failed; another node will retry", "dead", id, "err", err)
			continue
		}
		n.edge.NodeGone(cctx, cleanups(left))
		if err := reg.Bury(cctx, id); err != nil {
			n.log.Warn("burying a dead node failed", "dead", id, "err", err)
			continue
		}
		n.log.Info("removed a dead node", "dead", id, "channels", len(left))
	}
}

func cleanups(left []cluster.Cleanup) []edge.Cleanup {
	out := make([]edge.Cleanup, len(left))
	for i, c := range left {
		out[i] = edge.Cleanup{Channel: c.Channel, Vacated: c.Vacated, Removed: c.Removed}
	}
	return out
}

// restore writes back everything this node's sockets hold.
func (n *clusterNode) restore(ctx context.Context) error {
	st, err := n.parts()
	if err != nil {
		return err
	}
	snap := n.edge.Snapshot()
	chans := make([]cluster.LocalChannel, len(snap))
	for i, lc := range snap {
		chans[i] = cluster.LocalChannel{Name: lc.Name, Subscriptions: lc.Subscriptions}
		for _, m := range lc.Members {
			chans[i].Members = append(chans[i].Members, cluster.LocalMember{UserID: m.UserID, Sockets: m.Sockets, Info: m.Info})
		}
	}
	if err := st.state.Restore(ctx, chans); err != nil {
		n.setErr(err)
		return err
	}
	for uid, units := range n.edge.UserSubscriptions() {
		if err := st.state.RestoreCounter(ctx, edge.UserSubscriptionsCounter(uid), units); err != nil {
			n.setErr(err)
			return err
		}
	}
	if n.conns != nil {
		if err := n.conns.restore(ctx, st.state, int(n.edge.Stats().ConnectionsActive)); err != nil {
			n.setErr(err)
			return err
		}
	}
	return nil
}

// close removes the node from the cluster: after the edge drained, what its
// sockets held is cleaned up and announced, then it leaves the registry.
func (n *clusterNode) close(ctx context.Context) error {
	if n.stop != nil {
		n.stop()
		<-n.done
	}
	n.mu.Lock()
	client, broker, state, reg := n.client, n.broker, n.state, n.reg
	n.mu.Unlock()
	if client == nil {
		return nil
	}
	if left, err := state.CleanNode(ctx, n.cfg.NodeID); err == nil {
		n.edge.NodeGone(ctx, cleanups(left))
	}
	if reg != nil {
		_ = reg.Close(ctx)
	}
	broker.Close()
	client.Close()
	return nil
}

func (n *clusterNode) setErr(err error) {
	n.mu.Lock()
	n.lastErr = err
	n.mu.Unlock()
}

// Err is why Redis is not usable now, nil when it is.
func (n *clusterNode) Err() error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.lastErr != nil {
		return n.lastErr
	}
	if n.broker != nil {
		if st := n.broker.Stats(); !st.Up {
			return fmt.Errorf("pub/sub connection down: %s", st.LastError)
		}
	}
	return nil
}

type engineParts struct {
	broker *cluster.Broker
	state  *cluster.State
}

func (n *clusterNode) parts() (engineParts, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.broker == nil {
		return engineParts{}, fmt.Errorf("%w: %w", cluster.ErrUnavailable, n.lastErr)
	}
	return engineParts{n.broker, n.state}, nil
}

// redisClient is the dialed client, nil before the first dial succeeded.
func (n *clusterNode) redisClient() rueidis.Client {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.client
}

// nodeInfo is what this node says of itself in the registry.
func (a *App) nodeInfo() cluster.NodeInfo {
	return cluster.NodeInfo{
		ID: a.cluster.cfg.NodeID, Version: Version,
		GRPCAddr: a.GRPCAddr(), HTTPAddr: a.HTTPAddr(), OpsAddr: a.OpsAddr(),
		Connections: int(a.edge.Stats().ConnectionsActive), StartedAt: a.started,
	}
}

// The edge.Cluster seam.

func (n *clusterNode) Publish(ctx context.Context, channel string, payload []byte, cacheTTL time.Duration) (edge.Published, error) {
	p, err := n.parts()
	if err != nil {
		return edge.Published{}, err
	}
	r, err := p.broker.Publish(ctx, channel, payload, cluster.PublishOptions{CacheTTL: cacheTTL})
	return edge.Published{Subscriptions: r.Subscriptions, Hold: r.Hold}, err
}

func (n *clusterNode) Congested(ctx context.Context, channel string, ttl time.Duration) error {
	p, err := n.parts()
	if err != nil {
		return err
	}
	return p.broker.SetCongested(ctx, channel, ttl)
}

func (n *clusterNode) Uncongested(ctx context.Context, channel string) error {
	p, err := n.parts()
	if err != nil {
		return err
	}
	return p.broker.ClearCongested(ctx, channel)
}

func (n *clusterNode) Hold(ctx context.Context, channel string) (time.Duration, error) {
	p, err := n.parts()
	if err != nil {
		return 0, err
	}
	return p.broker.Congestion(ctx, channel)
}

func (n *clusterNode) Cached(ctx context.Context, channel string) ([]byte, error) {
	p, err := n.parts()
	if err != nil {
		return nil, err
	}
	return p.broker.Cached(ctx, channel)
}

func (n *clusterNode) Listen(ctx context.Context, channel string) error {
	n.mu.Lock()
	if n.broker == nil {
		n.pending[channel] = struct{}{}
		n.mu.Unlock()
		return fmt.Errorf("%w: not connected yet", cluster.ErrUnavailable)
	}
	b := n.broker
	n.mu.Unlock()
	return b.Subscribe(ctx, channel)
}

func (n *clusterNode) Unlisten(ctx context.Context, channel string) error {
	n.mu.Lock()
	if n.broker == nil {
		delete(n.pending, channel)
		n.mu.Unlock()
		return nil
	}
	b := n.broker
	n.mu.Unlock()
	return b.Unsubscribe(ctx, channel)
}

func (n *clusterNode) Subscribed(ctx context.Context, channel string) (bool, error) {
	p, err := n.parts()
	if err != nil {
		return false, err
	}
	return p.state.Subscribed(ctx, channel)
}

func (n *clusterNode) Unsubscribed(ctx context.Context, channel string) (bool, error) {
	p, err := n.parts()
	if err != nil {
		return false, err
	}
	return p.state.Unsubscribed(ctx, channel)
}

func (n *clusterNode) Join(ctx context.Context, channel, userID string, info []byte, maxMembers int) (bool, error) {
	p, err := n.parts()
	if err != nil {
		return false, err
	}
	added, err := p.state.Join(ctx, channel, userID, info, maxMembers)
	if errors.Is(err, cluster.ErrMemberLimit) {
		return false, fmt.Errorf("%w: %w", edge.ErrLimit, err)
	}
	return added, err
}

func (n *clusterNode) Leave(ctx context.Context, channel, userID string) (bool, error) {
	p, err := n.parts()
	if err != nil {
		return false, err
	}
	return p.state.Leave(ctx, channel, userID)
}

func (n *clusterNode) Members(ctx context.Context, channel string) ([]protocol.Member, error) {
	p, err := n.parts()
	if err != nil {
		return nil, err
	}
	ms, err := p.state.Members(ctx, channel)
	if err != nil {
		return nil, err
	}
	out := make([]protocol.Member, len(ms))
	for i, m := range ms {
		out[i] = protocol.Member{UserID: m.UserID, UserInfo: m.Info}
	}
	return out, nil
}

func (n *clusterNode) Channels(ctx context.Context, prefix string) ([]edge.ChannelCount, error) {
	p, err := n.parts()
	if err != nil {
		return nil, err
	}
	return edgeCounts(p.state.Channels(ctx, prefix))
}

func (n *clusterNode) Counts(ctx context.Context, channels []string) ([]edge.ChannelCount, error) {
	p, err := n.parts()
	if err != nil {
		return nil, err
	}
	return edgeCounts(p.state.Counts(ctx, channels))
}

// edgeCounts converts the cluster's channel counts to the edge's.
func edgeCounts(list []cluster.ChannelCount, err error) ([]edge.ChannelCount, error) {
	if err != nil {
		return nil, err
	}
	out := make([]edge.ChannelCount, len(list))
	for i, c := range list {
		out[i] = edge.ChannelCount(c)
	}
	return out, nil
}

func (n *clusterNode) Acquire(ctx context.Context, counter string, limit int) (bool, error) {
	p, err := n.parts()
	if err != nil {
		return false, err
	}
	return p.state.Acquire(ctx, counter, limit)
}

func (n *clusterNode) Release(ctx context.Context, counter string) error {
	p, err := n.parts()
	if err != nil {
		return err
	}
	return p.state.Release(ctx, counter)
}

// Nodes lists the cluster's live nodes.
func (n *clusterNode) Nodes(ctx context.Context) ([]cluster.NodeInfo, error) {
	n.mu.RLock()
	reg := n.reg
	n.mu.RUnlock()
	if reg == nil {
		return nil, fmt.Errorf("%w: not connected yet", cluster.ErrUnavailable)
	}
	return reg.Nodes(ctx)
}

// stats are the node's cluster figures for metrics and health.
type clusterStats struct {
	Up                                         bool
	Nodes                                      int
	Errors, Reconnects, Refused, Dropped, Lost uint64
	Replaced                                   uint64
}

func (n *clusterNode) stats() clusterStats {
	st := clusterStats{Up: n.Err() == nil, Errors: n.edge.ClusterFailures()}
	n.mu.RLock()
	broker := n.broker
	st.Nodes = n.nodes
	n.mu.RUnlock()
	if broker != nil {
		b := broker.Stats()
		st.Errors += b.PublishErrors
		st.Reconnects, st.Refused, st.Dropped, st.Lost = b.Reconnects, b.PublishErrors, b.Dropped, b.Lost
		st.Replaced = b.Recycles
	}
	return st
}

// clusterCollectors are the cluster's metrics, read from the live figures
// at scrape time.
func (n *clusterNode) collectors() []prometheus.Collector {
	gauge := func(name, help string, f func(clusterStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(n.stats()) })
	}
	counter := func(name, help string, f func(clusterStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(n.stats())) })
	}
	return []prometheus.Collector{
		gauge("pushercm_cluster_redis_up", "1 while the node reaches Redis (commands and pub/sub), 0 otherwise.", func(s clusterStats) float64 {
			if s.Up {
				return 1
			}
			return 0
		}),
		gauge("pushercm_cluster_nodes", "Live nodes of the cluster seen at the last heartbeat, this one included.", func(s clusterStats) float64 { return float64(s.Nodes) }),
		counter("pushercm_cluster_redis_errors_total", "Redis calls that failed: refused publishes and socket-side calls (subscribe, leave, join, sign-in).", func(s clusterStats) uint64 { return s.Errors }),
		counter("pushercm_cluster_reconnects_total", "Times the pub/sub connection to Redis was made again after it broke.", func(s clusterStats) uint64 { return s.Reconnects }),
		counter("pushercm_cluster_pubsub_replaced_total", "Times the pub/sub connection was replaced to shed the channels no local socket watches any more (the node never sends UNSUBSCRIBE).", func(s clusterStats) uint64 { return s.Replaced }),
		counter("pushercm_cluster_publish_refused_total", "Publishes refused because Redis did not confirm them (answered UNAVAILABLE / CONNECTION_FAILED; delivered to nobody).", func(s clusterStats) uint64 { return s.Refused }),
		counter("pushercm_cluster_messages_dropped_total", "Messages from Redis that overflowed the node's queue (cluster.queueSize) and were caught up from the channel's history.", func(s clusterStats) uint64 { return s.Dropped }),
		counter("pushercm_cluster_messages_lost_total", "Messages this node's subscribers missed because the channel's history (cluster.historySize) no longer held them.", func(s clusterStats) uint64 { return s.Lost }),
	}
}

// leaveStands is the webhook sender's Confirm on a node of a cluster: a held
// channel_vacated or member_removed is sent only if the channel is still
// empty, or the member still gone, across the cluster when its leave delay
// ends. A rejoin on another node within the delay has sent its own
// channel_occupied or member_added from there, so this leave, sent after
// it, would leave the receiver believing the channel empty. When Redis does
// not answer, the leave is sent, as without a cluster.
func (a *App) leaveStands(e webhook.Event) bool {
	n := a.cluster
	if n == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisCheckTimeout)
	defer cancel()
	switch e.Name {
	case webhook.ChannelVacated:
		counts, err := n.Counts(ctx, []string{e.Channel})
		return err != nil || len(counts) == 0 || counts[0].Subscriptions == 0
	case webhook.MemberRemoved:
		members, err := n.Members(ctx, e.Channel)
		if err != nil {
			return true
		}
		for _, m := range members {
			if m.UserID == e.UserID {
				return false
			}
		}
	}
	return true
}
