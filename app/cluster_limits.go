package app

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/milequest/pushercm/cluster"
	"github.com/milequest/pushercm/ratelimit"
)

// redisCheckTimeout bounds one Redis call made on a request's path (a rate
// check, a connection slot): past it the node decides on its own, so a Redis
// that hangs costs each call at most this, never the caller's whole deadline.
const redisCheckTimeout = 500 * time.Millisecond

// clusterRateStore is a gRPC limiter's store in cluster mode
// (rateLimit.store: redis): a cluster.RateStore once the node has dialed
// Redis, the node's own MemoryStore before that and whenever Redis does not
// answer. A Redis outage never refuses all traffic: each node then admits up
// to the limit on its own, and health and pushercm_rate_limit_fallbacks_total
// say so.
type clusterRateStore struct {
	node  *clusterNode
	name  string
	mem   *ratelimit.MemoryStore
	redis atomic.Pointer[cluster.RateStore]

	// Checks decided by mem because the node had not dialed Redis yet.
	early      atomic.Uint64
	earlyStale atomic.Bool // the last check was one of them
}

func newClusterRateStore(node *clusterNode, name string) *clusterRateStore {
	return &clusterRateStore{node: node, name: name, mem: ratelimit.NewMemoryStore()}
}

// shared is the Redis store, built on first use after the node dialed; nil
// before.
func (s *clusterRateStore) shared() *cluster.RateStore {
	if r := s.redis.Load(); r != nil {
		return r
	}
	client := s.node.redisClient()
	if client == nil {
		return nil
	}
	rs := cluster.NewRateStore(client, s.node.cfg, s.name, s.mem)
	rs.SetTimeout(redisCheckTimeout)
	s.redis.CompareAndSwap(nil, rs)
	return s.redis.Load()
}

// Take implements ratelimit.Store.
func (s *clusterRateStore) Take(ctx context.Context, key string, n int, now time.Time, r *ratelimit.Rule) (ratelimit.Decision, error) {
	rs := s.shared()
	if rs == nil {
		s.early.Add(1)
		s.earlyStale.Store(true)
		return s.mem.Take(ctx, key, n, now, r)
	}
	s.earlyStale.Store(false)
	return rs.Take(ctx, key, n, now, r) // bounded by redisCheckTimeout (SetTimeout)
}

// Peek implements ratelimit.Store.
func (s *clusterRateStore) Peek(ctx context.Context, key string, now time.Time, r *ratelimit.Rule) (ratelimit.Decision, error) {
	rs := s.shared()
	if rs == nil {
		return s.mem.Peek(ctx, key, now, r)
	}
	return rs.Peek(ctx, key, now, r)
}

// Sweep reclaims the fallback's idle buckets (Set.Run calls it).
func (s *clusterRateStore) Sweep(now time.Time) int { return s.mem.Sweep(now) }

// fallbacks counts the checks the node's own limits decided.
func (s *clusterRateStore) fallbacks() uint64 {
	n := s.early.Load()
	if rs := s.redis.Load(); rs != nil {
		n += rs.Stats().Fallbacks
	}
	return n
}

// degraded is true while the last check fell back.
func (s *clusterRateStore) degraded() bool {
	if rs := s.redis.Load(); rs != nil && !s.earlyStale.Load() {
		return rs.Stats().Degraded
	}
	return s.earlyStale.Load()
}

// clusterRateStores are the limiters' stores by limiter name.
type clusterRateStores map[string]*clusterRateStore

// option makes NewSet give every limiter its clusterRateStore.
func (m clusterRateStores) option(node *clusterNode) ratelimit.Option {
	return ratelimit.WithStore(func(name string) ratelimit.Store {
		s := newClusterRateStore(node, name)
		m[name] = s
		return s
	})
}

// fallingBack names the limiters whose last check fell back, sorted.
func (m clusterRateStores) fallingBack() []string {
	var out []string
	for name, s := range m {
		if s.degraded() {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// clusterIdempotency reserves event ids in Redis (a cluster.IdempotencyStore)
// so a retry through any node is a duplicate. It has no fallback: before the
// node dialed, or when Redis does not answer, Reserve fails and the publish
// is refused (UNAVAILABLE / CONNECTION_FAILED), never delivered twice.
type clusterIdempotency struct {
	node   *clusterNode
	window time.Duration
	store  atomic.Pointer[cluster.IdempotencyStore]
}

func (s *clusterIdempotency) shared() (*cluster.IdempotencyStore, error) {
	if st := s.store.Load(); st != nil {
		return st, nil
	}
	client := s.node.redisClient()
	if client == nil {
		return nil, fmt.Errorf("%w: idempotency: not connected to redis yet", cluster.ErrUnavailable)
	}
	s.store.CompareAndSwap(nil, cluster.NewIdempotencyStore(client, s.node.cfg, s.window))
	return s.store.Load(), nil
}

// Reserve implements delivery.IdempotencyStore.
func (s *clusterIdempotency) Reserve(ctx context.Context, key string) (bool, error) {
	st, err := s.shared()
	if err != nil {
		return false, err
	}
	return st.Reserve(ctx, key)
}

// Release implements delivery.IdempotencyStore.
func (s *clusterIdempotency) Release(ctx context.Context, key string) error {
	st, err := s.shared()
	if err != nil {
		return err
	}
	return st.Release(ctx, key)
}

// connectionsCounter is the cluster counter of open sockets.
const connectionsCounter = "connections"

// clusterConnections is the edge's ConnectionPool for cluster.maxConnections:
// one script call per accepted socket (State.Acquire), no call to the other
// nodes; a dead node's units are released by CleanNode within cluster.nodeTtl.
//
// When Redis does not answer the socket is admitted (the node's own
// edge.maxConnections still caps it): sockets are what the node serves
// without Redis. Such sockets hold no unit, so held counts the units this
// node holds and a release without one costs nothing.
type clusterConnections struct {
	node *clusterNode
	max  int
	held atomic.Int64
}

// AcquireConnection implements edge.ConnectionPool.
func (c *clusterConnections) AcquireConnection() bool {
	p, err := c.node.parts()
	if err != nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisCheckTimeout)
	defer cancel()
	ok, err := p.state.Acquire(ctx, connectionsCounter, c.max)
	switch {
	case err != nil:
		c.node.log.Warn("cluster connection cap not checked: redis did not answer; admitting", "err", err)
		return true
	case ok:
		c.held.Add(1)
	}
	return ok
}

// ReleaseConnection implements edge.ConnectionPool. The Redis call runs in
// its own goroutine: this is called on the event loop.
func (c *clusterConnections) ReleaseConnection() {
	for {
		h := c.held.Load()
		if h <= 0 {
			return
		}
		if c.held.CompareAndSwap(h, h-1) {
			break
		}
	}
	p, err := c.node.parts()
	if err != nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// After the node closed its client (shutdown) CleanNode has released
		// everything anyway.
		if err := p.state.Release(ctx, connectionsCounter); err != nil && !errors.Is(err, rueidis.ErrClosing) {
			c.node.log.Warn("releasing a cluster connection slot failed", "err", err)
		}
	}()
}

// restore writes back the node's units after Redis lost them or the node was
// cleaned as dead while it ran: one per open socket (sockets admitted while
// Redis was down are counted again from here on).
func (c *clusterConnections) restore(ctx context.Context, state *cluster.State, open int) error {
	c.held.Store(int64(open))
	return state.RestoreCounter(ctx, connectionsCounter, open)
}
