//go:build linux

// Command peerload compares pushercm with the servers users would run instead
// (Centrifugo, soketi) on this machine, with one harness and the same client
// code for all (issue 18). `make bench-peers` installs the peers at pinned
// versions and runs it:
//
//	go run ./bench/cmd/peerload -centrifugo bin/peers/centrifugo -soketi bench/peers/soketi/node_modules/.bin/soketi -write BENCHMARKS.md
//
// Every run starts its server afresh on loopback from the configuration
// checked in under bench/peers, and the servers' runs are interleaved
// (scenario by scenario, the order of the servers rotated each round), so
// that drift on a shared machine spreads over all of them. A peer whose
// binary is missing is left out, and the table says so.
//
// Runs (each bounded in time; the whole tool stops itself at -timeout):
//
//   - idle: -idle connections subscribed to 100 channels: the server's RSS
//     growth per connection, the connections established per second and the
//     server's CPU time per connection while they connected (the client shares
//     the machine, so the rate is bounded by both);
//   - burst1000: 1 channel x 1000 subscribers, published through the HTTP API
//     in batches of 10 as fast as accepted, with at most 50 events per
//     subscriber outstanding (throughput, not the slow-consumer cut-off):
//     messages delivered per second and the server's CPU per message;
//   - fan2000: 1 channel x 2000 subscribers at 100 events/s: p99 of
//     publish-to-receive latency;
//   - fan100x10: 100 channels x 10 subscribers at 1000 events/s: the same;
//   - grpc0, grpc100: the gRPC publish call (pushercm SendEvent, Centrifugo
//     Publish; soketi has none) by -c closed-loop callers, with no
//     subscriber and with 100 subscribers on the channel;
//   - http0, http100: the same through the HTTP publish API, one event a call
//     (Pusher's signed /events, Centrifugo's /api/publish with its API key).
//     The client signs each Pusher request (HMAC-SHA256 and MD5) on the same
//     two cores, so http0's calls/s is partly the client's; the server's CPU
//     time per call is its own row.
//
// Subscribers are read by bench/edge's epoll receiver in this process, which
// understands each server's framing; latency is the publisher's clock in the
// event data against the receiver's. The paced runs (fan2000, fan100x10)
// record every delivery's latency (the others one in eight) and also print
// `per_request:` the p50 and p99 over publish requests of the first and the
// last delivery's latency (edgebench.Spans): the first is the request's way in
// (the publisher, the server's handling and its first write), first to last
// the fan-out's writes and the subscribers' reads.
//
// With -cluster, it instead compares clusters (issue 15): pushercm and
// Centrifugo each as three processes on one Redis (a redis-server of the
// run's own unless -redis names one, so that INFO commandstats counts their
// commands only; every run under a fresh key prefix), with the subscribers on
// node 0 and the events published through node 2's HTTP API, so that every
// delivery crosses Redis; then each on one node without Redis, and the
// -baseline-pushercm binary (pushercm built before cluster mode) on one node.
// Runs (-cluster-scenarios):
//
//   - a: 1 channel x 2000 subscribers at 100 events/s: loss and p50/p99;
//   - b: 1 channel x 1000 subscribers, batches of 10 from 4 publishers as
//     fast as the publishing node accepts, never paused for the subscribers:
//     events/s accepted, messages/s delivered, loss, p99, subscribers the
//     server closed;
//   - burst1000: b paused while the subscribers are 50 events behind, as in
//     the peer table.
//
// For a and b it reads INFO commandstats before and after the publishing:
// Redis commands (those run inside scripts included), PUBLISH and script
// calls per accepted event. It scrapes pushercm's /metrics on every node
// after each run (published, delivered, slow consumers, cluster counters),
// and sets the figures against issue 15's targets in a second table.
//
// With -capacity, it instead checks the capacity model of BENCHMARKS.md:
// -capacity-procs pushercm processes each hold -capacity-conns connections
// opened by as many child processes of this tool (the open-file limit is per
// process), and a publisher sends to all of them at -capacity-rate events/s.
package main
