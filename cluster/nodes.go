package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// NodeInfo is what a node says of itself in its registration.
type NodeInfo struct {
	ID          string    `json:"id"`
	Version     string    `json:"version,omitempty"`
	GRPCAddr    string    `json:"grpcAddr,omitempty"`
	HTTPAddr    string    `json:"httpAddr,omitempty"`
	OpsAddr     string    `json:"opsAddr,omitempty"`
	Connections int       `json:"connections"`
	StartedAt   time.Time `json:"startedAt"`
	// LastHeartbeat is Redis' clock at the node's last heartbeat.
	LastHeartbeat time.Time `json:"lastHeartbeat"`
}

// Registry keeps this node registered while it runs and tells which nodes are
// alive. A node that stops heartbeating counts as alive for Config.NodeTTL, then
// Reap hands its id to exactly one caller, so that its leftovers are cleaned up
// once.
type Registry struct {
	client rueidis.Client
	keys   keyspace
	cfg    Config
	info   func() NodeInfo
	// rejoined is called (from the heartbeat) when a beat after the first finds
	// the node unregistered: Redis lost its data, or the node was taken for dead.
	// It is called again at every beat until it succeeds.
	rejoined func() error
	beats    int
	rejoin   bool

	mu      sync.Mutex
	lastErr error

	stop context.CancelFunc
	done chan struct{}
}

// beatScript: KEYS nodes, node; ARGV ttl ms, id, info JSON without the
// heartbeat time. Time is Redis' own, so nodes' clocks never disagree. Returns 1
// when the node was not registered (its first beat, or Redis lost it).
const beatScript = `
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local new = redis.call("ZADD", KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
redis.call("SET", KEYS[2], ARGV[3], "PX", ARGV[1])
return new`

// reapScript: KEYS nodes, dead; ARGV claim key prefix, claim ttl ms, claimer.
// Moves the nodes whose registration expired to the dead set, then claims for
// the caller every dead node nobody is cleaning, and returns those.
const reapScript = `
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now)
for _, id in ipairs(ids) do
  redis.call("ZREM", KEYS[1], id)
  redis.call("SADD", KEYS[2], id)
end
local claimed = {}
for _, id in ipairs(redis.call("SMEMBERS", KEYS[2])) do
  if redis.call("SET", ARGV[1] .. id .. ":claim", ARGV[3], "NX", "PX", ARGV[2]) then
    table.insert(claimed, id)
  end
end
return claimed`

// buryScript: KEYS dead, claim, node channels; ARGV id.
const buryScript = `
redis.call("SREM", KEYS[1], ARGV[1])
redis.call("DEL", KEYS[2], KEYS[3])
return 1`

var (
	beatLua = newScript(beatScript)
	reapLua = newScript(reapScript)
	buryLua = newScript(buryScript)
)

// NewRegistry registers the node now (an error is kept and retried by the
// heartbeat) and keeps it registered every Config.Heartbeat until Close.
// rejoined, when not nil, is called from the heartbeat whenever the node finds
// itself unregistered after its first successful beat: Redis lost its data, or
// the node was taken for dead and cleaned. The node then restores what it holds
// (State.Restore; the Broker resubscribes by itself). An error makes the next
// beats call it again until it succeeds.
func NewRegistry(client rueidis.Client, cfg Config, info func() NodeInfo, rejoined func() error) *Registry {
	cfg = cfg.WithDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{client: client, keys: keyspace{cfg.Prefix}, cfg: cfg, info: info, rejoined: rejoined, stop: cancel, done: make(chan struct{})}
	go r.run(ctx)
	return r
}

func (r *Registry) run(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.cfg.Heartbeat)
	defer t.Stop()
	for {
		_ = r.Beat(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Beat refreshes the registration once.
func (r *Registry) Beat(ctx context.Context) error {
	info := r.info()
	info.ID = r.cfg.NodeID
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	added, err := beatLua.Exec(ctx, r.client, []string{r.keys.nodes(), r.keys.node(r.cfg.NodeID)},
		[]string{strconv.FormatInt(r.expiry().Milliseconds(), 10), r.cfg.NodeID, string(b)}).AsInt64()
	r.mu.Lock()
	r.lastErr = err
	if err == nil {
		if added == 1 && r.beats > 0 && r.rejoined != nil {
			r.rejoin = true
		}
		r.beats++
	}
	rejoin := r.rejoin
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: heartbeat: %w", ErrUnavailable, err)
	}
	if rejoin {
		if err := r.rejoined(); err != nil {
			return fmt.Errorf("%w: rejoin: %w", ErrUnavailable, err)
		}
		r.mu.Lock()
		r.rejoin = false
		r.mu.Unlock()
	}
	return nil
}

// expiry is how long a beat keeps the node registered: NodeTTL less half a
// heartbeat, so that a reaper checking every half heartbeat (ReapInterval)
// finds a dead node within NodeTTL of its last beat, while a live node has
// NodeTTL - 1.5 heartbeats (at least half a heartbeat) of slack for a late
// beat.
func (r *Registry) expiry() time.Duration { return r.cfg.NodeTTL - r.cfg.Heartbeat/2 }

// ReapInterval is how often the nodes should call Reap so that a dead node
// is cleaned up within NodeTTL.
func (c Config) ReapInterval() time.Duration { return c.WithDefaults().Heartbeat / 2 }

// Err is the last heartbeat's error, nil when it reached Redis.
func (r *Registry) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// Nodes lists the live nodes, sorted by id, each with its last heartbeat's time.
func (r *Registry) Nodes(ctx context.Context) ([]NodeInfo, error) {
	scores, err := r.client.Do(ctx, r.client.B().Zrange().Key(r.keys.nodes()).Min("0").Max("-1").Withscores().Build().Pin()).AsZScores()
	if err != nil {
		return nil, fmt.Errorf("%w: nodes: %w", ErrUnavailable, err)
	}
	if len(scores) == 0 {
		return nil, nil
	}
	keys := make([]string, len(scores))
	for i, s := range scores {
		keys[i] = r.keys.node(s.Member)
	}
	vals, err := r.client.Do(ctx, r.client.B().Mget().Key(keys...).Build().Pin()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("%w: nodes: %w", ErrUnavailable, err)
	}
	var out []NodeInfo
	for i, v := range vals {
		s, err := v.ToString()
		if err != nil {
			continue // expired: not alive, waiting for Reap
		}
		var n NodeInfo
		if json.Unmarshal([]byte(s), &n) != nil {
			continue
		}
		n.ID = scores[i].Member
		n.LastHeartbeat = time.UnixMilli(int64(scores[i].Score) - r.expiry().Milliseconds()).UTC()
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b NodeInfo) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out, nil
}

// Reap declares dead the nodes whose registration expired and returns the dead
// nodes this caller must clean up (State.CleanNode), then Bury. A dead node is
// handed to one caller at a time: to another only if the first neither buried it
// within Config.NodeTTL (it died too, or lost Redis) — cleaning is idempotent.
func (r *Registry) Reap(ctx context.Context) ([]string, error) {
	ids, err := reapLua.Exec(ctx, r.client, []string{r.keys.nodes(), r.keys.dead()},
		[]string{r.keys.prefix + ":{nodes}:", strconv.FormatInt(r.cfg.NodeTTL.Milliseconds(), 10), r.cfg.NodeID}).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("%w: reap: %w", ErrUnavailable, err)
	}
	return ids, nil
}

// Bury ends a dead node's clean-up.
func (r *Registry) Bury(ctx context.Context, id string) error {
	err := buryLua.Exec(ctx, r.client, []string{r.keys.dead(), r.keys.claim(id), r.keys.nodeChannels(id)}, []string{id}).Error()
	if err != nil {
		return fmt.Errorf("%w: bury %s: %w", ErrUnavailable, id, err)
	}
	return nil
}

// Close stops heartbeating and, when Redis answers, removes the registration at
// once (a goodbye), so the node is gone without waiting for NodeTTL.
func (r *Registry) Close(ctx context.Context) error {
	r.stop()
	<-r.done
	cmds := rueidis.Commands{
		r.client.B().Zrem().Key(r.keys.nodes()).Member(r.cfg.NodeID).Build().Pin(),
		r.client.B().Del().Key(r.keys.node(r.cfg.NodeID)).Build().Pin(),
	}
	for _, res := range r.client.DoMulti(ctx, cmds...) {
		if err := res.Error(); err != nil {
			return fmt.Errorf("%w: goodbye: %w", ErrUnavailable, err)
		}
	}
	return nil
}
