// Package cluster is pushercm's shared engine on Redis: what lets several nodes
// serve one app as one server. It knows Redis and nothing of WebSockets, gRPC or
// the Pusher protocol; the edge gives it opaque payloads and gets them back.
//
// The client is rueidis: it pipelines concurrent commands on shared connections
// automatically (what makes one script call per publish cheap under load, and
// what Centrifugo's Redis engine uses for the same reason), speaks RESP3 and
// Redis Cluster (redis.clusterAddrs: channels' keys spread over the masters by
// slot), and gives pub/sub dedicated connections with hooks that report when
// they break.
//
// # Broker
//
// Publish makes one script call whatever the number of nodes or subscribers: it
// numbers the publication in the channel's sequence, appends it to the channel's
// bounded history (Config.HistorySize entries, kept Config.HistoryTTL after the
// last publication) and PUBLISHes it on the channel's topic. A node subscribes a
// topic while it has local subscribers. Guarantees to the Handler of a node:
//   - each channel's messages arrive in sequence order, each at most once;
//   - a gap (a reconnect to Redis, a burst that overflowed the local queue) is
//     filled from the history, so nothing still in the history is lost; what the
//     history no longer holds is counted in BrokerStats.Lost, never skipped
//     silently;
//   - after Redis comes back, every subscribed channel is subscribed again and
//     caught up, with no call from the caller;
//   - messages published before Subscribe returned a baseline are not delivered;
//     every one published after Subscribe returned is (or is counted lost), also
//     when the connection was still being made;
//   - when Redis loses publishes it had accepted (a restart from a snapshot
//     older than them, a replica promoted before it had them), the publishes
//     after it are delivered all the same, though they reuse the lost ones'
//     sequence numbers. The publish script tells by LASTSAVE, which every Redis
//     process sets when it starts and saves: the first publish to a channel by
//     a process that has not written it since then starts a new epoch of the
//     channel's numbering, which says from which number on its publishes are
//     new. LASTSAVE counts seconds, so a restart in the second of the last save
//     (or a promoted replica whose LASTSAVE is its master's) goes unseen: the
//     publishes that reuse delivered numbers are then dropped as duplicates
//     until the numbering passes them. Epochs carry Redis' clock, by which a
//     node tells a state restored from before the epoch it follows.
//
// On Redis Cluster (the rueidis client is in cluster mode, whether from
// redis.clusterAddrs or a redis.url naming a cluster node) the broker uses
// sharded pub/sub: the script publishes with SPUBLISH, which reaches only the
// master that owns the channel's slot (the topic carries the keys' hash tag),
// where PUBLISH would be broadcast to every master over the cluster bus. The
// broker keeps one pub/sub connection per master that owns a subscribed
// channel, found from CLUSTER SLOTS, and SSUBSCRIBEs each channel on its master.
// The guarantees above hold per channel; channels on different masters are not
// ordered with each other. A channel whose connection breaks, or whose slot
// moves (Redis then sends sunsubscribe; a failover breaks the connection), is
// subscribed again where its slot now is and caught up from the history; while
// a master cannot be reached, every retry reads CLUSTER SLOTS again, so the
// broker follows its replica once Redis Cluster has promoted it. The first
// channel of a master is subscribed by the broker's run loop once it has
// connected there: Subscribe returns before, and what is published meanwhile is
// caught up from the history.
//
// The broker never sends UNSUBSCRIBE or SUNSUBSCRIBE, and never hands a pub/sub
// connection back to rueidis' pool (which would send it): rueidis follows an
// unsubscribe with a PING, and a Redis that refuses that PING (MISCONF, a
// failed snapshot with stop-writes-on-bgsave-error on) makes rueidis' reader
// panic, ending the process. Unsubscribe therefore only stops the handler; the
// connection keeps receiving the channel until it is replaced, once stale
// channels are a quarter of the live ones (at least 256) or have lingered a
// minute (on Redis Cluster, counted and replaced per master). The replacement
// subscribes the live channels first and closes the old connection after a
// PING that marks everything sent to it as read, so nothing is missed.
//
// Publish returns an error wrapping ErrUnavailable whenever Redis did not confirm
// the publication: a caller reports it refused, never accepted and dropped.
//
// Backpressure: a node whose subscribers of a channel lag behind sets the
// channel's congested key (SetCongested: SET with a short PX, under the
// channel's hash tag, holding the node id), renews it while the lag lasts and
// takes it back after (ClearCongested deletes it only when this node set it
// last, so one node never clears another's). The publish script returns the
// key's remaining time in the same reply (Receipt.Hold): telling publishers
// costs no extra round trip, and one PUBLISH per event stays one. Congestion
// is one PTTL, for a caller waiting until the key is gone. A node that dies
// congested leaves the key for its expiry at most.
//
// # Registry
//
// Each node registers itself with its NodeInfo and refreshes it every
// Config.Heartbeat. A node that stops (SIGKILL, a lost network) disappears from
// Nodes after Config.NodeTTL, and Reap then hands its id to exactly one node so
// that what it left behind (presence, counts) is cleaned up once. Times are
// Redis' own clock, so nodes' clocks need not agree.
//
// # State
//
// State holds each channel's subscription counts (a field per node and their
// total) and presence members (a count per node and user, a count per user, the
// user_info) for the whole cluster, changed by one script call per socket
// subscribe, unsubscribe, join or leave. Guarantees:
//   - occupied / vacated and member added / removed are reported to exactly one
//     caller per cluster-wide transition: a user with sockets on two nodes is one
//     member, and leaving one node removes nothing;
//   - member limits hold for the cluster;
//   - a dead node's subscriptions and members are removed by the node that
//     claimed it (Registry.Reap, State.CleanNode, Registry.Bury), which is handed
//     the transitions to announce; cleaning twice announces nothing twice.
//
// # Control
//
// Control is request/response between nodes with nothing but Redis between
// them: a request is published once on ControlChannel through the Broker,
// naming the nodes that must answer, and each answers with RPUSH on the
// request's own list, which the asker drains with BLPOP until every node
// answered, one answer settles it, or its deadline. A list rather than a reply
// channel: a reply that comes before the asker waits is kept, with no
// SUBSCRIBE per request. A node that does not answer (dead, not yet reaped)
// costs the asker its deadline and is named in the ErrNoAnswer error.
// Requests past their deadline are dropped, so nothing runs late after a
// reconnect.
//
// # Limits and idempotency
//
// RateStore is a ratelimit.Store whose buckets every node shares: one script
// call per check, the memory store's arithmetic on Redis' clock (microseconds),
// the same decision and figures. A caller Redis refused one event is refused
// locally until the instant Redis named, without a round trip. Checks of one
// key made while its call is in flight wait for it and then share one call,
// which applies them in arrival order at one instant (a service's principal
// under load costs Redis one script run per round trip, not one per check). When Redis does
// not answer, the node's own store decides (counted; Degraded says so): an outage
// loosens the limits to one budget per node, it never refuses all traffic.
//
// IdempotencyStore reserves event ids cluster-wide (SET NX PX): a retry through
// any node inside the window is a duplicate. It has no fallback: without Redis a
// reservation fails and the publish is refused, never delivered twice.
//
// State.Acquire / Release keep capped counters for the cluster (the
// "connections" of cluster.maxConnections): one script call, no call to other
// nodes. Units are kept per node, so a dead node's are released by CleanNode,
// and a node that Redis forgot (a restart without persistence, or cleaned as
// dead while it ran) writes its own back with RestoreCounter.
//
// # Keys
//
// Every key and topic starts with Config.Prefix, so two apps or environments on
// one Redis never see each other. A channel's keys share the hash tag {channel};
// the registry's share {nodes}.
//
// # Commands
//
// Every command the package builds is pinned (Completed.Pin): rueidis never
// puts it back in its command pool. rueidis recycles a command once its reply
// arrives, but nothing orders the connection writer's read of the command
// before that, so a command built next over the recycled slice races with the
// read (harmless, as the writer has sent it, but the race detector fails any
// test that restarts Redis about once in twenty). A pinned command costs an
// allocation instead (BenchmarkPublish: 25 allocations an operation, not 20).
package cluster
