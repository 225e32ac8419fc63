package ratelimit

import "time"

// Decision is the answer to one check.
//
// Two limits apply to a key, the token bucket and the window; the one that
// constrains the caller most is "binding" and Limit, ResetTime describe it.
type Decision struct {
	// Allowed is true when the events were admitted (and, for a take, counted).
	Allowed bool
	// Limit is the capacity of the binding limit: BurstLimit for the bucket,
	// MessagesPerMinute for the window. Zero means no limit applies to the key.
	Limit int
	// Remaining is how many more events would be admitted right now: the
	// smaller of the bucket's whole tokens and the window's unspent count.
	Remaining int
	// RetryAfter is zero when allowed. When not, it is the exact wait after
	// which the same request is admitted if nothing else is taken meanwhile:
	// the later of the bucket holding enough tokens and the window resetting.
	RetryAfter time.Duration
	// ResetTime, when denied, is the instant RetryAfter points at. When
	// allowed, it is when the binding limit next replenishes: the bucket's next
	// whole token (or now if the bucket is full) or the window's end.
	ResetTime time.Time
}
