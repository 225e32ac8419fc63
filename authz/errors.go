package authz

import (
	"github.com/milequest/pushercm/errcode"
)

// Error kinds. Every error returned by this package matches exactly one of
// these with errors.Is and carries its errcode.Code, which transports map:
//
//	ErrUnauthenticated   -> UNAUTHENTICATED   / AUTHENTICATION_FAILED
//	ErrPermissionDenied  -> PERMISSION_DENIED / AUTHORIZATION_FAILED
//	ErrInvalidArgument   -> INVALID_ARGUMENT  / INVALID_ARGUMENT
//
// Anything else (for example a JWKS endpoint that cannot be reached while
// loading keys) is an internal or configuration error.
var (
	ErrUnauthenticated  = errcode.New(errcode.AuthenticationFailed, "unauthenticated")
	ErrPermissionDenied = errcode.New(errcode.AuthorizationFailed, "permission denied")
	ErrInvalidArgument  = errcode.New(errcode.InvalidArgument, "invalid argument")
)

// Token errors; all of them match ErrUnauthenticated. The messages never
// contain the token or any key material.
var (
	ErrTokenMissing     = kind("token missing", ErrUnauthenticated)
	ErrTokenInvalid     = kind("token invalid", ErrUnauthenticated)
	ErrTokenExpired     = kind("token expired", ErrUnauthenticated)
	ErrTokenNotYetValid = kind("token not valid yet", ErrUnauthenticated)
	ErrTokenIssuer      = kind("token issuer not accepted", ErrUnauthenticated)
	ErrTokenAudience    = kind("token audience not accepted", ErrUnauthenticated)
	ErrTokenAlgorithm   = kind("token algorithm not accepted", ErrUnauthenticated)
	ErrTokenSignature   = kind("token signature invalid", ErrUnauthenticated)
	ErrTokenUnknownKey  = kind("token signing key unknown", ErrUnauthenticated)
)

// Authorization errors; all of them match ErrPermissionDenied.
var (
	// ErrScopeMissing: a service token lacks the scope a call needs.
	ErrScopeMissing = kind("scope missing", ErrPermissionDenied)
	// ErrRuleDenied: the channel rules refuse the channel (including "no rule").
	ErrRuleDenied = kind("channel rule denies", ErrPermissionDenied)
	// ErrEncryptionUnavailable: an encrypted channel was asked for but no
	// encryption master key is configured, so no shared secret can be made.
	ErrEncryptionUnavailable = kind("encrypted channels need PUSHER_ENCRYPTION_MASTER_KEY_BASE64", ErrPermissionDenied)
)

// kindError is a sentinel with a parent kind, so errors.Is(ErrTokenExpired,
// ErrUnauthenticated) holds.
type kindError struct {
	msg    string
	parent error
}

func kind(msg string, parent error) error { return &kindError{msg: msg, parent: parent} }

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.parent }

// TokenError wraps a token failure with a short, non-secret detail for logs
// (never the token itself). errors.Is sees both Kind and ErrUnauthenticated.
type TokenError struct {
	Kind   error  // one of the ErrToken* values
	Detail string // e.g. "kid \"k2\" not in key set"; safe to log
	cause  error
}

func (e *TokenError) Error() string {
	if e.Detail == "" {
		return e.Kind.Error()
	}
	return e.Kind.Error() + ": " + e.Detail
}

// Unwrap exposes the kind and, for logging, the library cause.
func (e *TokenError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.Kind, e.cause}
	}
	return []error{e.Kind}
}

// DeniedError says which rule decided a refusal and why. Transports put Rule
// into ErrorInfo metadata. errors.Is(err, ErrPermissionDenied) holds.
type DeniedError struct {
	Kind    error  // ErrRuleDenied, ErrEncryptionUnavailable or ErrScopeMissing
	Rule    string // deciding rule; "" when no rule matched (default deny)
	Channel string
	Reason  string // short, stable, non-secret explanation
}

func (e *DeniedError) Error() string {
	msg := e.Kind.Error()
	if e.Channel != "" {
		msg += " for channel " + e.Channel
	}
	if e.Rule != "" {
		msg += " (rule " + e.Rule + ")"
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

func (e *DeniedError) Unwrap() error { return e.Kind }

// ErrorMetadata names the deciding rule, and the channel, for transports
// (errcode.Described).
func (e *DeniedError) ErrorMetadata() map[string]string {
	md := map[string]string{"rule": e.Rule}
	if e.Channel != "" {
		md["channel"] = e.Channel
	}
	return md
}

// ArgumentError names the request field that is wrong, for
// google.rpc.BadRequest field violations. errors.Is(err, ErrInvalidArgument)
// holds.
type ArgumentError struct {
	Field  string // request field: socket_id, channel_name, user_info, token
	Reason string
}

func (e *ArgumentError) Error() string { return "invalid " + e.Field + ": " + e.Reason }
func (e *ArgumentError) Unwrap() error { return ErrInvalidArgument }

// FieldViolations names the field for transports (errcode.Fielded).
func (e *ArgumentError) FieldViolations() []errcode.Violation {
	return []errcode.Violation{{Field: e.Field, Description: e.Reason}}
}

func argErr(field, reason string) error { return &ArgumentError{Field: field, Reason: reason} }
