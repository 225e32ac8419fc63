package cluster

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/milequest/pushercm/ratelimit"
)

// takeScript is ratelimit's token bucket with burst plus its fixed window, the
// arithmetic of ratelimit.MemoryStore, in microseconds on Redis' clock (Lua
// numbers are doubles: exact for integers below 2^53, which microsecond unix
// times are and nanosecond ones are not). KEYS state hash; ARGV n, interval,
// burst, window, per window, consume (1/0). Returns {allowed, avail, window
// remaining (-1: no window), bucket wait, window wait, tat, window end, now}.
var takeLua = rueidis.NewLuaScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n, interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local window, perWindow = tonumber(ARGV[4]), tonumber(ARGV[5])
local tau = burst * interval
local st = redis.call("HMGET", KEYS[1], "t", "e", "c")
local tat = math.max(tonumber(st[1]) or 0, now)
local winEnd, count = tonumber(st[2]) or 0, tonumber(st[3]) or 0
local avail
local x = now + tau - tat
if x >= tau then avail = burst elseif x < interval then avail = 0 else avail = math.floor(x / interval) end
local bucketWait = 0
if n > avail then bucketWait = tat + n * interval - tau - now end
local winRem, windowWait = -1, 0
if window > 0 then
  if now >= winEnd then winEnd, count = now + window, 0 end
  winRem = math.max(perWindow - count, 0)
  if n > winRem then windowWait = winEnd - now end
end
local allowed = 0
if bucketWait == 0 and windowWait == 0 then
  allowed = 1
  if ARGV[6] == "1" then
    tat = tat + n * interval
    avail = avail - n
    if winRem >= 0 then count, winRem = count + n, winRem - n end
    redis.call("HSET", KEYS[1], "t", string.format("%.0f", tat), "e", string.format("%.0f", winEnd), "c", count)
    redis.call("PEXPIRE", KEYS[1], math.floor((math.max(tat, winEnd) - now) / 1000) + 1)
  end
end
return {allowed, avail, winRem, bucketWait, windowWait, tat, winEnd, now}`)

// RateStore is a ratelimit.Store in Redis, so every node draws from the same
// buckets: one script call per check, with the same decisions and figures as
// ratelimit.MemoryStore (to the microsecond: times are Redis' clock).
//
// In front of Redis, a key that Redis refused one event is refused one event
// locally until the instant Redis named, with the figures Redis would give
// (nothing can be admitted before it, and nothing is counted), so a caller far
// over its limit costs no round trip. When Redis does not answer, checks fall back to
// the node's own limits (Fallback, counted, and Degraded says so): a Redis
// outage never refuses all traffic, at the price of each node admitting up to
// the limit on its own until Redis is back.
type RateStore struct {
	client   rueidis.Client
	keys     keyspace
	name     string // limiter name, in the key
	fallback ratelimit.Store

	mu     sync.Mutex
	denied map[string]deniedUntil // the front filter

	fallbacks, filtered atomic.Uint64
	degraded            atomic.Bool
}

type deniedUntil struct {
	until time.Time
	limit int
}

// maxDenied bounds the front filter; past it, it is cleared (it only saves round
// trips, it never decides what Redis would not).
const maxDenied = 65536

// NewRateStore keeps limiter name's buckets under the cluster prefix; fallback
// (usually a ratelimit.MemoryStore) decides while Redis is unreachable.
func NewRateStore(client rueidis.Client, cfg Config, name string, fallback ratelimit.Store) *RateStore {
	cfg = cfg.WithDefaults()
	return &RateStore{client: client, keys: keyspace{cfg.Prefix}, name: name, fallback: fallback, denied: map[string]deniedUntil{}}
}

// RateStoreStats are the store's counters.
type RateStoreStats struct {
	// Fallbacks counts checks decided by the node's own limits because Redis
	// did not answer; Filtered, refusals answered without a round trip.
	Fallbacks, Filtered uint64
	// Degraded is true while the last check fell back.
	Degraded bool
}

// Stats reads the counters.
func (s *RateStore) Stats() RateStoreStats {
	return RateStoreStats{Fallbacks: s.fallbacks.Load(), Filtered: s.filtered.Load(), Degraded: s.degraded.Load()}
}

// Take implements ratelimit.Store.
func (s *RateStore) Take(ctx context.Context, key string, n int, now time.Time, r *ratelimit.Rule) (ratelimit.Decision, error) {
	if err := r.Check(n); err != nil {
		return ratelimit.Decision{}, err
	}
	if n == 1 {
		if d, ok := s.filter(key, now); ok {
			return d, nil
		}
	}
	d, err := s.run(ctx, key, n, r, true)
	if err != nil {
		s.fallbacks.Add(1)
		s.degraded.Store(true)
		return s.fallback.Take(ctx, key, n, now, r)
	}
	s.degraded.Store(false)
	if !d.Allowed && n == 1 {
		s.remember(key, d)
	}
	return d, nil
}

// Peek implements ratelimit.Store.
func (s *RateStore) Peek(ctx context.Context, key string, now time.Time, r *ratelimit.Rule) (ratelimit.Decision, error) {
	d, err := s.run(ctx, key, 1, r, false)
	if err != nil {
		s.fallbacks.Add(1)
		s.degraded.Store(true)
		return s.fallback.Peek(ctx, key, now, r)
	}
	s.degraded.Store(false)
	return d, nil
}

func (s *RateStore) filter(key string, now time.Time) (ratelimit.Decision, bool) {
	s.mu.Lock()
	e, ok := s.denied[key]
	if ok && !now.Before(e.until) {
		delete(s.denied, key)
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		return ratelimit.Decision{}, false
	}
	s.filtered.Add(1)
	return ratelimit.Decision{Limit: e.limit, RetryAfter: e.until.Sub(now), ResetTime: e.until}, true
}

func (s *RateStore) remember(key string, d ratelimit.Decision) {
	s.mu.Lock()
	if len(s.denied) >= maxDenied {
		clear(s.denied)
	}
	s.denied[key] = deniedUntil{until: d.ResetTime, limit: d.Limit}
	s.mu.Unlock()
}

func micros(d time.Duration) int64 { return int64(d / time.Microsecond) }

func (s *RateStore) run(ctx context.Context, key string, n int, r *ratelimit.Rule, consume bool) (ratelimit.Decision, error) {
	l := r.Limits()
	interval := max(micros(r.Interval()), 1)
	burst := int64(l.BurstLimit)
	var window, perWindow int64
	if l.WindowSize > 0 {
		window, perWindow = micros(l.WindowSize), int64(l.MessagesPerMinute)
	}
	c := "0"
	if consume {
		c = "1"
	}
	v, err := takeLua.Exec(ctx, s.client, []string{s.keys.rate(s.name, key)}, []string{
		strconv.Itoa(n), strconv.FormatInt(interval, 10), strconv.FormatInt(burst, 10),
		strconv.FormatInt(window, 10), strconv.FormatInt(perWindow, 10), c,
	}).AsIntSlice()
	if err == nil && len(v) != 8 {
		err = fmt.Errorf("unexpected reply %v", v)
	}
	if err != nil {
		return ratelimit.Decision{}, fmt.Errorf("%w: rate limit: %w", ErrUnavailable, err)
	}
	allowed := v[0] == 1
	avail, winRem, bucketWait, windowWait, tat, winEnd, now := v[1], v[2], v[3], v[4], v[5], v[6], v[7]
	// The decision's figures, as ratelimit.MemoryStore derives them.
	remaining := avail
	if winRem >= 0 && winRem < remaining {
		remaining = winRem
	}
	var bucketBinding bool
	var wait, reset int64
	switch {
	case !allowed:
		wait = max(bucketWait, windowWait)
		bucketBinding = winRem < 0 || bucketWait > windowWait
		reset = now + wait
	case winRem < 0 || avail < winRem:
		bucketBinding = true
		reset = now
		if avail < burst {
			reset = tat - burst*interval + (avail+1)*interval
		}
	default:
		reset = winEnd
	}
	limit := perWindow
	if bucketBinding {
		limit = burst
	}
	return ratelimit.Decision{
		Allowed:    allowed,
		Limit:      int(limit),
		Remaining:  int(remaining),
		RetryAfter: time.Duration(wait) * time.Microsecond,
		ResetTime:  time.UnixMicro(reset).UTC(),
	}, nil
}

// IdempotencyStore reserves event ids in Redis for a window, so that a retry
// through any node is a duplicate: Reserve is SET NX PX, Release is DEL. It
// satisfies delivery.IdempotencyStore. Unlike the rate limits it has no
// fallback: when Redis does not answer, Reserve fails and the publish is
// refused rather than risk a double delivery.
type IdempotencyStore struct {
	client rueidis.Client
	keys   keyspace
	window time.Duration
}

// NewIdempotencyStore remembers ids for window.
func NewIdempotencyStore(client rueidis.Client, cfg Config, window time.Duration) *IdempotencyStore {
	cfg = cfg.WithDefaults()
	return &IdempotencyStore{client: client, keys: keyspace{cfg.Prefix}, window: window}
}

// Reserve claims key for the window; false when it is already claimed.
func (s *IdempotencyStore) Reserve(ctx context.Context, key string) (bool, error) {
	err := s.client.Do(ctx, s.client.B().Set().Key(s.keys.idempotency(key)).Value("1").Nx().Px(s.window).Build()).Error()
	switch {
	case err == nil:
		return true, nil
	case rueidis.IsRedisNil(err):
		return false, nil
	}
	return false, fmt.Errorf("%w: idempotency: %w", ErrUnavailable, err)
}

// Release forgets key.
func (s *IdempotencyStore) Release(ctx context.Context, key string) error {
	if err := s.client.Do(ctx, s.client.B().Del().Key(s.keys.idempotency(key)).Build()).Error(); err != nil {
		return fmt.Errorf("%w: idempotency: %w", ErrUnavailable, err)
	}
	return nil
}
