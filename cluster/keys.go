package cluster

// keyspace names every Redis key and pub/sub channel under the prefix. A
// channel's keys share the hash tag {name}, so a script that touches them runs on
// one Redis Cluster slot. Its pub/sub topic carries the same tag, so on Redis
// Cluster the script SPUBLISHes it on that slot's master (sharded pub/sub).
// Pusher channel names cannot hold braces, so the tag is always the whole name.
type keyspace struct{ prefix string }

// meta is a channel's hash: seq (the last publication's number) and epoch (a
// random id that changes when the history is lost, so that numbers restarting
// at 1 are not taken for duplicates).
func (k keyspace) meta(channel string) string { return k.prefix + ":{" + channel + "}:meta" }

// log is a channel's bounded history stream; entry ids are 0-<seq>.
func (k keyspace) log(channel string) string { return k.prefix + ":{" + channel + "}:log" }

// cache is a cache channel's last publication.
func (k keyspace) cache(channel string) string { return k.prefix + ":{" + channel + "}:cache" }

// congested is set (to a node id, with a short expiry) while a node's
// subscribers of the channel lag behind: publishes then hold their callers
// (Broker.SetCongested, Receipt.Hold).
func (k keyspace) congested(channel string) string { return k.prefix + ":{" + channel + "}:cong" }

// topic is the channel's pub/sub channel.
func (k keyspace) topic(channel string) string { return k.prefix + ":{" + channel + "}:pub" }

// channelOf is the inverse of topic, "" when the name is not one of ours.
func (k keyspace) channelOf(topic string) string {
	p := k.prefix + ":{"
	const s = "}:pub"
	if len(topic) < len(p)+len(s) || topic[:len(p)] != p || topic[len(topic)-len(s):] != s {
		return ""
	}
	return topic[len(p) : len(topic)-len(s)]
}

// nodes is the sorted set of node ids scored by registration expiry (Redis
// server time, unix ms). It and the registrations share the hash tag {nodes}, so
// one script can update both on Redis Cluster.
func (k keyspace) nodes() string { return k.prefix + ":{nodes}" }

// node is one node's registration (JSON), expiring with it.
func (k keyspace) node(id string) string { return k.prefix + ":{nodes}:" + id }

// occupancy is a channel's hash of subscriptions: one field per node with its
// count, and totalField with the sum.
func (k keyspace) occupancy(channel string) string { return k.prefix + ":{" + channel + "}:occ" }

// presence is a channel's hash of "node|user" fields counting that user's
// sockets on that node.
func (k keyspace) presence(channel string) string { return k.prefix + ":{" + channel + "}:pres" }

// users is a channel's hash of user id to the user's sockets across the cluster.
func (k keyspace) users(channel string) string { return k.prefix + ":{" + channel + "}:users" }

// userInfo is a channel's hash of user id to the member's user_info JSON.
func (k keyspace) userInfo(channel string) string { return k.prefix + ":{" + channel + "}:info" }

// occupied is the set of occupied channel names (for listing channels).
func (k keyspace) occupied() string { return k.prefix + ":channels" }

// nodeChannels is the set of channels where a node holds subscriptions or
// presence, so that whoever reaps the node knows what to clean.
func (k keyspace) nodeChannels(id string) string { return k.prefix + ":{nodes}:" + id + ":chans" }

// dead is the set of reaped nodes whose leftovers are not yet cleaned.
func (k keyspace) dead() string { return k.prefix + ":{nodes}:dead" }

// claim marks a dead node as being cleaned by one live node.
func (k keyspace) claim(id string) string { return k.prefix + ":{nodes}:" + id + ":claim" }

// totalField holds an occupancy hash's sum; node fields are nodeField(id).
const totalField = "total"

func nodeField(id string) string { return "n:" + id }

// rate is one limiter key's bucket state.
func (k keyspace) rate(limiter, key string) string { return k.prefix + ":rl:" + limiter + ":" + key }

// idempotency is one reserved event id.
func (k keyspace) idempotency(id string) string { return k.prefix + ":id:" + id }

// reply is a Control request's reply list, expiring with the request.
func (k keyspace) reply(id string) string { return k.prefix + ":{ctl}:reply:" + id }
