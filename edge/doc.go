// Package edge is pushercm's embedded Pusher Channels protocol v7 server: WebSocket
// clients at /app/{key} (stock pusher-js works unchanged), the Pusher HTTP API at
// /apps/{app_id}/... (package edge/httpapi, mounted here) and an in-process API that
// the delivery and connection services build on.
//
// What it guarantees:
//   - Every published frame is encoded once per channel, as a complete WebSocket frame,
//     and the same bytes are written to every subscriber. A publish never blocks on a
//     client: writes go to the event loop (lesismal/nbio) without waiting, and each
//     connection has a bounded outbound queue (Config.WriteQueueBytes). A client whose
//     queue overflows is closed with 4100 and counted in Stats.SlowConsumersClosed,
//     the events it did not take in Stats.SlowConsumerDropped.
//   - A channel whose subscribers fall behind together slows its publishers down
//     instead: when at least Config.CongestedPercent of its subscribers here (and at
//     least 8) are past half their queue, a Publish to it is queued and then returns
//     only once they are no longer so many, Config.PublishHoldMax at most (counted in
//     Stats.PublishesHeld, PublishHeldTime, PublishHoldTimeouts). In a cluster the
//     node with the lagging sockets tells every publishing node through the Cluster
//     (see Congestion). One or two slow clients never hold a publish; client events
//     are never held.
//   - A publish (Publish, SendToUser) counts the sockets it is for (the channel's
//     subscribers or the user's signed-in sockets, less the excluded one) and queues
//     one entry in an outbox; the first flusher queues the entries on the sockets at
//     the start of each round, on one core, consecutive entries for one channel in
//     one step per socket. Frames reach every socket in publish order, across
//     channels and users. A membership change (subscribe, unsubscribe, sign-in,
//     disconnect) first empties the outbox, so a new subscriber gets no event
//     published before it joined and a leaving one still gets those published
//     before it left. Client events and protocol replies are queued directly.
//   - A socket the server closes (Shutdown's 4200, Disconnect, TerminateUser, pong or
//     sign-in timeout) leaves the hub in the same step that empties the outbox: it
//     gets every frame it was counted for (delivered_to), then the pusher:error if
//     any, then the close frame, and no later publish counts it. Only a slow consumer
//     (4100) is closed without what overflowed its queue.
//   - Writes are made by flusher goroutines (GOMAXPROCS-1), each socket's pending
//     frames joined into one write. On Linux a flusher submits up to 128 sockets'
//     writes with one io_uring_enter (Config.NoIOUring turns that off; kernels without
//     io_uring or without its send operation fall back to write(2) by themselves). A
//     send the kernel takes only in part hands the rest to the event loop, and the
//     socket stays on the loop until it has written it, so frames are never reordered
//     or interleaved. A send the kernel refuses for a reason that is not the socket's
//     (-EINVAL, -EOPNOTSUPP, -ENOMEM...) goes through the event loop instead, and the
//     flusher drops its ring; only a socket error (reset, broken pipe) closes the
//     socket. When io_uring_enter itself fails, completed sends are settled from
//     their completions and only sends the kernel never took are written again, so
//     no byte goes out twice.
//     Config.FlushInterval spaces write rounds to coalesce more under heavy load.
//     A socket keeps the lists of its pending frames between rounds while it is
//     busy; the sweeper drops them within one pass (at most 5 s) after it goes quiet.
//   - One event-loop poller serves all sockets; there is no goroutine per connection.
//     An idle poller parks in Go's netpoller, not in a blocking epoll_wait, so it
//     holds no thread's P while it waits (nbio as patched in third_party/nbio; see
//     third_party/README.md).
//     On Linux the listener accepts each socket with accept4 and hands it to the
//     poller as it is, with TCP_NODELAY set, as Go's listener would; a failing
//     accept (EMFILE: out of descriptors) is retried with a backoff of up to 1 s
//     and logged once: it neither spins nor stops accepting.
//     A single sweeper goroutine pings silent clients (pusher:ping, or a WebSocket ping
//     for clients that use them) and closes the ones that stay silent with 4201;
//     that is the only liveness check (the listener sets no TCP keep-alive).
//   - Requests are routed by the mux given to Handle / HandleLimit, its answers
//     cached by method and path where they depend on nothing else (routes are
//     fixed once the server starts); at most 1,024 paths are kept.
//   - Channel-level failures (bad auth, limits, unknown channel kinds) never close the
//     socket: they answer pusher:subscription_error or pusher:error with the channel.
//   - Cache channels keep their last event for Config.CacheTTL, at most
//     Config.MaxCacheChannels of them: a full store evicts the entry nearest to
//     expiry, and that channel answers cache_miss.
//   - Presence membership is per user id: member_added and member_removed are sent only
//     for a user's first and last connection in the channel. Signed-in users
//     (pusher:signin) get #server-to-user-{id} events on every socket, and watchlist
//     online/offline events on their first/last socket.
//   - Connection-level refusals (unknown key 4001, protocol version 4006/4007/4008,
//     origin 4009, connection quota 4004 (this server's, or a ConnectionPool shared
//     beyond it such as a cluster's), open sockets per client address over
//     Config.MaxConnectionsPerIP 4004, new sockets per address per second 4100) are
//     sent as pusher:error and then as the close code, and counted in
//     Stats.ConnectionsRefused by reason.
//   - The client address is resolved once per socket by package clientip:
//     forwarding headers count only from Config.TrustedProxies. That address is
//     what the per-IP limits count, what logs show and ConnectionInfo.RemoteAddr
//     reports.
//   - Client framing follows RFC 6455: a frame without a mask closes the socket with
//     1002 and nothing after it is parsed; a binary message closes it with 1003
//     (the Pusher protocol is text only). The mask check reads the plain byte
//     stream, so it applies to listeners without TLS in the event loop.
//   - HTTP requests on the listener are bounded before any handler runs: a head
//     (request line and headers) over Config.MaxHeaderBytes is answered 431
//     while it arrives, and a body over its route's limit (HandleLimit; the
//     HTTP API's is Config.MaxAPIBodyBytes) 413 as soon as its Content-Length
//     is read, or once a chunked body passes it. A refused connection's further
//     bytes are dropped unread until it is closed CloseGrace later, so an
//     unauthenticated client holds at most about the largest route limit plus
//     the head limit in memory. Counted in Stats.HTTPRequestsRefused.
//   - Hooks (WebhookSink, Metrics) are small interfaces; nil means the built-in
//     default, so the package works standalone.
//   - Lifecycle and message events go to watchers (Watch, WatchMessages) through a
//     lifecycle.Hub: a watcher that falls behind is cut off with ErrWatcherLagged
//     (= lifecycle.ErrLagged) and never slows the edge; Shutdown ends them with
//     ErrClosed.
//   - Shutdown drains: publishes are refused (ErrClosed), clients are closed with 4200
//     at Config.DrainRate per second so they do not stampede back, and the listener
//     stops once they have read their close frames (or after CloseGrace), within the
//     context given to Shutdown.
//
// # Cluster
//
// With WithCluster the server is one node of several sharing a Cluster (Redis,
// wired by the app; see Cluster for the seam). Without one nothing changes: the
// hub is the whole server and no call leaves the process. With one:
//   - every publish is one Cluster.Publish; the node gets it back through
//     Receive like every other node listening to the channel, and encodes the
//     frame once for its sockets; Publish fails with ErrUnavailable (delivered
//     to nobody) when the Cluster did not take it;
//   - a channel congested on a node (its sockets there lag) is said so through
//     Cluster.Congested, renewed while it lasts; a Publish whose reply reports
//     it (Published.Hold) waits, PublishHoldMax at most, while one poller per
//     channel asks Cluster.Hold until it is over;
//   - a socket's subscribe makes the Cluster calls (listen, count, join,
//     members, cache) before subscription_succeeded, so every event published
//     after it reaches the socket; its leave is reported after the hub lock,
//     in the background, and Shutdown waits for those reports;
//   - occupied / vacated, member added / removed and a user's online / offline
//     are the Cluster's transitions, announced (frames, webhooks, lifecycle
//     events) by the one node the Cluster reported them to; NodeGone announces
//     what a dead node left;
//   - a Cluster call that fails does not fail the socket: the hub keeps its own
//     state and Dirty tells the app to write Snapshot back once Redis answers.
//
// Close and error codes used (PUSHER-PROTOCOL.md §1.6): 4001 unknown app key, 4004 over
// Limits.MaxConnections or Config.MaxConnectionsPerIP, 4006/4007/4008 protocol version, 4009 origin refused, user
// terminated (TerminateUser) or not signed in within UserAuthTimeout, 4100 slow
// consumer, per-IP connection limit or server draining (new sockets), 4200 drain of
// existing sockets, 4201 no pong in time. Without closing: 4301 client event rejected,
// 4302 watchlist over 100 ids, 4009 failed pusher:signin, null for malformed frames;
// pusher:subscription_error AuthError/401, LimitReached/4100 (presence full or too many
// subscriptions), LimitReached/4301 (member info or user id too large),
// LimitReached/4009 (channel name too long), InvalidChannel/4009. WebSocket close
// codes: 1002 unmasked client frame (plain connections only: under Config.TLS the
// check, which reads the raw stream, is not installed), 1003 binary message, 1009
// message too large.
package edge
