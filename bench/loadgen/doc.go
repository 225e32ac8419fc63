// Package loadgen is the closed-loop load generator shared by the gRPC load
// tools in bench/cmd: N callers call as fast as they can, an unmeasured
// warm-up, then a measured window with request rate, latency percentiles of
// the successful calls and CPU readings taken exactly at the window's edges.
// It also holds what the load tools share besides: building and spawning
// pushercm (Spawn) and an opt-in CPU profile of the tool itself (CPUProfile).
package loadgen
