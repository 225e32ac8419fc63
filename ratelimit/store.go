package ratelimit

import (
	"context"
	"time"

	"github.com/milequest/pushercm/errcode"
)

// ErrExceedsCapacity is returned when n events could never be admitted at
// once because n is larger than the burst or the window. Retrying does not help.
var ErrExceedsCapacity = errcode.New(errcode.InvalidArgument, "ratelimit: request exceeds the limit's capacity")

// ErrInvalidCount is returned for n < 1.
var ErrInvalidCount = errcode.New(errcode.InvalidArgument, "ratelimit: event count must be at least 1")

// Store keeps per-key limiter state. MemoryStore is the default; a shared
// implementation (Redis, for the cluster mode) satisfies the same interface
// so that every node draws from the same buckets.
//
// Implementations must be safe for concurrent use and must make Take atomic
// per key: concurrent takes never admit more than the rule allows. A denied
// Take consumes nothing. A shared store may use its own time source (e.g. the
// Redis TIME command) instead of now, and then reports RetryAfter and
// ResetTime relative to it.
type Store interface {
	// Take admits n events for key under r, or none of them.
	Take(ctx context.Context, key string, n int, now time.Time, r *Rule) (Decision, error)
	// Peek reports what a Take of one event would answer, without changing
	// anything. An unknown key is reported as fresh and is not created.
	Peek(ctx context.Context, key string, now time.Time, r *Rule) (Decision, error)
}
