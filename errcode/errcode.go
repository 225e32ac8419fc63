package errcode

import "errors"

// Code is a product error code; its value is the google.rpc.ErrorInfo reason.
type Code string

// The codes of DESIGN.md §3.
const (
	AuthenticationFailed    Code = "AUTHENTICATION_FAILED"
	AuthorizationFailed     Code = "AUTHORIZATION_FAILED"
	RateLimited             Code = "RATE_LIMITED"
	ConnectionPoolExhausted Code = "CONNECTION_POOL_EXHAUSTED"
	ConnectionFailed        Code = "CONNECTION_FAILED"
	MessageDeliveryFailed   Code = "MESSAGE_DELIVERY_FAILED"
	InvalidArgument         Code = "INVALID_ARGUMENT"
	NotFound                Code = "NOT_FOUND"
)

// Codes added beyond DESIGN.md's table.
const (
	LimitExceeded      Code = "LIMIT_EXCEEDED"      // a configured limit refused the operation
	FailedPrecondition Code = "FAILED_PRECONDITION" // not possible in this state or on this driver
	WatcherLagged      Code = "WATCHER_LAGGED"      // a watch stream fell behind and was cut off
	Internal           Code = "INTERNAL"            // anything without a code
)

// Error is a domain error with a product code. Packages declare their
// sentinels as *Error values and wrap them with detail (fmt.Errorf("%w: …")).
type Error struct {
	Code    Code
	Message string // the error text
	// Public, when set, is all a client is told: the error's chain carries
	// internal causes (upstream addresses, I/O errors) that are logged only.
	// When empty, the full error text is written for callers.
	Public string
	// Temporary marks a failure that a retry may fix (UNAVAILABLE rather than
	// INTERNAL where the code allows both).
	Temporary bool
	// Metadata is added to google.rpc.ErrorInfo.metadata.
	Metadata map[string]string
	// Err is a parent sentinel, so errors.Is(e, Err) holds.
	Err error
}

// New returns a sentinel with code and message.
func New(code Code, message string) *Error { return &Error{Code: code, Message: message} }

func (e *Error) Error() string { return e.Message }

// Unwrap returns the parent sentinel, if any.
func (e *Error) Unwrap() error { return e.Err }

// As returns the outermost *Error in err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// Of returns the code of the outermost *Error in err's chain: "" for nil,
// Internal for an error that carries none.
func Of(err error) Code {
	if err == nil {
		return ""
	}
	if e, ok := As(err); ok {
		return e.Code
	}
	return Internal
}
