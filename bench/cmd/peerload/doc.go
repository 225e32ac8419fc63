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
//     growth per connection and the connections established per second;
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
//
// Subscribers are read by bench/edge's epoll receiver in this process, which
// understands each server's framing; latency is the publisher's clock in the
// event data against the receiver's.
//
// With -capacity, it instead checks the capacity model of BENCHMARKS.md:
// -capacity-procs pushercm processes each hold -capacity-conns connections
// opened by as many child processes of this tool (the open-file limit is per
// process), and a publisher sends to all of them at -capacity-rate events/s.
package main
