package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Defaults of the original PusherRateLimiter configuration; they are the
// per-user limits.
const (
	DefaultMessagesPerSecond = 10
	DefaultMessagesPerMinute = 600
	DefaultBurstLimit        = 50
	DefaultWindowSize        = 60 * time.Second
)

// ErrInvalidLimits is wrapped by every validation error of Limits, Policy and Config.
var ErrInvalidLimits = errors.New("ratelimit: invalid limits")

// Limits configure one token bucket plus one fixed window. An event is allowed
// only when both admit it.
//
// In a Policy's overrides a zero field means "inherit the policy's value"; in a
// Policy's own limits a zero field means "the package default". After those
// fills, every field must be positive (Validate).
type Limits struct {
	// MessagesPerSecond is the bucket's refill rate (tokens per second). May be
	// fractional (0.5 = one event every 2 s). Default 10.
	MessagesPerSecond float64 `yaml:"messagesPerSecond"`
	// MessagesPerMinute is how many events one window admits. Named for the
	// default 60 s window: with another WindowSize it is "per window". Once the
	// window is spent nothing is admitted until it resets, whatever the bucket
	// holds. Default 600.
	MessagesPerMinute int `yaml:"messagesPerMinute"`
	// BurstLimit is the bucket's capacity: how many events may arrive at once
	// after an idle period. It also caps the size of one batch (AllowN with
	// n > BurstLimit can never succeed). Default 50.
	BurstLimit int `yaml:"burstLimit"`
	// WindowSize is the length of the window, which starts with the first event
	// after the previous window ended (per key, so windows of different keys do
	// not all reset at the same instant). YAML takes a Go duration string ("60s").
	// Default 60s.
	WindowSize time.Duration `yaml:"windowSize"`
}

// DefaultLimits returns 10/s, 600 per 60 s window, burst 50.
func DefaultLimits() Limits {
	return Limits{
		MessagesPerSecond: DefaultMessagesPerSecond,
		MessagesPerMinute: DefaultMessagesPerMinute,
		BurstLimit:        DefaultBurstLimit,
		WindowSize:        DefaultWindowSize,
	}
}

// WithDefaults returns l with every zero field taken from base.
func (l Limits) WithDefaults(base Limits) Limits {
	if l.MessagesPerSecond == 0 {
		l.MessagesPerSecond = base.MessagesPerSecond
	}
	if l.MessagesPerMinute == 0 {
		l.MessagesPerMinute = base.MessagesPerMinute
	}
	if l.BurstLimit == 0 {
		l.BurstLimit = base.BurstLimit
	}
	if l.WindowSize == 0 {
		l.WindowSize = base.WindowSize
	}
	return l
}

// Upper bounds keep the nanosecond arithmetic far from int64 overflow.
const (
	maxRate  = 1e9 // one token per nanosecond
	maxCount = 1 << 30
	maxSpan  = 100 * 365 * 24 * time.Hour
)

// Validate reports the first unusable field, wrapping ErrInvalidLimits.
func (l Limits) Validate() error {
	switch {
	case math.IsNaN(l.MessagesPerSecond) || l.MessagesPerSecond <= 0 || l.MessagesPerSecond > maxRate:
		return fmt.Errorf("%w: messagesPerSecond must be in (0, 1e9], got %v", ErrInvalidLimits, l.MessagesPerSecond)
	case l.MessagesPerMinute <= 0 || l.MessagesPerMinute > maxCount:
		return fmt.Errorf("%w: messagesPerMinute must be in [1, %d], got %d", ErrInvalidLimits, maxCount, l.MessagesPerMinute)
	case l.BurstLimit <= 0 || l.BurstLimit > maxCount:
		return fmt.Errorf("%w: burstLimit must be in [1, %d], got %d", ErrInvalidLimits, maxCount, l.BurstLimit)
	case l.WindowSize < time.Millisecond || l.WindowSize > maxSpan:
		return fmt.Errorf("%w: windowSize must be in [1ms, 100y], got %v", ErrInvalidLimits, l.WindowSize)
	}
	// Compared as float: the span may not fit a Duration.
	if span := float64(l.BurstLimit) / l.MessagesPerSecond * float64(time.Second); span > float64(maxSpan) {
		return fmt.Errorf("%w: burstLimit/messagesPerSecond spans %.3gs, more than 100y", ErrInvalidLimits, span/1e9)
	}
	return nil
}

// Rule is validated Limits turned into the integer nanosecond form the stores
// compute with. It is immutable and shared by all keys it applies to.
type Rule struct {
	limits    Limits
	interval  int64 // ns per token, >= 1
	burst     int64
	tau       int64 // burst * interval: how far ahead of now the bucket may be drawn
	window    int64 // ns; 0 means no window (plain bucket)
	perWindow int64
}

// NewRule validates l and precomputes its arithmetic.
func NewRule(l Limits) (*Rule, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	r := newBucketRule(l.MessagesPerSecond, l.BurstLimit)
	r.limits = l
	r.window = int64(l.WindowSize)
	r.perWindow = int64(l.MessagesPerMinute)
	return r, nil
}

// newBucketRule is a Rule without a window, for the edge's per-IP limiter.
// Callers validate rate and burst.
func newBucketRule(perSecond float64, burst int) *Rule {
	interval := max(int64(math.Round(float64(time.Second)/perSecond)), 1)
	return &Rule{
		limits:   Limits{MessagesPerSecond: perSecond, BurstLimit: burst},
		interval: interval,
		burst:    int64(burst),
		tau:      int64(burst) * interval,
	}
}

// Check refuses what no store can ever admit at once: fewer than one event
// (ErrInvalidCount), or more than the burst or the window holds
// (ErrExceedsCapacity). Every Store runs it before touching state.
func (r *Rule) Check(n int) error { return checkCount(r, n) }

// Limits returns the limits the rule was built from.
func (r *Rule) Limits() Limits { return r.limits }

// Interval is the time between two tokens (1 s / MessagesPerSecond, rounded
// to the nanosecond).
func (r *Rule) Interval() time.Duration { return time.Duration(r.interval) }
