package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// On Redis Cluster the broker uses sharded pub/sub: the publish script sends
// SPUBLISH, which reaches only the master that owns the topic's slot (the
// channel's, by its hash tag), and the broker keeps one dedicated connection
// per master that owns a subscribed channel, SSUBSCRIBEd there. What follows is
// that part; the worker (order, duplicates, gaps) is the same for both modes.
//
// The run loop (runSharded) reconciles: every channel in subs must be
// subscribed on the current connection to the master that owns its slot. A
// channel that is not (new, its connection broke, its slot moved and Redis sent
// sunsubscribe, its connection is being replaced) is subscribed there and
// caught up from the history, so what was published meanwhile is delivered.
// As on plain Redis, nothing is ever unsubscribed: a connection is replaced
// (make before break) or closed, never released to rueidis' pool.

// shard is one dedicated pub/sub connection to the master at addr. Its fields
// but conn, addr and broken are guarded by Broker.mu.
type shard struct {
	addr   string
	conn   rueidis.DedicatedClient
	broken atomic.Bool
	// live counts the channels of subs subscribed here (Broker.on); stale holds
	// the channels unsubscribed locally that it still receives.
	live  int
	stale map[string]struct{}
	// replace asks the run loop for a fresh connection (too many stale).
	replace bool
}

// slotRange is a range of slots and the address of the master that owns it.
type slotRange struct {
	lo, hi uint16
	addr   string
}

// owner is the address of the master that owns slot, "" when unknown. Call with
// mu held.
func (b *Broker) owner(slot uint16) string {
	i := sort.Search(len(b.slots), func(i int) bool { return b.slots[i].hi >= slot })
	if i < len(b.slots) && b.slots[i].lo <= slot {
		return b.slots[i].addr
	}
	return ""
}

// slotOf is the Redis Cluster slot of channel's topic (and keys).
func (b *Broker) slotOf(channel string) uint16 {
	cmd := b.client.B().Ssubscribe().Channel(b.keys.topic(channel)).Build().Pin()
	return cmd.Slot()
}

// wake asks the run loop for a pass, without blocking.
func (b *Broker) wake() {
	select {
	case b.recycle <- struct{}{}:
	default:
	}
}

// setOn records that channel is subscribed on sh; clearOn forgets it. Call with
// mu held.
func (b *Broker) setOn(channel string, sh *shard) {
	if old := b.on[channel]; old != nil {
		old.live--
	}
	b.on[channel] = sh
	sh.live++
	delete(sh.stale, channel)
}

func (b *Broker) clearOn(channel string) {
	if old := b.on[channel]; old != nil {
		old.live--
		delete(b.on, channel)
	}
}

// refreshSlots reads which master owns which slot (CLUSTER SLOTS).
func (b *Broker) refreshSlots(ctx context.Context) error {
	vals, err := b.client.Do(ctx, b.client.B().ClusterSlots().Build().Pin()).ToArray()
	if err != nil {
		return fmt.Errorf("cluster slots: %w", err)
	}
	var ranges []slotRange
	for _, v := range vals {
		r, err := v.ToArray()
		if err != nil || len(r) < 3 {
			continue
		}
		lo, err1 := r[0].AsInt64()
		hi, err2 := r[1].AsInt64()
		master, err3 := r[2].ToArray()
		if err1 != nil || err2 != nil || err3 != nil || len(master) < 2 {
			continue
		}
		host, _ := master[0].ToString()
		port, err := master[1].AsInt64()
		if err != nil || host == "" || host == "?" {
			continue
		}
		ranges = append(ranges, slotRange{lo: uint16(lo), hi: uint16(hi), addr: net.JoinHostPort(host, strconv.FormatInt(port, 10))})
	}
	if len(ranges) == 0 {
		return errors.New("cluster slots: no slot is served")
	}
	sort.Slice(ranges, func(i, j int) bool { return ranges[i].lo < ranges[j].lo })
	b.mu.Lock()
	b.slots = ranges
	b.mu.Unlock()
	return nil
}

// isRedirect is true for a MOVED or ASK answer: the slot is not where the
// broker thought.
func isRedirect(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	if !ok {
		return false
	}
	_, moved := re.IsMoved()
	_, ask := re.IsAsk()
	return moved || ask
}

// subscribeShard SSUBSCRIBEs channel on the connection to its master when there
// is one; otherwise, or when the slot moved, the run loop does it (and catches
// the channel up).
func (b *Broker) subscribeShard(ctx context.Context, channel string) error {
	slot := b.slotOf(channel)
	b.mu.Lock()
	sh := b.shards[b.owner(slot)]
	b.mu.Unlock()
	if sh == nil || sh.broken.Load() {
		b.wake()
		return nil
	}
	if err := sh.conn.Do(ctx, sh.conn.B().Ssubscribe().Channel(b.keys.topic(channel)).Build().Pin()).Error(); err != nil {
		b.wake()
		if isRedirect(err) {
			b.refresh.Store(true)
			return nil
		}
		b.mu.Lock()
		current := b.shards[sh.addr] == sh
		b.mu.Unlock()
		if !current {
			return nil
		}
		return err
	}
	b.mu.Lock()
	if _, ok := b.subs[channel]; ok && b.shards[sh.addr] == sh && b.on[channel] == nil {
		b.setOn(channel, sh)
	}
	b.mu.Unlock()
	return nil
}

// unsubscribeShard marks channel stale on its connection and asks for a
// replacement once the connection holds many. Call with mu held.
func (b *Broker) unsubscribeShard(channel string) {
	sh := b.on[channel]
	if sh == nil {
		return
	}
	b.clearOn(channel)
	sh.stale[channel] = struct{}{}
	if len(sh.stale) >= max(staleMin, sh.live/4) {
		sh.replace = true
		b.wake()
	}
}

// runSharded keeps every channel of subs subscribed on its master (see the
// comment at the top of this file), retrying with backoff.
func (b *Broker) runSharded(ctx context.Context) {
	defer b.done.Done()
	defer func() {
		b.mu.Lock()
		shards := b.shards
		b.shards = map[string]*shard{}
		clear(b.on)
		b.mu.Unlock()
		for _, sh := range shards {
			sh.conn.Close()
		}
		b.up.Store(false)
	}()
	backoff := 50 * time.Millisecond
	tick := time.NewTicker(staleAge)
	defer tick.Stop()
	b.refresh.Store(true)
	for ctx.Err() == nil {
		err := b.reconcile(ctx)
		var retry <-chan time.Time
		if err != nil {
			b.up.Store(false)
			b.setErr(err)
			retry = time.After(backoff)
			backoff = min(2*backoff, 2*time.Second)
		} else {
			b.up.Store(true)
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-retry:
		case <-b.recycle:
			if retry != nil {
				// Still failing: keep the backoff.
				select {
				case <-ctx.Done():
				case <-retry:
				}
			}
		case <-tick.C:
			b.mu.Lock()
			for _, sh := range b.shards {
				if len(sh.stale) > 0 {
					sh.replace = true
				}
			}
			if len(b.shards) == 0 {
				// Nothing subscribed: check Redis still answers.
				b.refresh.Store(true)
			}
			b.mu.Unlock()
		}
	}
}

// placement is what one pass does for one master: the channels to subscribe
// there, on a new connection when fresh.
type placement struct {
	chans []string
	fresh bool
}

// reconcile subscribes every channel of subs where it belongs.
func (b *Broker) reconcile(ctx context.Context) error {
	if b.refresh.Swap(false) {
		if err := b.refreshSlots(ctx); err != nil {
			b.refresh.Store(true)
			return err
		}
	}
	for range 3 {
		plan, drop := b.plan()
		for _, sh := range drop {
			sh.conn.Close()
		}
		if len(plan) == 0 {
			return nil
		}
		for addr, p := range plan {
			if err := b.place(ctx, addr, p); err != nil {
				return err
			}
		}
	}
	b.wake()
	return nil
}

// plan lists, per master, the channels of subs not subscribed on its current
// connection, and takes out the connections to drop: broken ones, and those
// that carry no channel any more.
func (b *Broker) plan() (map[string]*placement, []*shard) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var drop []*shard
	for addr, sh := range b.shards {
		if sh.broken.Load() {
			delete(b.shards, addr)
			drop = append(drop, sh)
			b.reconnects.Add(1)
		}
	}
	plan := map[string]*placement{}
	needed := map[string]bool{}
	for ch := range b.subs {
		addr := b.owner(b.slotOf(ch))
		if addr == "" {
			b.refresh.Store(true)
			continue
		}
		needed[addr] = true
		sh := b.shards[addr]
		if sh != nil && !sh.replace && b.on[ch] == sh {
			continue
		}
		p := plan[addr]
		if p == nil {
			p = &placement{fresh: sh == nil || sh.replace}
			plan[addr] = p
		}
		p.chans = append(p.chans, ch)
	}
	for addr, sh := range b.shards {
		if !needed[addr] {
			delete(b.shards, addr)
			drop = append(drop, sh)
		}
	}
	// A channel whose connection is gone is subscribed nowhere.
	for ch, sh := range b.on {
		if b.shards[sh.addr] != sh {
			b.clearOn(ch)
		}
	}
	// A replacement takes every channel of its master.
	for addr, p := range plan {
		if p.fresh && b.shards[addr] != nil {
			p.chans = p.chans[:0]
			for ch := range b.subs {
				if b.owner(b.slotOf(ch)) == addr {
					p.chans = append(p.chans, ch)
				}
			}
		}
	}
	return plan, drop
}

// place subscribes p's channels on addr's connection (a new one when p.fresh,
// which then replaces the old one after a PING on it marks everything it was
// sent as read), and asks the worker to catch up each that the old one did not
// carry.
func (b *Broker) place(ctx context.Context, addr string, p *placement) error {
	b.mu.Lock()
	sh := b.shards[addr]
	b.mu.Unlock()
	var old *shard
	if p.fresh {
		node := b.client.Nodes()[addr]
		if node == nil {
			b.refresh.Store(true)
			return fmt.Errorf("no connection to master %s", addr)
		}
		var err error
		old = sh
		if sh, err = b.dial(ctx, addr, node); err != nil {
			// The master may be gone for good (its replica taking over):
			// the next pass reads the slots again rather than dial it
			// forever.
			b.refresh.Store(true)
			return err
		}
	}
	var firstErr error
	var ok []string
	for chans := p.chans; len(chans) > 0; {
		n := min(len(chans), subscribeBatch)
		cmds := make(rueidis.Commands, n)
		for i, ch := range chans[:n] {
			cmds[i] = sh.conn.B().Ssubscribe().Channel(b.keys.topic(ch)).Build().Pin()
		}
		for i, r := range sh.conn.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				if isRedirect(err) {
					b.refresh.Store(true)
				}
				if firstErr == nil {
					firstErr = fmt.Errorf("ssubscribe on %s: %w", addr, err)
				}
				continue
			}
			ok = append(ok, chans[i])
		}
		chans = chans[n:]
	}
	if p.fresh && len(ok) == 0 {
		sh.conn.Close()
		return firstErr
	}
	b.mu.Lock()
	if p.fresh {
		b.shards[addr] = sh
	}
	var synced []string
	if b.shards[addr] == sh {
		for _, ch := range ok {
			if _, live := b.subs[ch]; !live {
				sh.stale[ch] = struct{}{}
				continue
			}
			// A channel the old connection carried needs no catching up:
			// that connection delivers until it is drained below.
			if old == nil || b.on[ch] != old {
				synced = append(synced, ch)
			}
			b.setOn(ch, sh)
		}
	}
	b.mu.Unlock()
	for _, ch := range synced {
		b.enqueueSync(ch)
	}
	if old != nil {
		b.recycles.Add(1)
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_ = old.conn.Do(pctx, old.conn.B().Ping().Build().Pin()).Error()
		cancel()
		old.conn.Close()
	}
	return firstErr
}

// dial dedicates a connection to the master at addr and watches it.
func (b *Broker) dial(ctx context.Context, addr string, node rueidis.Client) (*shard, error) {
	conn, _ := node.Dedicate()
	sh := &shard{addr: addr, conn: conn, stale: map[string]struct{}{}}
	wait := conn.SetPubSubHooks(rueidis.PubSubHooks{
		OnMessage:      b.receive,
		OnSubscription: func(s rueidis.PubSubSubscription) { b.moved(sh, s) },
	})
	// Ping first: Dedicate does not dial until the first command.
	if err := conn.Do(ctx, conn.B().Ping().Build().Pin()).Error(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("pub/sub connection to %s: %w", addr, err)
	}
	go func() {
		err := <-wait
		sh.broken.Store(true)
		b.mu.Lock()
		current := b.shards[addr] == sh
		b.mu.Unlock()
		if current {
			b.up.Store(false)
			if err != nil {
				b.setErr(fmt.Errorf("pub/sub connection to %s: %w", addr, err))
			}
			b.refresh.Store(true)
			b.wake()
		}
	}()
	return sh, nil
}

// moved is the connection's subscription hook. The broker never sends
// SUNSUBSCRIBE, so a sunsubscribe is Redis saying the channel's slot left the
// master: the run loop subscribes it where it went and catches it up. It runs
// on rueidis' reader: it must not block nor send a command.
func (b *Broker) moved(sh *shard, s rueidis.PubSubSubscription) {
	if s.Kind != "sunsubscribe" {
		return
	}
	ch := b.keys.channelOf(s.Channel)
	b.mu.Lock()
	if b.on[ch] == sh {
		b.clearOn(ch)
	}
	delete(sh.stale, ch)
	b.mu.Unlock()
	b.refresh.Store(true)
	b.wake()
}
