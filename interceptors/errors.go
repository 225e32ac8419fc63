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

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/edge"
	"github.com/milequest/pushercm/telemetry"
)

// Domain is the ErrorInfo domain of every pushercm error.
const Domain = "pushercm"

// Reasons are the product's error codes (ErrorInfo.reason), DESIGN.md §3.
const (
	ReasonAuthenticationFailed    = "AUTHENTICATION_FAILED"
	ReasonAuthorizationFailed     = "AUTHORIZATION_FAILED"
	ReasonConnectionPoolExhausted = "CONNECTION_POOL_EXHAUSTED"
	ReasonConnectionFailed        = "CONNECTION_FAILED"
	ReasonMessageDeliveryFailed   = "MESSAGE_DELIVERY_FAILED"
	ReasonInvalidArgument         = "INVALID_ARGUMENT"
	ReasonNotFound                = "NOT_FOUND"
	// Added beyond DESIGN.md's table.
	ReasonLimitExceeded      = "LIMIT_EXCEEDED"      // a configured limit refused the operation
	ReasonFailedPrecondition = "FAILED_PRECONDITION" // not possible in this state or on this driver
	ReasonWatcherLagged      = "WATCHER_LAGGED"      // a watch stream fell behind and was cut off
	ReasonInternal           = "INTERNAL"
)

// mapping is one row of the error table.
type mapping struct {
	target error
	code   codes.Code
	reason string
	// expose sends err.Error() to the client. Only for errors whose text is
	// written for callers (validation, auth); upstream and internal causes
	// get a fixed message and are logged instead.
	expose  bool
	message string // used when !expose
}

// errorTable maps domain errors to statuses, first match wins. Every domain
// error a handler can return must be listed here: anything unlisted becomes
// INTERNAL (and is logged), which is the safe default but loses the reason.
var errorTable = []mapping{
	{target: authz.ErrUnauthenticated, code: codes.Unauthenticated, reason: ReasonAuthenticationFailed, expose: true},
	{target: authz.ErrPermissionDenied, code: codes.PermissionDenied, reason: ReasonAuthorizationFailed, expose: true},
	{target: authz.ErrInvalidArgument, code: codes.InvalidArgument, reason: ReasonInvalidArgument, expose: true},
	{target: ErrInvalidArgument, code: codes.InvalidArgument, reason: ReasonInvalidArgument, expose: true},
	{target: ErrFailedPrecondition, code: codes.FailedPrecondition, reason: ReasonFailedPrecondition, expose: true},
	{target: ErrRateLimited, code: codes.ResourceExhausted, reason: ReasonRateLimited, expose: true},
	{target: delivery.ErrInvalid, code: codes.InvalidArgument, reason: ReasonInvalidArgument, expose: true},
	{target: delivery.ErrNotFound, code: codes.NotFound, reason: ReasonNotFound, expose: true},
	{target: delivery.ErrUnavailable, code: codes.Unavailable, reason: ReasonConnectionFailed, message: "upstream unavailable; retry later"},
	// INTERNAL, not UNAVAILABLE: retry policies repeat UNAVAILABLE, and this event
	// may have been delivered already.
	{target: delivery.ErrRateLimited, code: codes.ResourceExhausted, reason: ReasonRateLimited, message: "upstream rate limit; retry later"},
	{target: delivery.ErrOutcomeUnknown, code: codes.Internal, reason: ReasonMessageDeliveryFailed, message: "delivery outcome unknown: the event may have been delivered"},
	{target: delivery.ErrDeliveryFailed, code: codes.Unavailable, reason: ReasonMessageDeliveryFailed, message: "message delivery failed after retries"},
	{target: edge.ErrNotFound, code: codes.NotFound, reason: ReasonNotFound, expose: true},
	{target: edge.ErrInvalid, code: codes.InvalidArgument, reason: ReasonInvalidArgument, expose: true},
	{target: edge.ErrLimit, code: codes.FailedPrecondition, reason: ReasonLimitExceeded, expose: true},
	{target: edge.ErrWatcherLagged, code: codes.ResourceExhausted, reason: ReasonWatcherLagged, expose: true},
	{target: edge.ErrClosed, code: codes.Unavailable, reason: ReasonConnectionFailed, message: "server is shutting down"},
	{target: ErrShuttingDown, code: codes.Unavailable, reason: ReasonConnectionFailed, expose: true},
	{target: context.DeadlineExceeded, code: codes.DeadlineExceeded, reason: ReasonMessageDeliveryFailed, message: "deadline exceeded"},
	{target: context.Canceled, code: codes.Canceled, reason: ReasonInternal, message: "request canceled"},
}

// Errors for handlers of this service that have no domain error of their own.
var (
	// ErrInvalidArgument: a request field is wrong. Prefer FieldError, which
	// names the field.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrFailedPrecondition: the call cannot work in this state or on this
	// driver (for example socket-level calls on the pusher driver).
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrRateLimited: a rate limit refused the call. Use RateLimitError to
	// carry the retry hint.
	ErrRateLimited = errors.New("rate limited")
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

// Map turns err into the status a client sees. A status error passes
// through unchanged. It never returns an error's internal cause.
func Map(err error) Mapped {
	if err == nil {
		return Mapped{Status: status.New(codes.OK, "")}
	}
	if st, ok := status.FromError(err); ok {
		return Mapped{Status: st, Reason: reasonOf(st)}
	}
	for _, m := range errorTable {
		if !errors.Is(err, m.target) {
			continue
		}
		msg := m.message
		if m.expose {
			msg = err.Error()
		}
		return Mapped{Status: withDetails(status.New(m.code, msg), err, m.reason), Reason: m.reason, Internal: !m.expose}
	}
	st := status.New(codes.Internal, "internal error")
	return Mapped{Status: withDetails(st, err, ReasonInternal), Reason: ReasonInternal, Internal: true}
}

func withDetails(st *status.Status, err error, reason string) *status.Status {
	info := &errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: map[string]string{}}
	details := []protoadapt.MessageV1{}

	var denied *authz.DeniedError
	if errors.As(err, &denied) {
		info.Metadata["rule"] = denied.Rule
		if denied.Channel != "" {
			info.Metadata["channel"] = denied.Channel
		}
	}
	if errors.Is(err, delivery.ErrOutcomeUnknown) {
		info.Metadata["outcome"] = "unknown"
	}
	var up *delivery.UpstreamRateLimit
	if errors.As(err, &up) && up.RetryAfter > 0 {
		info.Metadata["retryAfterMs"] = strconv.FormatInt(up.RetryAfter.Milliseconds(), 10)
		info.Metadata["resetTime"] = time.Now().Add(up.RetryAfter).UTC().Format(time.RFC3339Nano)
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(up.RetryAfter)})
	}
	var rl *RateLimitError
	if errors.As(err, &rl) {
		info.Metadata["retryAfterMs"] = strconv.FormatInt(rl.RetryAfter.Milliseconds(), 10)
		info.Metadata["resetTime"] = rl.ResetTime.UTC().Format(time.RFC3339Nano)
		info.Metadata["limiter"] = rl.Limiter
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(rl.RetryAfter)})
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

// FieldViolations collects the field violations an error carries, from any
// of the domain error types that name fields.
func FieldViolations(err error) []FieldError {
	var out []FieldError
	var fe *FieldError
	if errors.As(err, &fe) {
		out = append(out, *fe)
	}
	var ve *delivery.ValidationError
	if errors.As(err, &ve) {
		for _, v := range ve.Violations {
			out = append(out, FieldError{Field: v.Field, Description: v.Description})
		}
	}
	var ae *authz.ArgumentError
	if errors.As(err, &ae) {
		out = append(out, FieldError{Field: ae.Field, Description: ae.Reason})
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
