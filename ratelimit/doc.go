// Package ratelimit decides whether events may pass: keyed token buckets
// combined with fixed windows, named limiters with per-key overrides, and a
// tiny inline bucket for per-connection limits at the edge. It knows nothing
// of gRPC or HTTP; the interceptors and the edge adapt it.
//
// Model. A Rule (from Limits) is a token bucket of BurstLimit tokens refilled
// at MessagesPerSecond, plus a window of WindowSize admitting
// MessagesPerMinute events. The bucket is kept as a GCRA "theoretical arrival
// time" in integer nanoseconds, so there is no floating-point drift and no
// refill timer. A key's window starts with its first event after the previous
// window ended.
//
// Guarantees:
//   - An event is admitted only when both the bucket and the window admit it;
//     once a window is spent nothing is admitted until it ends, whatever the
//     bucket holds.
//   - AllowN is all or none: a refused request consumes nothing, and a batch
//     counts each of its events. n above the burst or the window can never be
//     admitted and returns ErrExceedsCapacity.
//   - RetryAfter is exact to the nanosecond: the same request made RetryAfter
//     later is admitted if nothing else consumed meanwhile, and one
//     nanosecond earlier it is not. ResetTime is documented on Decision.
//   - Take is atomic per key: any number of goroutines hammering one key are
//     admitted at most what the rule allows (MemoryStore and Bucket both).
//   - Peek never changes state and never creates a key.
//   - A key is deleted only when its state equals a never-seen key's (bucket
//     full, window over), so expiry changes no decision. Memory is therefore
//     bounded by the keys active within one expiry horizon (the window, or
//     the bucket's refill time), plus at most one sweep interval; a sweep
//     rebuilds a shard's table to its live size, so memory also shrinks.
//   - The in-memory check does not allocate. The package starts no
//     goroutines; MemoryStore.Run and Set.Run are for the owner to start.
//   - Counters are kept per limiter name only, so their cardinality does not
//     grow with keys.
//
// Dry-run is the caller's: Config.DryRun is carried in the Set, and limiters
// count refusals as usual so a dry run shows what enforcing would do.
// Response headers are the caller's too: Config.Headers (default true) and
// Config.HeadersBelowPercent (default 50) are carried in the Set, and
// Set.HeadersFor tells the gRPC interceptors whether an admitted call
// carries x-ratelimit-limit, -remaining and -reset: only once its tightest
// limit has less than that share left.
//
// Stores. Each limiter keeps its buckets in a MemoryStore unless WithStore
// names another ratelimit.Store for it (the cluster's Redis store, for
// Config.Store "redis"); the package itself only ever builds memory stores
// and knows nothing of Redis.
//
// Time comes from a Clock (SystemClock in production, ManualClock in tests).
// State is kept in wall-clock nanoseconds (so ResetTime and a shared store
// mean the same instant everywhere); a backwards step of the system clock
// delays refills by the size of the step, a forward step refills early.
// Reading the system clock costs about as much as a check, so the *At
// variants let a caller checking several keys for one request read it once.
package ratelimit
