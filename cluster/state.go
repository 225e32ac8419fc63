package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// ErrMemberLimit refuses a presence join that would take a channel past its
// member limit across the cluster.
var ErrMemberLimit = errors.New("cluster: presence member limit reached")

// State keeps each channel's subscriptions and presence members for the whole
// cluster, so that counts, member lists and the occupied / vacated and member
// added / removed transitions are the cluster's, each reported to exactly one
// caller. Each node reports its own sockets; what a dead node held is removed
// by the node that claims it (Claim, then CleanNode, then Bury).
type State struct {
	client rueidis.Client
	keys   keyspace
	node   string
}

// NewState reports this node's sockets (cfg.NodeID) into the cluster's state.
func NewState(client rueidis.Client, cfg Config) *State {
	cfg = cfg.WithDefaults()
	return &State{client: client, keys: keyspace{cfg.Prefix}, node: cfg.NodeID}
}

// subscribeScript: KEYS occupancy; ARGV node field, delta (+1 or -1). Returns
// {cluster total, this node's count}. A decrement below zero (a node that was
// cleaned up as dead while it still ran) is ignored.
var subscribeLua = newScript(`
local d = tonumber(ARGV[2])
local c = redis.call("HINCRBY", KEYS[1], ARGV[1], d)
if c < 0 then
  redis.call("HDEL", KEYS[1], ARGV[1])
  return {tonumber(redis.call("HGET", KEYS[1], "` + totalField + `") or "0"), 0}
end
if c == 0 then redis.call("HDEL", KEYS[1], ARGV[1]) end
local t = redis.call("HINCRBY", KEYS[1], "` + totalField + `", d)
if t <= 0 then redis.call("DEL", KEYS[1]) t = 0 end
return {t, c}`)

// Subscribed counts one more socket subscribed to channel on this node. occupied
// is true when it is the cluster's first.
func (s *State) Subscribed(ctx context.Context, channel string) (occupied bool, err error) {
	// The node's index is written first, so it always covers what the node holds.
	if err := s.client.Do(ctx, s.client.B().Sadd().Key(s.keys.nodeChannels(s.node)).Member(channel).Build().Pin()).Error(); err != nil {
		return false, fmt.Errorf("%w: subscribe %s: %w", ErrUnavailable, channel, err)
	}
	total, _, err := s.count(ctx, channel, 1)
	if err != nil {
		return false, err
	}
	if total == 1 {
		if err := s.client.Do(ctx, s.client.B().Sadd().Key(s.keys.occupied()).Member(channel).Build().Pin()).Error(); err != nil {
			return true, fmt.Errorf("%w: subscribe %s: %w", ErrUnavailable, channel, err)
		}
	}
	return total == 1, nil
}

// Unsubscribed counts one socket fewer; vacated is true when it was the
// cluster's last.
func (s *State) Unsubscribed(ctx context.Context, channel string) (vacated bool, err error) {
	total, local, err := s.count(ctx, channel, -1)
	if err != nil {
		return false, err
	}
	if total == 0 {
		// The set of occupied channels trails the counts; listing checks both.
		if err := s.client.Do(ctx, s.client.B().Srem().Key(s.keys.occupied()).Member(channel).Build().Pin()).Error(); err != nil {
			return true, fmt.Errorf("%w: unsubscribe %s: %w", ErrUnavailable, channel, err)
		}
	}
	if local == 0 {
		_ = s.client.Do(ctx, s.client.B().Srem().Key(s.keys.nodeChannels(s.node)).Member(channel).Build().Pin()).Error()
	}
	return total == 0, nil
}

func (s *State) count(ctx context.Context, channel string, delta int) (total, local int64, err error) {
	vals, err := subscribeLua.Exec(ctx, s.client, []string{s.keys.occupancy(channel)},
		[]string{nodeField(s.node), strconv.Itoa(delta)}).AsIntSlice()
	if err == nil && len(vals) != 2 {
		err = fmt.Errorf("unexpected reply %v", vals)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%w: count %s: %w", ErrUnavailable, channel, err)
	}
	return vals[0], vals[1], nil
}

// Subscriptions is the number of sockets subscribed to channel across the
// cluster.
func (s *State) Subscriptions(ctx context.Context, channel string) (int64, error) {
	v, err := s.client.Do(ctx, s.client.B().Hget().Key(s.keys.occupancy(channel)).Field(totalField).Build().Pin()).AsInt64()
	if rueidis.IsRedisNil(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%w: count %s: %w", ErrUnavailable, channel, err)
	}
	return v, nil
}

// joinScript: KEYS presence, users, info; ARGV node|user, user, info JSON,
// member limit (0 = none). Returns 1 when the user is new to the channel, 0 when
// it already was a member, -1 when the limit refuses it.
var joinLua = newScript(`
if tonumber(ARGV[4]) > 0 and redis.call("HEXISTS", KEYS[2], ARGV[2]) == 0 and redis.call("HLEN", KEYS[2]) >= tonumber(ARGV[4]) then
  return -1
end
redis.call("HINCRBY", KEYS[1], ARGV[1], 1)
local n = redis.call("HINCRBY", KEYS[2], ARGV[2], 1)
redis.call("HSET", KEYS[3], ARGV[2], ARGV[3])
if n == 1 then return 1 end
return 0`)

// leaveScript: KEYS presence, users, info; ARGV node|user, user. Returns 1 when
// the user left the channel on its last socket in the cluster.
var leaveLua = newScript(`
local c = redis.call("HINCRBY", KEYS[1], ARGV[1], -1)
if c <= 0 then redis.call("HDEL", KEYS[1], ARGV[1]) end
if c < 0 then return 0 end
local n = redis.call("HINCRBY", KEYS[2], ARGV[2], -1)
if n > 0 then return 0 end
redis.call("HDEL", KEYS[2], ARGV[2])
redis.call("HDEL", KEYS[3], ARGV[2])
return 1`)

func (s *State) presenceKeys(channel string) []string {
	return []string{s.keys.presence(channel), s.keys.users(channel), s.keys.userInfo(channel)}
}

// Join adds one socket of userID to presence channel. added is true when the
// user was not a member anywhere in the cluster: the caller then announces
// member_added. info replaces the member's user_info. maxMembers > 0 refuses a
// new member past that many with ErrMemberLimit.
func (s *State) Join(ctx context.Context, channel, userID string, info []byte, maxMembers int) (added bool, err error) {
	if err := s.client.Do(ctx, s.client.B().Sadd().Key(s.keys.nodeChannels(s.node)).Member(channel).Build().Pin()).Error(); err != nil {
		return false, fmt.Errorf("%w: join %s: %w", ErrUnavailable, channel, err)
	}
	n, err := joinLua.Exec(ctx, s.client, s.presenceKeys(channel),
		[]string{s.node + "|" + userID, userID, string(info), strconv.Itoa(maxMembers)}).AsInt64()
	switch {
	case err != nil:
		return false, fmt.Errorf("%w: join %s: %w", ErrUnavailable, channel, err)
	case n < 0:
		return false, ErrMemberLimit
	}
	return n == 1, nil
}

// Leave removes one socket of userID from presence channel. removed is true when
// it was the user's last socket in the cluster: the caller then announces
// member_removed.
func (s *State) Leave(ctx context.Context, channel, userID string) (removed bool, err error) {
	n, err := leaveLua.Exec(ctx, s.client, s.presenceKeys(channel), []string{s.node + "|" + userID, userID}).AsInt64()
	if err != nil {
		return false, fmt.Errorf("%w: leave %s: %w", ErrUnavailable, channel, err)
	}
	return n == 1, nil
}

// Member is one presence member of the cluster.
type Member struct {
	UserID string
	Info   []byte // user_info JSON, nil when none
}

// Members lists a presence channel's members across the cluster, by user id.
func (s *State) Members(ctx context.Context, channel string) ([]Member, error) {
	m, err := s.client.Do(ctx, s.client.B().Hgetall().Key(s.keys.userInfo(channel)).Build().Pin()).AsStrMap()
	if err != nil {
		return nil, fmt.Errorf("%w: members %s: %w", ErrUnavailable, channel, err)
	}
	out := make([]Member, 0, len(m))
	for id, info := range m {
		mem := Member{UserID: id}
		if info != "" {
			mem.Info = []byte(info)
		}
		out = append(out, mem)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UserID < out[j].UserID })
	return out, nil
}

// ChannelCount is a channel's subscription count and, for presence channels,
// its distinct users.
type ChannelCount struct {
	Name          string
	Subscriptions int64
	Users         int64
}

// Channels lists the occupied channels whose names start with prefix, by name.
func (s *State) Channels(ctx context.Context, prefix string) ([]ChannelCount, error) {
	names, err := s.client.Do(ctx, s.client.B().Smembers().Key(s.keys.occupied()).Build().Pin()).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("%w: channels: %w", ErrUnavailable, err)
	}
	sort.Strings(names)
	var cmds rueidis.Commands
	var kept []string
	for _, n := range names {
		if !strings.HasPrefix(n, prefix) || strings.HasPrefix(n, counterPrefix) {
			continue
		}
		kept = append(kept, n)
		cmds = append(cmds,
			s.client.B().Hget().Key(s.keys.occupancy(n)).Field(totalField).Build().Pin(),
			s.client.B().Hlen().Key(s.keys.users(n)).Build().Pin())
	}
	if len(cmds) == 0 {
		return nil, nil
	}
	res := s.client.DoMulti(ctx, cmds...)
	out := make([]ChannelCount, 0, len(kept))
	for i, n := range kept {
		subs, err := res[2*i].AsInt64()
		if err != nil && !rueidis.IsRedisNil(err) {
			return nil, fmt.Errorf("%w: channels: %w", ErrUnavailable, err)
		}
		if subs <= 0 {
			continue // vacated while the set trailed
		}
		users, _ := res[2*i+1].AsInt64()
		out = append(out, ChannelCount{Name: n, Subscriptions: subs, Users: users})
	}
	return out, nil
}

// Counts gives each named channel's subscriptions and presence users across
// the cluster (zero for a channel nobody is in), in the order asked, with one
// round trip.
func (s *State) Counts(ctx context.Context, channels []string) ([]ChannelCount, error) {
	if len(channels) == 0 {
		return nil, nil
	}
	cmds := make(rueidis.Commands, 0, 2*len(channels))
	for _, n := range channels {
		cmds = append(cmds,
			s.client.B().Hget().Key(s.keys.occupancy(n)).Field(totalField).Build().Pin(),
			s.client.B().Hlen().Key(s.keys.users(n)).Build().Pin())
	}
	res := s.client.DoMulti(ctx, cmds...)
	out := make([]ChannelCount, len(channels))
	for i, n := range channels {
		out[i].Name = n
		subs, err := res[2*i].AsInt64()
		if err != nil && !rueidis.IsRedisNil(err) {
			return nil, fmt.Errorf("%w: count %s: %w", ErrUnavailable, n, err)
		}
		users, err := res[2*i+1].AsInt64()
		if err != nil && !rueidis.IsRedisNil(err) {
			return nil, fmt.Errorf("%w: count %s: %w", ErrUnavailable, n, err)
		}
		out[i].Subscriptions, out[i].Users = subs, users
	}
	return out, nil
}

// cleanScript: KEYS occupancy, presence, users, info; ARGV node field, "node|".
// Removes everything the node held in the channel. Returns {vacated (0/1),
// removed user ids...}.
var cleanLua = newScript(`
local vacated = 0
local c = tonumber(redis.call("HGET", KEYS[1], ARGV[1]) or "0")
if c > 0 then
  redis.call("HDEL", KEYS[1], ARGV[1])
  local t = redis.call("HINCRBY", KEYS[1], "` + totalField + `", -c)
  if t <= 0 then redis.call("DEL", KEYS[1]) vacated = 1 end
end
local out = {vacated}
local fields = redis.call("HKEYS", KEYS[2])
local plen = string.len(ARGV[2])
for _, f in ipairs(fields) do
  if string.sub(f, 1, plen) == ARGV[2] then
    local cnt = tonumber(redis.call("HGET", KEYS[2], f))
    redis.call("HDEL", KEYS[2], f)
    local u = string.sub(f, plen + 1)
    local n = redis.call("HINCRBY", KEYS[3], u, -cnt)
    if n <= 0 then
      redis.call("HDEL", KEYS[3], u)
      redis.call("HDEL", KEYS[4], u)
      table.insert(out, u)
    end
  end
end
return out`)

// Cleanup is what removing a dead node changed in one channel.
type Cleanup struct {
	Channel string
	// Vacated is true when the dead node held the channel's last subscriptions.
	Vacated bool
	// Removed are the users whose last socket was on the dead node.
	Removed []string
}

// CleanNode removes every subscription and presence entry of a dead node that
// this node claimed, and returns the transitions to announce (each once: a
// second clean of the same node finds nothing).
func (s *State) CleanNode(ctx context.Context, node string) ([]Cleanup, error) {
	chans, err := s.client.Do(ctx, s.client.B().Smembers().Key(s.keys.nodeChannels(node)).Build().Pin()).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("%w: clean %s: %w", ErrUnavailable, node, err)
	}
	sort.Strings(chans)
	var out []Cleanup
	for _, ch := range chans {
		vals, err := cleanLua.Exec(ctx, s.client,
			[]string{s.keys.occupancy(ch), s.keys.presence(ch), s.keys.users(ch), s.keys.userInfo(ch)},
			[]string{nodeField(node), node + "|"}).ToArray()
		if err == nil && len(vals) == 0 {
			err = errors.New("empty reply")
		}
		if err != nil {
			return out, fmt.Errorf("%w: clean %s in %s: %w", ErrUnavailable, node, ch, err)
		}
		c := Cleanup{Channel: ch}
		v, _ := vals[0].AsInt64()
		c.Vacated = v == 1
		for _, u := range vals[1:] {
			id, _ := u.ToString()
			c.Removed = append(c.Removed, id)
		}
		if c.Vacated {
			if err := s.client.Do(ctx, s.client.B().Srem().Key(s.keys.occupied()).Member(ch).Build().Pin()).Error(); err != nil {
				return out, fmt.Errorf("%w: clean %s: %w", ErrUnavailable, node, err)
			}
		}
		if (c.Vacated || len(c.Removed) > 0) && !strings.HasPrefix(ch, counterPrefix) {
			out = append(out, c)
		}
		if err := s.client.Do(ctx, s.client.B().Srem().Key(s.keys.nodeChannels(node)).Member(ch).Build().Pin()).Error(); err != nil {
			return out, fmt.Errorf("%w: clean %s: %w", ErrUnavailable, node, err)
		}
	}
	return out, nil
}

// restoreScript: KEYS occupancy, presence, users, info; ARGV node field,
// subscriptions, "node|", then user, sockets, info triples. Sets what this node
// holds in the channel and recomputes the totals from every node's fields, so
// that nodes restoring at the same time after Redis lost its data agree.
var restoreLua = newScript(`
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
local total = 0
local occ = redis.call("HGETALL", KEYS[1])
for i = 1, #occ, 2 do
  if occ[i] ~= "` + totalField + `" then total = total + tonumber(occ[i + 1]) end
end
redis.call("HSET", KEYS[1], "` + totalField + `", total)
for i = 4, #ARGV, 3 do
  local u = ARGV[i]
  redis.call("HSET", KEYS[2], ARGV[3] .. u, ARGV[i + 1])
  redis.call("HSET", KEYS[4], u, ARGV[i + 2])
  local n = 0
  local pres = redis.call("HGETALL", KEYS[2])
  for j = 1, #pres, 2 do
    local f = pres[j]
    local bar = string.find(f, "|", 1, true)
    if bar and string.sub(f, bar + 1) == u then n = n + tonumber(pres[j + 1]) end
  end
  redis.call("HSET", KEYS[3], u, n)
end
return total`)

// LocalChannel is what this node holds in one channel, for Restore.
type LocalChannel struct {
	Name          string
	Subscriptions int
	// Members are the presence users with their socket count on this node.
	Members []LocalMember
}

// LocalMember is one presence user's sockets on this node.
type LocalMember struct {
	UserID  string
	Sockets int
	Info    []byte
}

// Restore writes back everything this node holds, after Redis lost it (a
// restart without persistence, a fail-over) or after the node was taken for dead
// and cleaned. It announces nothing: the transitions were announced when they
// happened.
func (s *State) Restore(ctx context.Context, chans []LocalChannel) error {
	for _, ch := range chans {
		if ch.Subscriptions <= 0 {
			continue
		}
		cmds := rueidis.Commands{
			s.client.B().Sadd().Key(s.keys.nodeChannels(s.node)).Member(ch.Name).Build().Pin(),
			s.client.B().Sadd().Key(s.keys.occupied()).Member(ch.Name).Build().Pin(),
		}
		for _, res := range s.client.DoMulti(ctx, cmds...) {
			if err := res.Error(); err != nil {
				return fmt.Errorf("%w: restore %s: %w", ErrUnavailable, ch.Name, err)
			}
		}
		args := []string{nodeField(s.node), strconv.Itoa(ch.Subscriptions), s.node + "|"}
		for _, m := range ch.Members {
			args = append(args, m.UserID, strconv.Itoa(m.Sockets), string(m.Info))
		}
		err := restoreLua.Exec(ctx, s.client,
			[]string{s.keys.occupancy(ch.Name), s.keys.presence(ch.Name), s.keys.users(ch.Name), s.keys.userInfo(ch.Name)}, args).Error()
		if err != nil {
			return fmt.Errorf("%w: restore %s: %w", ErrUnavailable, ch.Name, err)
		}
	}
	return nil
}

// counterPrefix names the counters kept beside channels (connections, a user's
// subscriptions). No Pusher channel name starts with it.
const counterPrefix = "#count:"

// acquireLua: KEYS occupancy; ARGV node field, cap (0 = none). Returns 1 when
// counted, 0 when the cluster total is at the cap.
var acquireLua = newScript(`
local t = tonumber(redis.call("HGET", KEYS[1], "` + totalField + `") or "0")
if tonumber(ARGV[2]) > 0 and t >= tonumber(ARGV[2]) then return 0 end
redis.call("HINCRBY", KEYS[1], ARGV[1], 1)
redis.call("HINCRBY", KEYS[1], "` + totalField + `", 1)
return 1`)

// Acquire counts one unit of counter (say "connections", or a user's
// subscriptions) for this node, unless the cluster's total is already limit
// (0 = no limit). It is the cluster-wide cap: one script call, no call to other
// nodes. A dead node's units are released by CleanNode.
func (s *State) Acquire(ctx context.Context, counter string, limit int) (bool, error) {
	name := counterPrefix + counter
	if err := s.client.Do(ctx, s.client.B().Sadd().Key(s.keys.nodeChannels(s.node)).Member(name).Build().Pin()).Error(); err != nil {
		return false, fmt.Errorf("%w: acquire %s: %w", ErrUnavailable, counter, err)
	}
	n, err := acquireLua.Exec(ctx, s.client, []string{s.keys.occupancy(name)}, []string{nodeField(s.node), strconv.Itoa(limit)}).AsInt64()
	if err != nil {
		return false, fmt.Errorf("%w: acquire %s: %w", ErrUnavailable, counter, err)
	}
	return n == 1, nil
}

// Release gives back one unit that Acquire counted on this node.
func (s *State) Release(ctx context.Context, counter string) error {
	_, _, err := s.count(ctx, counterPrefix+counter, -1)
	return err
}

// Count is counter's total across the cluster.
func (s *State) Count(ctx context.Context, counter string) (int64, error) {
	return s.Subscriptions(ctx, counterPrefix+counter)
}

// setCounterLua: KEYS occupancy; ARGV node field, units. Sets this node's units
// and recomputes the total from every node's fields.
var setCounterLua = newScript(`
if tonumber(ARGV[2]) > 0 then redis.call("HSET", KEYS[1], ARGV[1], ARGV[2]) else redis.call("HDEL", KEYS[1], ARGV[1]) end
local total = 0
local occ = redis.call("HGETALL", KEYS[1])
for i = 1, #occ, 2 do
  if occ[i] ~= "` + totalField + `" then total = total + tonumber(occ[i + 1]) end
end
if total > 0 then redis.call("HSET", KEYS[1], "` + totalField + `", total) else redis.call("DEL", KEYS[1]) end
return total`)

// RestoreCounter sets this node's units of counter to n, after Redis lost them
// (a restart without persistence) or after the node was taken for dead and
// cleaned while it still ran. Like Restore, it is what the node holds, not a
// transition.
func (s *State) RestoreCounter(ctx context.Context, counter string, n int) error {
	name := counterPrefix + counter
	if err := s.client.Do(ctx, s.client.B().Sadd().Key(s.keys.nodeChannels(s.node)).Member(name).Build().Pin()).Error(); err != nil {
		return fmt.Errorf("%w: restore %s: %w", ErrUnavailable, counter, err)
	}
	if err := setCounterLua.Exec(ctx, s.client, []string{s.keys.occupancy(name)}, []string{nodeField(s.node), strconv.Itoa(n)}).Error(); err != nil {
		return fmt.Errorf("%w: restore %s: %w", ErrUnavailable, counter, err)
	}
	return nil
}
