package cluster

import (
	"context"
	"fmt"
	"runtime"
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
// times are and nanosecond ones are not). KEYS state hash; ARGV interval,
// burst, window, per window, consume (1/0), then the event count of each take,
// applied in order at one instant. Returns {now, tat, window end, count}: the
// state the takes were applied to (tat at least now, the window renewed if it
// had ended), from which ruleArgs.apply derives each take's figures with the
// same arithmetic (integers below 2^53, so Lua's doubles and Go's int64 agree):
// four numbers per call instead of seven per take, which Redis, sharing the
// node's cores, builds and sends for nothing.
//
// The hash's x field is the key's expiry (unix ms) as last set: the script
// moves it only when the state would outlive it, and then a second further,
// so a busy key is written with one HSET and no PEXPIREAT on most calls. A key
// kept longer than its state needs decides as a missing one would: its tat and
// window end are then in the past.
//
// Numbers go to HSET and PEXPIREAT as Lua numbers, not strings: Redis writes a
// number argument with all its digits (%.17g, or the shortest form that reads
// back the same on newer versions), so microsecond times are kept exactly
// without a string.format per field (which cost Redis about a microsecond each).
var takeLua = newScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local window, perWindow = tonumber(ARGV[3]), tonumber(ARGV[4])
local tau = burst * interval
local st = redis.call("HMGET", KEYS[1], "t", "e", "c", "x")
local tat = math.max(tonumber(st[1]) or 0, now)
local winEnd, count = tonumber(st[2]) or 0, tonumber(st[3]) or 0
if window > 0 and now >= winEnd then winEnd, count = now + window, 0 end
local consume, changed = ARGV[5] == "1", false
local out = {now, tat, winEnd, count}
for i = 6, #ARGV do
  local n = tonumber(ARGV[i])
  local avail
  local x = now + tau - tat
  if x >= tau then avail = burst elseif x < interval then avail = 0 else avail = math.floor(x / interval) end
  local bucketWait = 0
  if n > avail then bucketWait = tat + n * interval - tau - now end
  local winRem, windowWait = -1, 0
  if window > 0 then
    winRem = math.max(perWindow - count, 0)
    if n > winRem then windowWait = winEnd - now end
  end
  local allowed = 0
  if bucketWait == 0 and windowWait == 0 then
    allowed = 1
    if consume then
      changed = true
      tat = tat + n * interval
      avail = avail - n
      if winRem >= 0 then count, winRem = count + n, winRem - n end
    end
  end
end
if changed then
  local expiry = math.floor(math.max(tat, winEnd) / 1000) + 1
  if expiry > (tonumber(st[4]) or 0) then
    expiry = expiry + 1000
    redis.call("HSET", KEYS[1], "t", tat, "e", winEnd, "c", count, "x", expiry)
    redis.call("PEXPIREAT", KEYS[1], expiry)
  else
    redis.call("HSET", KEYS[1], "t", tat, "e", winEnd, "c", count)
  end
end
return out`)

// RateStore is a ratelimit.Store in Redis, so every node draws from the same
// buckets: one script call per check, with the same decisions and figures as
// ratelimit.MemoryStore (to the microsecond: times are Redis' clock). Checks
// of a key made while a call for it is in flight share the next call (see
// take).
//
// In front of Redis, a key that Redis refused one event is refused one event
// locally until the instant Redis named, with the figures Redis would give
// (nothing can be admitted before it, and nothing is counted), so a caller far
// over its limit costs no round trip. When Redis does not answer, checks fall back to
// the node's own limits (Fallback, counted, and Degraded says so): a Redis
// outage never refuses all traffic, at the price of each node admitting up to
// the limit on its own until Redis is back.
type RateStore struct {
	client    rueidis.Client
	keyPrefix string // the keys of limiter name's buckets start with it
	fallback  ratelimit.Store
	args      sync.Map // *ratelimit.Rule -> *ruleArgs

	mu     sync.Mutex
	denied map[string]deniedUntil // the front filter

	qmu    sync.Mutex
	queues map[string]*takeQueue // keys with a script call in flight

	// timeout bounds each check (SetTimeout); 0: the caller's context only.
	timeout time.Duration

	fallbacks, filtered, shared atomic.Uint64
	degraded                    atomic.Bool
}

// takeQueue is a key's takes waiting for its script call in flight to end:
// they then go in one call, in the order they came.
type takeQueue struct {
	r       *ratelimit.Rule
	waiting []*pendingTake
}

type pendingTake struct {
	n     int
	start time.Time // when the take began to wait (bounds its call, see runShared)
	d     ratelimit.Decision
	err   error
	done  chan struct{}
	// left is set when the waiter's context ended first: its take is not made
	// (unless its call already went out).
	left atomic.Bool
}

// maxShared bounds the takes decided in one script call, so that one call
// never holds Redis long; more waiting go in the calls after it.
const maxShared = 256

// sharedCallTimeout bounds a script call made for several waiting takes
// (each waiter still leaves when its own context ends).
const sharedCallTimeout = 5 * time.Second

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
	return &RateStore{client: client, keyPrefix: keyspace{cfg.Prefix}.rate(name, ""), fallback: fallback,
		denied: map[string]deniedUntil{}, queues: map[string]*takeQueue{}}
}

// SetTimeout bounds each check to d (0: none): a Redis that hangs then costs
// a check at most d before it falls back, never the caller's whole deadline.
// It is the same bound as a context.WithTimeout around each Take and Peek,
// without its timer for the checks that wait for a call in flight on their
// key (most of them under load): their shared call ends by the first one's
// start plus d. Call it before the store is used.
func (s *RateStore) SetTimeout(d time.Duration) { s.timeout = d }

// RateStoreStats are the store's counters.
type RateStoreStats struct {
	// Fallbacks counts checks decided by the node's own limits because Redis
	// did not answer; Filtered, refusals answered without a round trip;
	// Shared, takes that waited for a call in flight on their key and were
	// then decided in one script call with the others that waited.
	Fallbacks, Filtered, Shared uint64
	// Degraded is true while the last check fell back.
	Degraded bool
}

// Stats reads the counters.
func (s *RateStore) Stats() RateStoreStats {
	return RateStoreStats{Fallbacks: s.fallbacks.Load(), Filtered: s.filtered.Load(), Shared: s.shared.Load(), Degraded: s.degraded.Load()}
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
	d, err := s.take(ctx, key, n, r)
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
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
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

// take consumes from Redis. While a script call for key is in flight, later
// takes of key wait for it and then go together in one call, which applies
// them in arrival order at one instant of Redis' clock: each gets the decision
// it would have had alone at that instant, and a hot key (a service's
// principal) costs Redis one script run per round trip instead of one per
// take.
//
// With a timeout (SetTimeout), a take that makes its own call bounds it with
// a context; one that waits needs no timer of its own: the call in flight on
// its key began before it and ends by its own bound, and the shared call that
// follows ends by the start of its first waiter plus the timeout.
func (s *RateStore) take(ctx context.Context, key string, n int, r *ratelimit.Rule) (ratelimit.Decision, error) {
	var start time.Time
	if s.timeout > 0 {
		start = time.Now()
	}
	s.qmu.Lock()
	q, busy := s.queues[key]
	if !busy || q.r != r {
		if !busy {
			s.queues[key] = &takeQueue{r: r}
		}
		// else another rule for the same key (a limiter's overrides changed
		// under it): not batched, so each take keeps its own rule.
		s.qmu.Unlock()
		if s.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, start.Add(s.timeout))
			defer cancel()
		}
		d, err := s.run(ctx, key, n, r, true)
		if !busy {
			s.next(key)
		}
		return d, err
	}
	p := &pendingTake{n: n, start: start, done: make(chan struct{})}
	q.waiting = append(q.waiting, p)
	s.qmu.Unlock()
	s.shared.Add(1)
	select {
	case <-p.done:
		return p.d, p.err
	case <-ctx.Done():
		p.left.Store(true)
		return ratelimit.Decision{}, fmt.Errorf("%w: rate limit: %w", ErrUnavailable, ctx.Err())
	}
}

// next starts the call of the takes that waited for key's call in flight,
// or marks key idle.
func (s *RateStore) next(key string) {
	s.qmu.Lock()
	q := s.queues[key]
	if len(q.waiting) == 0 {
		delete(s.queues, key)
		s.qmu.Unlock()
		return
	}
	s.qmu.Unlock()
	go s.collect(key, q)
}

// collect takes the waiting takes of q (at most maxShared) and runs their
// call. It first yields, so that the checks already runnable on this node
// join the call rather than wait for the next one: at saturation that is
// fewer script calls for the same takes, at the price of a turn of the
// scheduler.
func (s *RateStore) collect(key string, q *takeQueue) {
	runtime.Gosched()
	s.qmu.Lock()
	batch := q.waiting
	if len(batch) > maxShared {
		batch, q.waiting = batch[:maxShared:maxShared], batch[maxShared:]
	} else {
		q.waiting = nil
	}
	s.qmu.Unlock()
	s.runShared(key, q.r, batch)
}

func (s *RateStore) runShared(key string, r *ratelimit.Rule, batch []*pendingTake) {
	// Waiters that already left are not taken for: they were answered by the
	// node's own limits. (Copied only when one left: seldom.)
	for i, p := range batch {
		if p.left.Load() {
			kept := append(make([]*pendingTake, 0, len(batch)-1), batch[:i]...)
			for _, p := range batch[i+1:] {
				if !p.left.Load() {
					kept = append(kept, p)
				}
			}
			batch = kept
			break
		}
	}
	if len(batch) == 0 {
		s.next(key)
		return
	}
	deadline := time.Now().Add(sharedCallTimeout)
	if s.timeout > 0 {
		// Each waiter's bound; the first to come has the earliest.
		deadline = batch[0].start
		for _, p := range batch[1:] {
			if p.start.Before(deadline) {
				deadline = p.start
			}
		}
		deadline = deadline.Add(s.timeout)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	err := s.runMany(ctx, key, batch, r)
	cancel()
	// The next waiters' call goes out before these are woken.
	s.next(key)
	for _, p := range batch {
		if err != nil {
			p.err = err
		}
		close(p.done)
	}
}

func micros(d time.Duration) int64 { return int64(d / time.Microsecond) }

// ruleArgs is a rule in the script's terms, formatted once per rule.
type ruleArgs struct {
	interval, burst, window, perWindow int64
	argv                               [4]string // interval, burst, window, per window
}

func (s *RateStore) ruleArgs(r *ratelimit.Rule) *ruleArgs {
	if a, ok := s.args.Load(r); ok {
		return a.(*ruleArgs)
	}
	l := r.Limits()
	a := &ruleArgs{interval: max(micros(r.Interval()), 1), burst: int64(l.BurstLimit)}
	if l.WindowSize > 0 {
		a.window, a.perWindow = micros(l.WindowSize), int64(l.MessagesPerMinute)
	}
	a.argv = [4]string{strconv.FormatInt(a.interval, 10), strconv.FormatInt(a.burst, 10),
		strconv.FormatInt(a.window, 10), strconv.FormatInt(a.perWindow, 10)}
	v, _ := s.args.LoadOrStore(r, a)
	return v.(*ruleArgs)
}

// replyLen is the script's reply: now, tat, window end, count.
const replyLen = 4

func (s *RateStore) run(ctx context.Context, key string, n int, r *ratelimit.Rule, consume bool) (ratelimit.Decision, error) {
	a := s.ruleArgs(r)
	c := "0"
	if consume {
		c = "1"
	}
	v, err := takeLua.Exec(ctx, s.client, []string{s.keyPrefix + key},
		[]string{a.argv[0], a.argv[1], a.argv[2], a.argv[3], c, strconv.Itoa(n)}).AsIntSlice()
	if err == nil && len(v) != replyLen {
		err = fmt.Errorf("unexpected reply %v", v)
	}
	if err != nil {
		return ratelimit.Decision{}, fmt.Errorf("%w: rate limit: %w", ErrUnavailable, err)
	}
	st := takeState{now: v[0], tat: v[1], winEnd: v[2], count: v[3]}
	return a.apply(&st, n, consume), nil
}

// runMany takes p.n events for each waiting take p, in order, in one script
// call, and sets each p.d.
func (s *RateStore) runMany(ctx context.Context, key string, batch []*pendingTake, r *ratelimit.Rule) error {
	a := s.ruleArgs(r)
	argv := make([]string, 0, 5+len(batch))
	argv = append(argv, a.argv[0], a.argv[1], a.argv[2], a.argv[3], "1")
	for _, p := range batch {
		argv = append(argv, strconv.Itoa(p.n))
	}
	v, err := takeLua.Exec(ctx, s.client, []string{s.keyPrefix + key}, argv).AsIntSlice()
	if err == nil && len(v) != replyLen {
		err = fmt.Errorf("unexpected reply %v", v)
	}
	if err != nil {
		return fmt.Errorf("%w: rate limit: %w", ErrUnavailable, err)
	}
	st := takeState{now: v[0], tat: v[1], winEnd: v[2], count: v[3]}
	for _, p := range batch {
		p.d = a.apply(&st, p.n, true)
	}
	return nil
}

// takeState is a key's state as the script read it, at its instant now:
// theoretical arrival time (at least now), window end and count (renewed if
// the window had ended).
type takeState struct{ now, tat, winEnd, count int64 }

// apply is the script's loop for one take of n events: what the take gets,
// and (when consume and admitted) the state the next take of the call sees.
// It must stay the script's arithmetic step for step.
func (a *ruleArgs) apply(st *takeState, n int, consume bool) ratelimit.Decision {
	interval, burst, now := a.interval, a.burst, st.now
	tau := burst * interval
	n64 := int64(n)
	var avail int64
	switch x := now + tau - st.tat; {
	case x >= tau:
		avail = burst
	case x < interval:
		avail = 0
	default:
		avail = x / interval
	}
	var bucketWait int64
	if n64 > avail {
		bucketWait = st.tat + n64*interval - tau - now
	}
	winRem, windowWait := int64(-1), int64(0)
	if a.window > 0 {
		winRem = max(a.perWindow-st.count, 0)
		if n64 > winRem {
			windowWait = st.winEnd - now
		}
	}
	var allowed int64
	if bucketWait == 0 && windowWait == 0 {
		allowed = 1
		if consume {
			st.tat += n64 * interval
			avail -= n64
			if winRem >= 0 {
				st.count += n64
				winRem -= n64
			}
		}
	}
	return a.decision(now, []int64{allowed, avail, winRem, bucketWait, windowWait, st.tat, st.winEnd})
}

// decision turns one take's reply into the figures ratelimit.MemoryStore
// derives.
func (a *ruleArgs) decision(now int64, v []int64) ratelimit.Decision {
	allowed := v[0] == 1
	avail, winRem, bucketWait, windowWait, tat, winEnd := v[1], v[2], v[3], v[4], v[5], v[6]
	burst, interval, perWindow := a.burst, a.interval, a.perWindow
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
	}
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
	err := s.client.Do(ctx, s.client.B().Set().Key(s.keys.idempotency(key)).Value("1").Nx().Px(s.window).Build().Pin()).Error()
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
	if err := s.client.Do(ctx, s.client.B().Del().Key(s.keys.idempotency(key)).Build().Pin()).Error(); err != nil {
		return fmt.Errorf("%w: idempotency: %w", ErrUnavailable, err)
	}
	return nil
}
