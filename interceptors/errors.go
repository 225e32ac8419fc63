package interceptors

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/milequest/pushercm/errcode"
	"github.com/milequest/pushercm/telemetry"
)

// Domain is the ErrorInfo domain of every pushercm error.
const Domain = "pushercm"

// Reasons are the product's error codes (ErrorInfo.reason), DESIGN.md §3;
// the values are errcode's, named here for callers of this package.
const (
	ReasonAuthenticationFailed    = string(errcode.AuthenticationFailed)
	ReasonAuthorizationFailed     = string(errcode.AuthorizationFailed)
	ReasonConnectionPoolExhausted = string(errcode.ConnectionPoolExhausted)
	ReasonConnectionFailed        = string(errcode.ConnectionFailed)
	ReasonMessageDeliveryFailed   = string(errcode.MessageDeliveryFailed)
	ReasonInvalidArgument         = string(errcode.InvalidArgument)
	ReasonNotFound                = string(errcode.NotFound)
	// Added beyond DESIGN.md's table.
	ReasonLimitExceeded      = string(errcode.LimitExceeded)
	ReasonFailedPrecondition = string(errcode.FailedPrecondition)
	ReasonWatcherLagged      = string(errcode.WatcherLagged)
	ReasonInternal           = string(errcode.Internal)
)

// grpcCode is the one table from product codes to gRPC codes. Every
// errcode.Code must be listed here: an unlisted one is answered as an
// internal error (reason INTERNAL, message withheld), which is safe but
// wrong for the client.
func grpcCode(e *errcode.Error) (codes.Code, bool) {
	switch e.Code {
	case errcode.AuthenticationFailed:
		return codes.Unauthenticated, true
	case errcode.AuthorizationFailed:
		return codes.PermissionDenied, true
	case errcode.RateLimited, errcode.ConnectionPoolExhausted, errcode.WatcherLagged:
		return codes.ResourceExhausted, true
	case errcode.ConnectionFailed:
		return codes.Unavailable, true
	case errcode.MessageDeliveryFailed:
		// INTERNAL, not UNAVAILABLE, unless a retry is safe: retry policies
		// repeat UNAVAILABLE, and the event may have been delivered already.
		if e.Temporary {
			return codes.Unavailable, true
		}
		return codes.Internal, true
	case errcode.InvalidArgument:
		return codes.InvalidArgument, true
	case errcode.NotFound:
		return codes.NotFound, true
	case errcode.LimitExceeded, errcode.FailedPrecondition:
		return codes.FailedPrecondition, true
	default:
		return codes.Internal, false
	}
}

// Errors for handlers of this service that have no domain error of their own.
var (
	// ErrInvalidArgument: a request field is wrong. Prefer FieldError, which
	// names the field.
	ErrInvalidArgument = errcode.New(errcode.InvalidArgument, "invalid argument")
	// ErrFailedPrecondition: the call cannot work in this state or on this
	// driver (for example socket-level calls on the pusher driver).
	ErrFailedPrecondition = errcode.New(errcode.FailedPrecondition, "failed precondition")
	// ErrRateLimited: a rate limit refused the call. Use RateLimitError to
	// carry the retry hint.
	ErrRateLimited = errcode.New(errcode.RateLimited, "rate limited")
	// ErrNotFound: the request names something that does not exist (a
	// cluster node that is not alive).
	ErrNotFound = errcode.New(errcode.NotFound, "not found")
)

// FieldError is an invalid request field; it maps to INVALID_ARGUMENT with
// a google.rpc.BadRequest naming the field.
type FieldError struct {
	Field       string
	Description string
}

// InvalidField returns a FieldError.
func InvalidField(field, description string) error {
	return &FieldError{Field: field, Description: description}
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Description }
func (e *FieldError) Unwrap() error { return ErrInvalidArgument }

// FieldViolations names the field (errcode.Fielded).
func (e *FieldError) FieldViolations() []errcode.Violation {
	return []errcode.Violation{errcode.Violation(*e)}
}

// RateLimitError is a refused call with the exact retry hint; it maps to
// RESOURCE_EXHAUSTED with RetryInfo and metadata retryAfterMs / resetTime.
type RateLimitError struct {
	Limiter    string
	Key        string
	RetryAfter time.Duration
	ResetTime  time.Time
}

func (e *RateLimitError) Error() string {
	return "rate limit exceeded (" + e.Limiter + "); retry after " + e.RetryAfter.String()
}
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// Mapped is the outcome of mapping an error: the status for the client and
// the fields for logs.
type Mapped struct {
	Status *status.Status
	Reason string
	// Internal is true when the cause was withheld from the client.
	Internal bool
}

// Map turns err into the status a client sees, by the errcode.Code err
// carries. A status error passes through unchanged. It never returns an
// error's internal cause.
func Map(err error) Mapped {
	if err == nil {
		return Mapped{Status: status.New(codes.OK, "")}
	}
	if st, ok := status.FromError(err); ok {
		return Mapped{Status: st, Reason: reasonOf(st)}
	}
	if e, ok := errcode.As(err); ok {
		code, known := grpcCode(e)
		if !known {
			return internalCause(codes.Internal, "internal error", err, ReasonInternal)
		}
		// The message is written for callers unless the error says its
		// chain holds internal causes.
		msg, internal := err.Error(), false
		if e.Public != "" {
			msg, internal = e.Public, true
		}
		reason := string(e.Code)
		return Mapped{Status: withDetails(status.New(code, msg), err, reason), Reason: reason, Internal: internal}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return internalCause(codes.DeadlineExceeded, "deadline exceeded", err, ReasonMessageDeliveryFailed)
	case errors.Is(err, context.Canceled):
		return internalCause(codes.Canceled, "request canceled", err, ReasonInternal)
	}
	return internalCause(codes.Internal, "internal error", err, ReasonInternal)
}

// internalCause answers a fixed message: err's text is for the logs only.
func internalCause(code codes.Code, msg string, err error, reason string) Mapped {
	return Mapped{Status: withDetails(status.New(code, msg), err, reason), Reason: reason, Internal: true}
}

func withDetails(st *status.Status, err error, reason string) *status.Status {
	info := &errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: errcode.Metadata(err)}
	details := []protoadapt.MessageV1{}
	var rl *RateLimitError
	var delayed errcode.Delayed
	switch {
	case errors.As(err, &rl):
		info.Metadata["retryAfterMs"] = strconv.FormatInt(rl.RetryAfter.Milliseconds(), 10)
		info.Metadata["resetTime"] = rl.ResetTime.UTC().Format(time.RFC3339Nano)
		info.Metadata["limiter"] = rl.Limiter
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(rl.RetryAfter)})
	case errors.As(err, &delayed) && delayed.RetryDelay() > 0:
		d := delayed.RetryDelay()
		info.Metadata["retryAfterMs"] = strconv.FormatInt(d.Milliseconds(), 10)
		info.Metadata["resetTime"] = time.Now().Add(d).UTC().Format(time.RFC3339Nano)
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
	}
	if fv := FieldViolations(err); len(fv) > 0 {
		br := &errdetails.BadRequest{}
		for _, v := range fv {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		details = append(details, br)
	}
	if len(info.Metadata) == 0 {
		info.Metadata = nil
	}
	details = append([]protoadapt.MessageV1{info}, details...)
	if withD, derr := st.WithDetails(details...); derr == nil {
		return withD
	}
	return st
}

// FieldViolations collects the field violations an error carries, from
// every error in its chain that names fields (errcode.Fielded).
func FieldViolations(err error) []FieldError {
	var out []FieldError
	for _, v := range errcode.Violations(err) {
		out = append(out, FieldError(v))
	}
	return out
}

func reasonOf(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason
		}
	}
	return ""
}

// ErrorMapper converts handler errors with Map and logs causes withheld
// from the client, with the trace id, so an operator can find them.
type ErrorMapper struct {
	Log *slog.Logger
	// OnError, when set, is told every failed call's method and reason (for
	// metrics and health).
	OnError func(ctx context.Context, method, reason string, code codes.Code)
}

// Status maps err for method and logs what the client does not see.
func (m *ErrorMapper) Status(ctx context.Context, method string, err error) *status.Status {
	mapped := Map(err)
	if mapped.Internal {
		m.Log.LogAttrs(ctx, slog.LevelError, "request failed", slog.String("method", method),
			slog.String("reason", mapped.Reason), slog.String("error", err.Error()), slog.String("trace_id", telemetry.TraceID(ctx)))
	}
	if m.OnError != nil && mapped.Status.Code() != codes.OK {
		m.OnError(ctx, method, mapped.Reason, mapped.Status.Code())
	}
	return mapped.Status
}

// Unary maps errors of unary handlers.
func (m *ErrorMapper) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			return nil, m.Status(ctx, info.FullMethod, err).Err()
		}
		return resp, nil
	}
}

// Stream maps errors of streaming handlers.
func (m *ErrorMapper) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := handler(srv, ss); err != nil {
			return m.Status(ss.Context(), info.FullMethod, err).Err()
		}
		return nil
	}
}
