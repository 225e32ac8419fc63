package delivery

import (
	"fmt"
	"strings"
	"time"

	"github.com/milequest/pushercm/errcode"
)

// Sentinel errors. Drivers and the Publisher wrap them with detail; callers test with
// errors.Is. Each carries an errcode.Code, which is all a transport reads:
//
//	ErrInvalid        → INVALID_ARGUMENT (a *ValidationError carries field violations)
//	ErrNotFound       → NOT_FOUND
//	ErrUnavailable    → CONNECTION_FAILED (UNAVAILABLE)
//	ErrDeliveryFailed → MESSAGE_DELIVERY_FAILED (UNAVAILABLE; ErrOutcomeUnknown: INTERNAL)
//	ErrRateLimited    → RATE_LIMITED
//
// An error matching none of them is an internal error.
var (
	// ErrInvalid: the request is malformed or breaks a limit. Never retried.
	ErrInvalid = errcode.New(errcode.InvalidArgument, "delivery: invalid request")
	// ErrNotFound: the channel (or other named thing) does not exist.
	ErrNotFound = errcode.New(errcode.NotFound, "delivery: not found")
	// ErrUnavailable: the upstream cannot be reached, or the circuit breaker is open and
	// fails fast. Nothing was delivered.
	ErrUnavailable = &errcode.Error{Code: errcode.ConnectionFailed, Message: "delivery: upstream unavailable",
		Public: "upstream unavailable; retry later", Temporary: true}
	// ErrDeliveryFailed: the upstream was reached but the event could not be delivered
	// after the configured retries.
	ErrDeliveryFailed = &errcode.Error{Code: errcode.MessageDeliveryFailed, Message: "delivery: message delivery failed",
		Public: "message delivery failed after retries", Temporary: true}
	// ErrOutcomeUnknown (an ErrDeliveryFailed): the upstream took the request but its
	// answer was lost (a reset or a timeout after the request was sent). The event may
	// have been delivered; it was not retried, since a retry could deliver it twice.
	// Not Temporary: retry policies repeat UNAVAILABLE, and this event may have been
	// delivered already, so it maps to INTERNAL.
	ErrOutcomeUnknown = &errcode.Error{Code: errcode.MessageDeliveryFailed,
		Message:  ErrDeliveryFailed.Message + ": outcome unknown, the event may have been delivered",
		Public:   "delivery outcome unknown: the event may have been delivered",
		Metadata: map[string]string{"outcome": "unknown"}, Err: ErrDeliveryFailed}
	// ErrRateLimited: the upstream kept answering 429 (Too Many Requests) until the
	// retries ran out. Nothing was delivered. See UpstreamRateLimit.
	ErrRateLimited = &errcode.Error{Code: errcode.RateLimited, Message: "delivery: upstream rate limit",
		Public: "upstream rate limit; retry later"}
)

// UpstreamRateLimit is an ErrRateLimited (and an ErrDeliveryFailed, through Cause) with
// the wait the upstream asked for, or the driver's next backoff when it named none.
type UpstreamRateLimit struct {
	RetryAfter time.Duration
	Cause      error
}

func (e *UpstreamRateLimit) Error() string {
	return fmt.Sprintf("%v (retry after %v)", e.Cause, e.RetryAfter)
}

// RetryDelay is the wait the upstream asked for (errcode.Delayed).
func (e *UpstreamRateLimit) RetryDelay() time.Duration { return e.RetryAfter }

// Unwrap returns ErrRateLimited and the cause.
func (e *UpstreamRateLimit) Unwrap() []error { return []error{ErrRateLimited, e.Cause} }

// FieldViolation names one invalid field with a path in the gRPC request's terms
// ("event.channels[2]", "event.name") and a human-readable description.
type FieldViolation struct {
	Field       string
	Description string
}

// ValidationError lists every field violation of one event, so that the caller can report
// them all at once (google.rpc.BadRequest). It matches ErrInvalid with errors.Is.
type ValidationError struct {
	Violations []FieldViolation
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("delivery: invalid event: ")
	for i, v := range e.Violations {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(v.Field)
		b.WriteString(": ")
		b.WriteString(v.Description)
	}
	return b.String()
}

// FieldViolations lists the violations for transports (errcode.Fielded).
func (e *ValidationError) FieldViolations() []errcode.Violation {
	out := make([]errcode.Violation, len(e.Violations))
	for i, v := range e.Violations {
		out[i] = errcode.Violation(v)
	}
	return out
}

// Unwrap makes errors.Is(err, ErrInvalid) true for validation errors, and gives
// them its code.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// WithPrefix returns a copy whose field paths are re-rooted, e.g. from "event.name" to
// "events[3].name" for a batch request.
func (e *ValidationError) WithPrefix(from, to string) *ValidationError {
	out := &ValidationError{Violations: make([]FieldViolation, len(e.Violations))}
	for i, v := range e.Violations {
		if rest, ok := strings.CutPrefix(v.Field, from); ok {
			v.Field = to + rest
		}
		out.Violations[i] = v
	}
	return out
}
