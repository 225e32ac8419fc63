package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/milequest/pushercm/cluster"
	"github.com/milequest/pushercm/edge"
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

	edge *edge.Server // set before run starts

	mu      sync.RWMutex
	client  rueidis.Client // nil until dialed
	broker  *cluster.Broker
	state   *cluster.State
	reg     *cluster.Registry
	pending map[string]struct{} // channels listened to before the broker existed
	lastErr error
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
	t := time.NewTicker(n.cfg.Heartbeat)
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
	if err := n.restore(ctx); err != nil {
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
		return engineParts{}, fmt.Errorf("%w: %v", cluster.ErrUnavailable, n.lastErr)
	}
	return engineParts{n.broker, n.state}, nil
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

func (n *clusterNode) Publish(ctx context.Context, channel string, payload []byte, cacheTTL time.Duration) (int64, error) {
	p, err := n.parts()
	if err != nil {
		return 0, err
	}
	r, err := p.broker.Publish(ctx, channel, payload, cluster.PublishOptions{CacheTTL: cacheTTL})
	return r.Subscriptions, err
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
	list, err := p.state.Channels(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]edge.ChannelCount, len(list))
	for i, c := range list {
		out[i] = edge.ChannelCount(c)
	}
	return out, nil
}

func (n *clusterNode) Counts(ctx context.Context, channels []string) ([]edge.ChannelCount, error) {
	p, err := n.parts()
	if err != nil {
		return nil, err
	}
	list, err := p.state.Counts(ctx, channels)
	if err != nil {
		return nil, err
	}
	out := make([]edge.ChannelCount, len(list))
	for i, c := range list {
		out[i] = edge.ChannelCount(c)
	}
	return out, nil
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
