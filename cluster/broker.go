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
	Up            bool
	LastError     string
	Subscribed    int
}

// Broker fans publications out through Redis: one script call per publish
// (sequence, history, PUBLISH), one pub/sub subscription per channel that has
// local subscribers, restored with the missed messages after a reconnect.
type Broker struct {
	client  rueidis.Client
	keys    keyspace
	cfg     Config
	handler Handler
	publish *rueidis.Lua
	// clearCongested deletes a channel's congested key if this node set it.
	clearCongested *rueidis.Lua
	// epoch and epochs make the id offered when a channel's history starts:
	// unique to this broker and this publish, so a history recreated after it
	// was lost (a Redis restart, an expiry) never reuses an old epoch.
	epoch  string
	epochs atomic.Uint64

	mu   sync.Mutex
	subs map[string]*subState
	conn rueidis.DedicatedClient // nil while disconnected

	queue chan item
	dirty struct {
		sync.Mutex
		set map[string]struct{}
	}

	published, publishErrors, received, recovered, dropped, lost, reconnects atomic.Uint64
	up                                                                       atomic.Bool
	lastErr                                                                  atomic.Value // string

	stop context.CancelFunc
	done sync.WaitGroup
}

// subState is where a channel's delivery stands. Only the worker changes it once
// based is set; Subscribe sets the first baseline.
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
		publish:        rueidis.NewLuaScript(publishScript),
		clearCongested: rueidis.NewLuaScript(clearCongestedScript),
		epoch:          hex.EncodeToString(e[:]),
		subs:           map[string]*subState{},
		queue:          make(chan item, cfg.QueueSize),
	}
	b.dirty.set = map[string]struct{}{}
	b.lastErr.Store("")
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	b.done.Add(2)
	go b.run(ctx)
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
// across the cluster, the congested key's PTTL (negative: none)}.
const publishScript = `
local seq = redis.call("HINCRBY", KEYS[1], "seq", 1)
local epoch = redis.call("HGET", KEYS[1], "epoch")
if not epoch then
  epoch = ARGV[3]
  redis.call("HSET", KEYS[1], "epoch", epoch)
  redis.call("DEL", KEYS[2])
end
redis.call("EXPIRE", KEYS[1], ARGV[5])
if tonumber(ARGV[4]) > 0 then
  redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[4], "0-" .. seq, "p", ARGV[2])
  redis.call("EXPIRE", KEYS[2], ARGV[5])
end
if tonumber(ARGV[6]) > 0 then
  redis.call("SET", KEYS[4], ARGV[2], "PX", ARGV[6])
end
local n = redis.call("PUBLISH", ARGV[1], epoch .. ":" .. seq .. ":" .. ARGV[2])
local subs = tonumber(redis.call("HGET", KEYS[3], "` + totalField + `") or "0")
return {seq, n, subs, redis.call("PTTL", KEYS[5])}`

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
	err := b.client.Do(ctx, b.client.B().Set().Key(b.keys.congested(channel)).Value(b.cfg.NodeID).Px(ttl).Build()).Error()
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
	ms, err := b.client.Do(ctx, b.client.B().Pttl().Key(b.keys.congested(channel)).Build()).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("%w: congestion of %s: %w", ErrUnavailable, channel, err)
	}
	return time.Duration(max(ms, 0)) * time.Millisecond, nil
}

// Cached is a cache channel's last payload, nil when it has none (never
// published, or expired).
func (b *Broker) Cached(ctx context.Context, channel string) ([]byte, error) {
	v, err := b.client.Do(ctx, b.client.B().Get().Key(b.keys.cache(channel)).Build()).ToString()
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
		b.mu.Lock()
		if b.subs[channel] == st && !st.based {
			*st = subState{based: true, epoch: epoch, last: seq}
		}
		b.mu.Unlock()
		if conn != nil {
			err = conn.Do(ctx, conn.B().Subscribe().Channel(b.keys.topic(channel)).Build()).Error()
		}
	}
	if err != nil {
		b.setErr(err)
		return fmt.Errorf("%w: subscribe %s: %w", ErrUnavailable, channel, err)
	}
	return nil
}

// Unsubscribe stops receiving channel.
func (b *Broker) Unsubscribe(ctx context.Context, channel string) error {
	b.mu.Lock()
	if _, ok := b.subs[channel]; !ok {
		b.mu.Unlock()
		return nil
	}
	delete(b.subs, channel)
	conn := b.conn
	b.mu.Unlock()
	if conn == nil {
		return nil
	}
	if err := conn.Do(ctx, conn.B().Unsubscribe().Channel(b.keys.topic(channel)).Build()).Error(); err != nil {
		b.setErr(err)
		return fmt.Errorf("%w: unsubscribe %s: %w", ErrUnavailable, channel, err)
	}
	return nil
}

// head reads a channel's history epoch and last sequence ("" and 0 when it has
// none).
func (b *Broker) head(ctx context.Context, channel string) (string, uint64, error) {
	vals, err := b.client.Do(ctx, b.client.B().Hmget().Key(b.keys.meta(channel)).Field("epoch", "seq").Build()).ToArray()
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
	n := len(b.subs)
	b.mu.Unlock()
	return BrokerStats{
		Published: b.published.Load(), PublishErrors: b.publishErrors.Load(),
		Received: b.received.Load(), Recovered: b.recovered.Load(),
		Dropped: b.dropped.Load(), Lost: b.lost.Load(), Reconnects: b.reconnects.Load(),
		Up: b.up.Load(), LastError: b.lastErr.Load().(string), Subscribed: n,
	}
}

func (b *Broker) setErr(err error) { b.lastErr.Store(err.Error()) }

// run keeps one dedicated pub/sub connection subscribed to every channel in
// subs, reconnecting with backoff.
func (b *Broker) run(ctx context.Context) {
	defer b.done.Done()
	backoff := 50 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		if !first {
			b.reconnects.Add(1)
		}
		first = false
		wait, err := b.connect(ctx)
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
		select {
		case <-ctx.Done():
		case err := <-wait:
			if err != nil {
				b.setErr(err)
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

// connect dedicates a connection, subscribes every channel and asks the worker
// to catch each one up to the history's head.
func (b *Broker) connect(ctx context.Context) (<-chan error, error) {
	conn, cancel := b.client.Dedicate()
	wait := conn.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: b.receive})
	// Ping first: Dedicate does not dial until the first command.
	if err := conn.Do(ctx, conn.B().Ping().Build()).Error(); err != nil {
		cancel()
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
			// Channels unsubscribed meanwhile may stay subscribed on Redis until
			// the next reconnect; the worker drops their messages.
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
			if err := conn.Do(ctx, conn.B().Subscribe().Channel(topics...).Build()).Error(); err != nil {
				cancel()
				return nil, err
			}
			for _, ch := range want[:n] {
				done[ch] = true
				b.enqueueSync(ch)
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
	case st.epoch != epoch:
		// A new history: all of it was published after the baseline.
		st.epoch, st.last = epoch, 0
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
		st = subState{based: true, epoch: epoch, last: seq}
	case epoch == "":
		return
	case epoch != st.epoch:
		// Messages of the old history past st.last that never arrived can no
		// longer be read; the new history is delivered from its start.
		st.epoch, st.last = epoch, 0
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
		Start("0-"+strconv.FormatUint(st.last+1, 10)).End("0-"+strconv.FormatUint(to, 10)).Build()).AsXRange()
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
