package interceptors_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/edge"
	"github.com/milequest/pushercm/errcode"
	"github.com/milequest/pushercm/interceptors"
)

// TestMap is the one table test of the mapping from domain errors to
// statuses: code, ErrorInfo reason, the details DESIGN.md §3 asks for, and
// that internal causes never reach the client.
func TestMap(t *testing.T) {
	internalCause := errors.New("dial tcp 10.1.2.3:443: secret-upstream-detail")
	tests := []struct {
		name        string
		err         error
		code        codes.Code
		reason      string
		violations  []string // fields of BadRequest
		retry       time.Duration
		metadata    map[string]string
		hideMessage bool // the message must not contain the error text
	}{
		{name: "token missing", err: &authz.TokenError{Kind: authz.ErrTokenMissing}, code: codes.Unauthenticated, reason: "AUTHENTICATION_FAILED"},
		{name: "token expired", err: fmt.Errorf("verify: %w", authz.ErrTokenExpired), code: codes.Unauthenticated, reason: "AUTHENTICATION_FAILED"},
		{name: "scope missing", err: &authz.DeniedError{Kind: authz.ErrScopeMissing}, code: codes.PermissionDenied, reason: "AUTHORIZATION_FAILED"},
		{name: "rule denies", err: &authz.DeniedError{Kind: authz.ErrRuleDenied, Rule: "team-channels", Channel: "private-team-1"},
			code: codes.PermissionDenied, reason: "AUTHORIZATION_FAILED", metadata: map[string]string{"rule": "team-channels", "channel": "private-team-1"}},
		{name: "authz argument", err: &authz.ArgumentError{Field: "socket_id", Reason: "not a socket id"},
			code: codes.InvalidArgument, reason: "INVALID_ARGUMENT", violations: []string{"socket_id"}},
		{name: "field error", err: interceptors.InvalidField("page_token", "malformed"), code: codes.InvalidArgument, reason: "INVALID_ARGUMENT", violations: []string{"page_token"}},
		{name: "validation", err: &delivery.ValidationError{Violations: []delivery.FieldViolation{{Field: "event.name", Description: "empty"}, {Field: "event.channels[1]", Description: "bad"}}},
			code: codes.InvalidArgument, reason: "INVALID_ARGUMENT", violations: []string{"event.name", "event.channels[1]"}},
		{name: "rate limited", err: &interceptors.RateLimitError{Limiter: "user", Key: "u1", RetryAfter: 1500 * time.Millisecond, ResetTime: time.Unix(100, 0)},
			code: codes.ResourceExhausted, reason: "RATE_LIMITED", retry: 1500 * time.Millisecond, metadata: map[string]string{"retryAfterMs": "1500"}},
		{name: "delivery not found", err: fmt.Errorf("%w: channel x", delivery.ErrNotFound), code: codes.NotFound, reason: "NOT_FOUND"},
		{name: "upstream down", err: fmt.Errorf("%w: %w", delivery.ErrUnavailable, internalCause), code: codes.Unavailable, reason: "CONNECTION_FAILED", hideMessage: true},
		{name: "delivery failed", err: fmt.Errorf("%w: %w", delivery.ErrDeliveryFailed, internalCause), code: codes.Unavailable, reason: "MESSAGE_DELIVERY_FAILED", hideMessage: true},
		{name: "delivery outcome unknown", err: fmt.Errorf("%w: %w", delivery.ErrOutcomeUnknown, internalCause), code: codes.Internal, reason: "MESSAGE_DELIVERY_FAILED", hideMessage: true,
			metadata: map[string]string{"outcome": "unknown"}},
		{name: "upstream rate limit", err: &delivery.UpstreamRateLimit{RetryAfter: 2 * time.Second, Cause: fmt.Errorf("%w: %w", delivery.ErrDeliveryFailed, internalCause)},
			code: codes.ResourceExhausted, reason: "RATE_LIMITED", retry: 2 * time.Second, metadata: map[string]string{"retryAfterMs": "2000"}, hideMessage: true},
		{name: "edge not found", err: fmt.Errorf("%w: socket 1.2", edge.ErrNotFound), code: codes.NotFound, reason: "NOT_FOUND"},
		{name: "edge invalid", err: fmt.Errorf("%w: code", edge.ErrInvalid), code: codes.InvalidArgument, reason: "INVALID_ARGUMENT"},
		{name: "edge limit", err: fmt.Errorf("%w: subscriptions", edge.ErrLimit), code: codes.FailedPrecondition, reason: "LIMIT_EXCEEDED"},
		{name: "watcher lagged", err: edge.ErrWatcherLagged, code: codes.ResourceExhausted, reason: "WATCHER_LAGGED"},
		{name: "edge closed", err: edge.ErrClosed, code: codes.Unavailable, reason: "CONNECTION_FAILED"},
		{name: "shutting down", err: interceptors.ErrShuttingDown, code: codes.Unavailable, reason: "CONNECTION_FAILED"},
		{name: "failed precondition", err: fmt.Errorf("%w: pusher driver has no sockets", interceptors.ErrFailedPrecondition), code: codes.FailedPrecondition, reason: "FAILED_PRECONDITION"},
		{name: "deadline", err: context.DeadlineExceeded, code: codes.DeadlineExceeded, reason: "MESSAGE_DELIVERY_FAILED", hideMessage: true},
		{name: "unknown error is internal", err: internalCause, code: codes.Internal, reason: "INTERNAL", hideMessage: true},
		{name: "status passes through", err: status.Error(codes.Aborted, "as is"), code: codes.Aborted, reason: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := interceptors.Map(tt.err)
			st := m.Status
			if st.Code() != tt.code {
				t.Fatalf("code %v, want %v", st.Code(), tt.code)
			}
			if m.Reason != tt.reason {
				t.Fatalf("reason %q, want %q", m.Reason, tt.reason)
			}
			if tt.hideMessage && (st.Message() == tt.err.Error() || containsAny(st.Message(), "secret-upstream-detail", "10.1.2.3")) {
				t.Fatalf("internal cause leaked: %q", st.Message())
			}
			var info *errdetails.ErrorInfo
			var br *errdetails.BadRequest
			var ri *errdetails.RetryInfo
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.ErrorInfo:
					info = d
				case *errdetails.BadRequest:
					br = d
				case *errdetails.RetryInfo:
					ri = d
				}
			}
			if tt.reason != "" {
				if info == nil || info.Reason != tt.reason || info.Domain != "pushercm" {
					t.Fatalf("ErrorInfo %v", info)
				}
				for k, v := range tt.metadata {
					if info.Metadata[k] != v {
						t.Fatalf("metadata[%s]=%q, want %q", k, info.Metadata[k], v)
					}
				}
			}
			if len(tt.violations) > 0 {
				if br == nil || len(br.FieldViolations) != len(tt.violations) {
					t.Fatalf("BadRequest %v", br)
				}
				for i, f := range tt.violations {
					if br.FieldViolations[i].Field != f {
						t.Fatalf("violation %d field %q, want %q", i, br.FieldViolations[i].Field, f)
					}
				}
			} else if br != nil {
				t.Fatalf("unexpected BadRequest %v", br)
			}
			if tt.retry > 0 {
				if ri == nil || ri.RetryDelay.AsDuration() != tt.retry {
					t.Fatalf("RetryInfo %v, want %v", ri, tt.retry)
				}
			} else if ri != nil {
				t.Fatalf("unexpected RetryInfo %v", ri)
			}
		})
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestMapCodes is the table from every errcode.Code to its gRPC code: the
// one switch transports share, listed here so a new code cannot be missed.
func TestMapCodes(t *testing.T) {
	tests := []struct {
		err    *errcode.Error
		code   codes.Code
		public bool // the error text reaches the client
	}{
		{errcode.New(errcode.AuthenticationFailed, "a"), codes.Unauthenticated, true},
		{errcode.New(errcode.AuthorizationFailed, "a"), codes.PermissionDenied, true},
		{errcode.New(errcode.RateLimited, "a"), codes.ResourceExhausted, true},
		{errcode.New(errcode.ConnectionPoolExhausted, "a"), codes.ResourceExhausted, true},
		{&errcode.Error{Code: errcode.ConnectionFailed, Message: "a", Public: "retry", Temporary: true}, codes.Unavailable, false},
		{&errcode.Error{Code: errcode.MessageDeliveryFailed, Message: "a", Public: "retry", Temporary: true}, codes.Unavailable, false},
		{&errcode.Error{Code: errcode.MessageDeliveryFailed, Message: "a", Public: "unknown"}, codes.Internal, false},
		{errcode.New(errcode.InvalidArgument, "a"), codes.InvalidArgument, true},
		{errcode.New(errcode.NotFound, "a"), codes.NotFound, true},
		{errcode.New(errcode.LimitExceeded, "a"), codes.FailedPrecondition, true},
		{errcode.New(errcode.FailedPrecondition, "a"), codes.FailedPrecondition, true},
		{errcode.New(errcode.WatcherLagged, "a"), codes.ResourceExhausted, true},
		{errcode.New(errcode.Internal, "secret"), codes.Internal, false},
		{errcode.New("UNLISTED", "secret"), codes.Internal, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.err.Code), func(t *testing.T) {
			m := interceptors.Map(fmt.Errorf("op: %w", tt.err))
			if m.Status.Code() != tt.code {
				t.Fatalf("code %v, want %v", m.Status.Code(), tt.code)
			}
			reason := string(tt.err.Code)
			if tt.err.Code == "UNLISTED" {
				reason = interceptors.ReasonInternal
			}
			if m.Reason != reason {
				t.Fatalf("reason %q, want %q", m.Reason, reason)
			}
			if got := m.Status.Message() == "op: "+tt.err.Message; got != tt.public {
				t.Fatalf("message %q public=%v, want %v", m.Status.Message(), got, tt.public)
			}
			if m.Internal == tt.public {
				t.Fatalf("Internal = %v", m.Internal)
			}
		})
	}
}
