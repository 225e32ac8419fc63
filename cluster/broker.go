package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// ErrUnavailable wraps every failure to reach Redis: the publication was not
// accepted, and the caller must say so (it is never accepted and then dropped).
var ErrUnavailable = errors.New("cluster: redis unavailable")

// Message is one publication as a node receives it.
type Message struct {
	Channel string
	// Seq numbers the channel's publications from 1 within one history epoch.
	Seq uint64
	// Payload is what the publisher passed, untouched.
	Payload []byte
	// Recovered is true when the message came from the history rather than
	// live pub/sub (after a reconnect or a local queue overflow).
	Recovered bool
}

// Handler receives a node's messages: from one goroutine, in each channel's
// publish order, each at most once. It must not block for long: it holds up
// every channel behind it.
type Handler func(Message)

// BrokerStats are the broker's counters since it started.
type BrokerStats struct {
	Published, PublishErrors uint64
	// Received counts messages handed to the Handler; Recovered is the part of
	// them that came from the history.
	Received, Recovered uint64
	// Dropped counts messages that did not fit the local queue (then caught up
	// from the history); Lost, messages the history no longer had, which no
	// local subscriber received.
	Dropped, Lost uint64
	Reconnects    uint64
	// Recycles counts pub/sub connections replaced to shed stale subscriptions
	// (see Unsubscribe); Stale is how many the current one holds.
	Recycles   uint64
	Stale      int
	Up         bool
	LastError  string
	Subscribed int
}

// Broker fans publications out through Redis: one script call per publish
// (sequence, history, PUBLISH, or SPUBLISH on Redis Cluster), one pub/sub
// subscription per channel that has local subscribers, restored with the
// missed messages after a reconnect.
type Broker struct {
	client  rueidis.Client
	keys    keyspace
	cfg     Config
	handler Handler
	publish *script
	// clearCongested deletes a channel's congested key if this node set it.
	clearCongested *script
	// epoch and epochs make the id offered when a channel's history starts:
	// unique to this broker and this publish, so a history recreated after it
	// was lost (a Redis restart, an expiry) never reuses an old epoch.
	epoch  string
	epochs atomic.Uint64

	mu   sync.Mutex
	subs map[string]*subState
	conn rueidis.DedicatedClient // nil while disconnected
	// stale counts channels unsubscribed locally that conn still receives: the
	// broker never sends UNSUBSCRIBE (see Unsubscribe) and replaces conn once
	// they are many (recycle).
	stale   int
	recycle chan struct{}

	// On Redis Cluster (sharded pub/sub, see sharded.go) conn and stale are
	// unused: slots maps slots to masters, shards holds the connection to each
	// master that carries channels, on the connection each channel is
	// subscribed on. refresh asks for slots to be read again.
	sharded bool
	slots   []slotRange
	shards  map[string]*shard
	on      map[string]*shard
	refresh atomic.Bool

	queue chan item
	dirty struct {
		sync.Mutex
		set map[string]struct{}
	}

	published, publishErrors, received, recovered, dropped, lost, reconnects, recycles atomic.Uint64
	up                                                                                 atomic.Bool
	lastErr                                                                            atomic.Value // string

	stop context.CancelFunc
	done sync.WaitGroup
}

// subState is where a channel's delivery stands. Only the worker changes it once
// based is set; Subscribe sets the first baseline (see base), unless a live
// message arrives first.
type subState struct {
	based bool   // the baseline is known: epoch and last are meaningful
	epoch string // "" while the channel has no history
	last  uint64 // the last seq delivered or skipped as before the baseline
}

// item is a live pub/sub message (topic, payload) or a request to catch a
// channel up to its history's head (sync).
type item struct {
	topic, payload string
	sync           string
}

// NewBroker starts a broker on client; handler gets every message of the
// channels subscribed. Close stops it.
func NewBroker(client rueidis.Client, cfg Config, handler Handler) *Broker {
	cfg = cfg.WithDefaults()
	var e [8]byte
	_, _ = rand.Read(e[:])
	b := &Broker{
		client:         client,
		keys:           keyspace{cfg.Prefix},
		cfg:            cfg,
		handler:        handler,
		sharded:        client.Mode() == rueidis.ClientModeCluster,
		clearCongested: newScript(clearCongestedScript),
		epoch:          hex.EncodeToString(e[:]),
		subs:           map[string]*subState{},
		shards:         map[string]*shard{},
		on:             map[string]*shard{},
		recycle:        make(chan struct{}, 1),
		queue:          make(chan item, cfg.QueueSize),
	}
	b.publish = newScript(publishScript(b.sharded))
	b.dirty.set = map[string]struct{}{}
	b.lastErr.Store("")
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	b.done.Add(2)
	if b.sharded {
		go b.runSharded(ctx)
	} else {
		go b.run(ctx)
	}
	go b.work(ctx)
	return b
}

// Close stops receiving and releases the pub/sub connection.
func (b *Broker) Close() {
	b.stop()
	b.done.Wait()
}

// publishScript: KEYS meta, log, occupancy, cache, congested; ARGV topic,
// payload, epoch offered, history size, history ttl (s), cache ttl (ms, 0 =
// not a cache channel). Returns {seq, nodes that received it, subscriptions
// across the cluster, the congested key's PTTL (negative: none)}. On Redis
// Cluster it publishes with SPUBLISH: the topic has the keys' hash tag, so it
// is in the script's slot and reaches only that shard.
//
// A channel's numbering continues across epochs but one: when its meta hash is
// gone (never published, expired, or Redis came back empty) the history starts
// again from 1 under a new epoch, and the log is dropped. Otherwise the script
// starts a new epoch when the Redis process that runs it has not written the
// channel since it started or last saved (the hash holds no epoch under a field
// named after the process's LASTSAVE): such a process may be a restart from an
// older snapshot, or a replica promoted before it had the last writes, and then
// it lacks publishes that nodes have delivered, whose numbers its next
// publishes would reuse.
// An epoch is the offered id, "~", the last number the history held when it
// began (0 when it started again) and "~", Redis' clock then in microseconds
// (see epochOf): nodes take what follows its base as new, whatever they
// delivered before, and tell an epoch from an older one restored with a
// snapshot by its clock. After an ordinary save the new epoch changes nothing.
func publishScript(sharded bool) string {
	publish := "PUBLISH"
	if sharded {
		publish = "SPUBLISH"
	}
	return `
local saved = "e" .. redis.call("LASTSAVE")
local epoch = redis.call("HGET", KEYS[1], saved)
if not epoch then
  local meta = redis.call("HMGET", KEYS[1], "epoch", "seq", "saved")
  local base = "0"
  if meta[1] then
    base = meta[2] or "0"
    if meta[3] then
      redis.call("HDEL", KEYS[1], meta[3])
    end
  else
    redis.call("DEL", KEYS[2])
  end
  local t = redis.call("TIME")
  epoch = ARGV[3] .. "~" .. base .. "~" .. t[1] .. string.format("%06d", tonumber(t[2]))
  redis.call("HSET", KEYS[1], "epoch", epoch, "saved", saved, saved, epoch)
end
local seq = redis.call("HINCRBY", KEYS[1], "seq", 1)
redis.call("EXPIRE", KEYS[1], ARGV[5])
if tonumber(ARGV[4]) > 0 then
  redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[4], "0-" .. seq, "p", ARGV[2])
  redis.call("EXPIRE", KEYS[2], ARGV[5])
end
if tonumber(ARGV[6]) > 0 then
  redis.call("SET", KEYS[4], ARGV[2], "PX", ARGV[6])
end
local n = redis.call("` + publish + `", ARGV[1], epoch .. ":" .. seq .. ":" .. ARGV[2])
local subs = tonumber(redis.call("HGET", KEYS[3], "` + totalField + `") or "0")
return {seq, n, subs, redis.call("PTTL", KEYS[5])}`
}

// clearCongestedScript: KEYS congested; ARGV node id. Deletes the key only
// when this node set it last: another node's mark stands until it clears it
// or it expires.
const clearCongestedScript = `
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0`

// PublishOptions are a publication's extras.
type PublishOptions struct {
	// CacheTTL > 0 keeps the payload as the channel's last event for that long
	// (cache channels): Cached reads it.
	CacheTTL time.Duration
}

// Receipt is what Redis confirmed of a publication.
type Receipt struct {
	Seq uint64
	// Subscriptions counts the channel's sockets across the cluster when Redis
	// ran the publication (State's counts; see its doc for how exact they are).
	Subscriptions int64
	// Hold is how much longer a node said the channel's subscribers there lag
	// behind (SetCongested) when Redis ran the publication; 0 when none did.
	// The caller should slow its publishers down until Congestion says 0.
	Hold time.Duration
}

// Publish sends payload to every node subscribed to channel, with one script
// call, whatever the number of nodes or subscribers. Publications through one
// Broker that do not overlap in time arrive in the order they were made. An
// error wraps ErrUnavailable: nobody received it, or (a connection lost after
// Redis ran the script) the caller cannot know and must report a failure.
func (b *Broker) Publish(ctx context.Context, channel string, payload []byte, o PublishOptions) (Receipt, error) {
	res := b.publish.Exec(ctx, b.client,
		[]string{b.keys.meta(channel), b.keys.log(channel), b.keys.occupancy(channel), b.keys.cache(channel), b.keys.congested(channel)},
		[]string{b.keys.topic(channel), string(payload), b.epoch + "." + strconv.FormatUint(b.epochs.Add(1), 36),
			strconv.Itoa(b.cfg.HistorySize), strconv.Itoa(int(b.cfg.HistoryTTL / time.Second)),
			strconv.FormatInt(o.CacheTTL.Milliseconds(), 10)})
	vals, err := res.AsIntSlice()
	if err == nil && len(vals) != 4 {
		err = fmt.Errorf("unexpected reply %v", vals)
	}
	if err != nil {
		b.publishErrors.Add(1)
		b.setErr(err)
		return Receipt{}, fmt.Errorf("%w: publish to %s: %w", ErrUnavailable, channel, err)
	}
	b.published.Add(1)
	return Receipt{Seq: uint64(vals[0]), Subscriptions: vals[2], Hold: time.Duration(max(vals[3], 0)) * time.Millisecond}, nil
}

// SetCongested says, for ttl, that this node's subscribers of channel lag
// behind: every publish to it reports the rest of ttl as Receipt.Hold. A
// node renews it while the lag lasts and clears it (ClearCongested) after;
// a node that dies meanwhile leaves it for ttl at most.
func (b *Broker) SetCongested(ctx context.Context, channel string, ttl time.Duration) error {
	err := b.client.Do(ctx, b.client.B().Set().Key(b.keys.congested(channel)).Value(b.cfg.NodeID).Px(ttl).Build().Pin()).Error()
	if err != nil {
		return fmt.Errorf("%w: congestion of %s: %w", ErrUnavailable, channel, err)
	}
	return nil
}

// ClearCongested takes back this node's SetCongested (not another node's).
func (b *Broker) ClearCongested(ctx context.Context, channel string) error {
	err := b.clearCongested.Exec(ctx, b.client, []string{b.keys.congested(channel)}, []string{b.cfg.NodeID}).Error()
	if err != nil {
		return fmt.Errorf("%w: congestion of %s: %w", ErrUnavailable, channel, err)
	}
	return nil
}

// Congestion is how much longer channel is said congested (0: it is not).
// One PTTL.
func (b *Broker) Congestion(ctx context.Context, channel string) (time.Duration, error) {
	ms, err := b.client.Do(ctx, b.client.B().Pttl().Key(b.keys.congested(channel)).Build().Pin()).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("%w: congestion of %s: %w", ErrUnavailable, channel, err)
	}
	return time.Duration(max(ms, 0)) * time.Millisecond, nil
}

// Cached is a cache channel's last payload, nil when it has none (never
// published, or expired).
func (b *Broker) Cached(ctx context.Context, channel string) ([]byte, error) {
	v, err := b.client.Do(ctx, b.client.B().Get().Key(b.keys.cache(channel)).Build().Pin()).ToString()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: cache of %s: %w", ErrUnavailable, channel, err)
	}
	return []byte(v), nil
}

// Subscribe starts receiving channel's publications made from now on. It is
// idempotent. When Redis is unreachable the subscription is kept and made on
// reconnect, and the error says so.
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	b.mu.Lock()
	if _, ok := b.subs[channel]; ok {
		b.mu.Unlock()
		return nil
	}
	st := &subState{}
	b.subs[channel] = st
	conn := b.conn
	b.mu.Unlock()

	// The baseline is read before subscribing: whatever is published after it
	// is either received live or caught up from the history.
	epoch, seq, err := b.head(ctx, channel)
	if err == nil {
		b.base(channel, st, epoch, seq)
		if b.sharded {
			err = b.subscribeShard(ctx, channel)
		} else if conn != nil {
			err = conn.Do(ctx, conn.B().Subscribe().Channel(b.keys.topic(channel)).Build().Pin()).Error()
			if err != nil && b.current() != conn {
				// The connection was replaced meanwhile; its successor
				// subscribed every channel in subs, this one included.
				err = nil
			}
		}
	}
	if err != nil {
		b.setErr(err)
		return fmt.Errorf("%w: subscribe %s: %w", ErrUnavailable, channel, err)
	}
	return nil
}

// base makes epoch and seq, read by Subscribe before it subscribed, the
// baseline of st, its state of channel, unless a live message came first.
func (b *Broker) base(channel string, st *subState, epoch string, seq uint64) {
	b.mu.Lock()
	if b.subs[channel] == st && !st.based {
		*st = subState{based: true, epoch: epoch, last: seq}
	}
	b.mu.Unlock()
}

// Unsubscribe stops receiving channel: the handler gets none of its messages
// from now on. It never fails.
//
// No UNSUBSCRIBE is sent. rueidis follows every UNSUBSCRIBE with a PING, and a
// Redis that refuses the PING with an error it does not expect (MISCONF, when
// Redis cannot persist and stop-writes-on-bgsave-error is on) makes its reader
// panic, which would end the process. So the pub/sub connection keeps receiving
// the channel, the worker drops its messages, and once such stale channels are
// many (a quarter of the live ones, at least staleMin) or have lingered for
// staleAge, the run loop subscribes the live channels on a fresh connection
// before closing the old one (make before break: nothing is missed, and what
// both deliver is deduplicated by sequence).
func (b *Broker) Unsubscribe(_ context.Context, channel string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[channel]; !ok {
		return nil
	}
	delete(b.subs, channel)
	if b.sharded {
		b.unsubscribeShard(channel)
		return nil
	}
	if b.conn == nil {
		return nil
	}
	b.stale++
	if b.stale >= max(staleMin, len(b.subs)/4) {
		select {
		case b.recycle <- struct{}{}:
		default:
		}
	}
	return nil
}

const (
	// staleMin and staleAge bound the stale subscriptions a connection keeps
	// before it is replaced (see Unsubscribe).
	staleMin = 256
	staleAge = time.Minute
)

// current is the pub/sub connection in use, nil while disconnected.
func (b *Broker) current() rueidis.DedicatedClient {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conn
}

// epochInfo is what an epoch id says (see publishScript): the number after
// which its publishes are new (0: the history started again with it) and when
// Redis began it, in microseconds. An id of an older format says 0 and 0.
type epochInfo struct{ base, began uint64 }

func epochOf(epoch string) epochInfo {
	_, rest, ok := strings.Cut(epoch, "~")
	if !ok {
		return epochInfo{}
	}
	base, began, _ := strings.Cut(rest, "~")
	var e epochInfo
	e.base, _ = strconv.ParseUint(base, 10, 64)
	e.began, _ = strconv.ParseUint(began, 10, 64)
	return e
}

// older reports whether epoch a began before epoch b: a is a state of the
// channel that Redis restored from before b (a snapshot, a promoted replica).
func older(a, b string) bool { return epochOf(a).began < epochOf(b).began }

// head reads a channel's history epoch and last sequence ("" and 0 when it has
// none).
func (b *Broker) head(ctx context.Context, channel string) (string, uint64, error) {
	vals, err := b.client.Do(ctx, b.client.B().Hmget().Key(b.keys.meta(channel)).Field("epoch", "seq").Build().Pin()).ToArray()
	if err != nil {
		return "", 0, err
	}
	if len(vals) != 2 || vals[0].IsNil() {
		return "", 0, nil
	}
	epoch, _ := vals[0].ToString()
	s, _ := vals[1].ToString()
	seq, _ := strconv.ParseUint(s, 10, 64)
	return epoch, seq, nil
}

// Stats reads the counters.
func (b *Broker) Stats() BrokerStats {
	b.mu.Lock()
	n, stale := len(b.subs), b.stale
	for _, sh := range b.shards {
		stale += len(sh.stale)
	}
	b.mu.Unlock()
	return BrokerStats{
		Published: b.published.Load(), PublishErrors: b.publishErrors.Load(),
		Received: b.received.Load(), Recovered: b.recovered.Load(),
		Dropped: b.dropped.Load(), Lost: b.lost.Load(), Reconnects: b.reconnects.Load(),
		Recycles: b.recycles.Load(), Stale: stale,
		Up: b.up.Load(), LastError: b.lastErr.Load().(string), Subscribed: n,
	}
}

func (b *Broker) setErr(err error) { b.lastErr.Store(err.Error()) }

// run keeps one dedicated pub/sub connection subscribed to every channel in
// subs, reconnecting with backoff, and replaces it when it holds many stale
// subscriptions (see Unsubscribe).
//
// A connection is only ever closed, never handed back to rueidis' pool: the
// pool would clean it with UNSUBSCRIBE, which Unsubscribe explains the danger
// of.
func (b *Broker) run(ctx context.Context) {
	defer b.done.Done()
	backoff := 50 * time.Millisecond
	first := true
	tick := time.NewTicker(staleAge)
	defer tick.Stop()
	for ctx.Err() == nil {
		if !first {
			b.reconnects.Add(1)
		}
		first = false
		wait, err := b.connect(ctx, true)
		if err != nil {
			b.setErr(err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		b.up.Store(true)
	serve:
		for {
			select {
			case <-ctx.Done():
				break serve
			case err := <-wait:
				if err != nil {
					b.setErr(err)
				}
				break serve
			case <-tick.C:
				b.mu.Lock()
				stale := b.stale
				b.mu.Unlock()
				if stale > 0 {
					wait = b.replace(ctx, wait)
				}
			case <-b.recycle:
				wait = b.replace(ctx, wait)
			}
		}
		b.up.Store(false)
		b.mu.Lock()
		conn := b.conn
		b.conn = nil
		b.mu.Unlock()
		if conn != nil {
			conn.Close()
		}
	}
}

// replace subscribes the live channels on a new connection, then drains and
// closes the old one. Until then both deliver; the worker drops by sequence
// what it already has. On failure the old connection stays, and wait with it.
func (b *Broker) replace(ctx context.Context, wait <-chan error) <-chan error {
	old := b.current()
	next, err := b.connect(ctx, false)
	if err != nil {
		b.setErr(err)
		return wait
	}
	b.recycles.Add(1)
	if old != nil {
		// Redis answers in order: once the old connection's PING is answered,
		// everything it was sent before the new connection subscribed has been
		// read. The answer may be an error (MISCONF refuses PING); it still
		// marks the point.
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_ = old.Do(pctx, old.B().Ping().Build().Pin()).Error()
		cancel()
		old.Close()
	}
	return next
}

// connect dedicates a connection, subscribes every channel and makes it the
// broker's. With catchUp it asks the worker to catch each channel up to its
// history's head (after a reconnect: what was published while disconnected).
func (b *Broker) connect(ctx context.Context, catchUp bool) (<-chan error, error) {
	conn, _ := b.client.Dedicate()
	wait := conn.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: b.receive})
	// Ping first: Dedicate does not dial until the first command.
	if err := conn.Do(ctx, conn.B().Ping().Build().Pin()).Error(); err != nil {
		conn.Close()
		return nil, err
	}
	done := map[string]bool{}
	for {
		b.mu.Lock()
		var want []string
		for ch := range b.subs {
			if !done[ch] {
				want = append(want, ch)
			}
		}
		if len(want) == 0 {
			// Channels unsubscribed meanwhile stay subscribed on Redis; the
			// worker drops their messages.
			b.stale = 0
			for ch := range done {
				if _, ok := b.subs[ch]; !ok {
					b.stale++
				}
			}
			b.conn = conn
			b.mu.Unlock()
			return wait, nil
		}
		b.mu.Unlock()
		for len(want) > 0 {
			n := min(len(want), subscribeBatch)
			topics := make([]string, n)
			for i, ch := range want[:n] {
				topics[i] = b.keys.topic(ch)
			}
			if err := conn.Do(ctx, conn.B().Subscribe().Channel(topics...).Build().Pin()).Error(); err != nil {
				conn.Close()
				return nil, err
			}
			for _, ch := range want[:n] {
				done[ch] = true
				if catchUp {
					b.enqueueSync(ch)
				}
			}
			want = want[n:]
		}
	}
}

// subscribeBatch bounds the channels of one SUBSCRIBE after a reconnect.
const subscribeBatch = 512

// receive is rueidis' pub/sub hook. It never blocks: a message that does not fit
// the queue is dropped and its channel marked, so the worker catches it up from
// the history.
func (b *Broker) receive(m rueidis.PubSubMessage) {
	select {
	case b.queue <- item{topic: m.Channel, payload: m.Message}:
	default:
		b.dropped.Add(1)
		if ch := b.keys.channelOf(m.Channel); ch != "" {
			b.dirty.Lock()
			b.dirty.set[ch] = struct{}{}
			b.dirty.Unlock()
		}
	}
}

// enqueueSync asks the worker to catch channel up to its history's head, behind
// what is queued. When the queue is full the channel is marked instead.
func (b *Broker) enqueueSync(ch string) {
	select {
	case b.queue <- item{sync: ch}:
	default:
		b.dirty.Lock()
		b.dirty.set[ch] = struct{}{}
		b.dirty.Unlock()
	}
}

// work hands messages to the handler in order, dropping duplicates and filling
// gaps from the history.
func (b *Broker) work(ctx context.Context) {
	defer b.done.Done()
	for {
		var it item
		select {
		case <-ctx.Done():
			return
		case it = <-b.queue:
		}
		if it.sync != "" {
			b.catchUp(ctx, it.sync)
		} else {
			b.live(ctx, it)
		}
		if len(b.queue) == 0 {
			b.dirty.Lock()
			var chans []string
			for ch := range b.dirty.set {
				chans = append(chans, ch)
			}
			clear(b.dirty.set)
			b.dirty.Unlock()
			for _, ch := range chans {
				b.catchUp(ctx, ch)
			}
		}
	}
}

// state copies channel's state; ok is false once it is unsubscribed.
func (b *Broker) state(ch string) (subState, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.subs[ch]
	if st == nil {
		return subState{}, false
	}
	return *st, true
}

// setState stores what the worker moved the channel to, unless it was
// unsubscribed meanwhile.
func (b *Broker) setState(ch string, st subState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cur := b.subs[ch]; cur != nil {
		*cur = st
	}
}

func (b *Broker) live(ctx context.Context, it item) {
	ch := b.keys.channelOf(it.topic)
	epoch, rest, ok1 := strings.Cut(it.payload, ":")
	seqs, payload, ok2 := strings.Cut(rest, ":")
	seq, err := strconv.ParseUint(seqs, 10, 64)
	if ch == "" || !ok1 || !ok2 || err != nil || seq == 0 {
		return
	}
	st, ok := b.state(ch)
	if !ok {
		return
	}
	switch {
	case !st.based:
		st = subState{based: true, epoch: epoch, last: seq - 1}
	case st.epoch != epoch && older(epoch, st.epoch):
		// Left over from before the epoch this node follows (a connection
		// being replaced delivers it late): delivered already.
		return
	case st.epoch != epoch:
		// A new epoch: what follows its base was published after the
		// baseline (all of it when the history started again).
		st.epoch, st.last = epoch, min(st.last, epochOf(epoch).base)
	}
	if seq <= st.last {
		return
	}
	if seq > st.last+1 {
		b.recover(ctx, ch, &st, seq-1)
	}
	st.last = seq
	b.received.Add(1)
	b.handler(Message{Channel: ch, Seq: seq, Payload: []byte(payload)})
	b.setState(ch, st)
}

// catchUp delivers what the history holds past the channel's last message.
func (b *Broker) catchUp(ctx context.Context, ch string) {
	st, ok := b.state(ch)
	if !ok {
		return
	}
	epoch, seq, err := b.head(ctx, ch)
	if err != nil {
		// Redis is gone again; the next connection catches up.
		b.setErr(err)
		return
	}
	switch {
	case !st.based:
		// Subscribe has not read its baseline yet. The head now may be
		// past it (a connection's sync can run while Subscribe waits for
		// Redis): taking it would skip what was published in between,
		// after Subscribe returned.
		return
	case epoch == "":
		return
	case epoch != st.epoch && older(epoch, st.epoch):
		// Redis restored the channel from before the epoch this node follows
		// (a snapshot, a promoted replica): this node has delivered what it
		// holds, and its next publish starts an epoch whose base is seq (see
		// publishScript).
		st.epoch, st.last = epoch, min(st.last, seq)
	case epoch != st.epoch:
		// A new epoch. When the history started again, messages of the old
		// one past st.last that never arrived can no longer be read and the
		// new one is delivered from its start; otherwise what follows its
		// base is new (see publishScript), and what this node missed before
		// it is still in the log.
		st.epoch, st.last = epoch, min(st.last, epochOf(epoch).base)
	}
	if seq > st.last {
		b.recover(ctx, ch, &st, seq)
	}
	b.setState(ch, st)
}

// recover delivers st.last+1 .. to from the history and counts as lost what it
// no longer holds.
func (b *Broker) recover(ctx context.Context, ch string, st *subState, to uint64) {
	entries, err := b.client.Do(ctx, b.client.B().Xrange().Key(b.keys.log(ch)).
		Start("0-"+strconv.FormatUint(st.last+1, 10)).End("0-"+strconv.FormatUint(to, 10)).Build().Pin()).AsXRange()
	if err != nil {
		b.setErr(err)
	}
	for _, e := range entries {
		_, s, _ := strings.Cut(e.ID, "-")
		seq, err := strconv.ParseUint(s, 10, 64)
		if err != nil || seq <= st.last || seq > to {
			continue
		}
		if seq > st.last+1 {
			b.lost.Add(seq - st.last - 1)
		}
		st.last = seq
		b.received.Add(1)
		b.recovered.Add(1)
		b.handler(Message{Channel: ch, Seq: seq, Payload: []byte(e.FieldValues["p"]), Recovered: true})
	}
	if to > st.last {
		b.lost.Add(to - st.last)
		st.last = to
	}
}
