// Package loadgen is the closed-loop load generator shared by the gRPC load
// tools in bench/cmd: N callers call as fast as they can, an unmeasured
// warm-up, then a measured window with request rate, latency percentiles of
// the successful calls and CPU readings taken exactly at the window's edges.
// It also holds what the load tools share besides: building and spawning
// pushercm (Spawn), an opt-in CPU profile of the tool itself (CPUProfile),
// and driving ghz, the load generator the performance issues name, at a
// pinned version (InstallGHZ, GHZ.Run) so that a phase measured with it
// reports the same Result as one measured with the built-in callers, and the
// median the tools summarise runs with (Median).
package loadgen
