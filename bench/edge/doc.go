// Package edgebench is a Pusher protocol v7 load client for the embedded edge: it
// opens many WebSocket connections from a separate process, subscribes them, publishes
// through the signed HTTP API and measures connect rate, delivery rate, loss and
// publish-to-receive latency, plus the server's RSS read from /proc/PID/status.
//
// Publish-to-receive latency is measured by putting the publisher's clock (unix nanos)
// in the event data; publisher, server and clients run on one machine. The epoll
// receiver counts every frame (loss is exact) but records the latency of one text
// frame in eight (latencySample): parsing every timestamp cost the tool more CPU than
// reading the frames, on the cores it shares with the server. Figures in
// BENCHMARKS.md taken before 2026-12-01 15:17 UTC recorded every frame. A
// receiver given Spans (TrackSpans) records every message: its delivery by
// publish request (the first and last read of each) and its latency, since the
// timestamp is parsed anyway (peerload's paced runs, from 2026-12-07 16:00 UTC).
//
// The receiver (Receiver, NewReceiver, NewReceiverFor) is Linux-only, as are the
// load tools under bench/cmd that use it; the rest of the package builds anywhere.
package edgebench
