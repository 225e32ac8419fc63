package pusher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// StatusError is a non-2xx answer of the Pusher HTTP API. pusher-http-go reports those
// as plain strings "Status Code: N - body"; the driver parses them back into this type
// so that retries and error mapping can look at the code.
type StatusError struct {
	StatusCode int
	Body       string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("pusher API status %d: %s", e.StatusCode, truncate(e.Body, 200))
}

// Temporary reports whether retrying may help (5xx, 429).
func (e *StatusError) Temporary() bool {
	return e.StatusCode == 429 || e.StatusCode >= 500
}

const statusPrefix = "Status Code: "

// parseStatusError recognises pusher-http-go's status error text.
func parseStatusError(err error) (*StatusError, bool) {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, statusPrefix)
	if !ok {
		return nil, false
	}
	codeText, body, _ := strings.Cut(rest, " - ")
	// A text that does not parse as a status code is simply not a status error.
	if code, convErr := strconv.Atoi(codeText); convErr == nil && code >= 100 && code <= 999 {
		return &StatusError{StatusCode: code, Body: body}, true
	}
	return nil, false
}

// class is how the retry loop treats an attempt's error.
type class int

const (
	classOK         class = iota
	classRetryable        // network error, timeout, 5xx, 429
	classPermanent        // 4xx: the upstream answered, retrying cannot help
	classClientSide       // refused by pusher-http-go before any request was made
	classBadBody          // 2xx whose body was not the expected JSON
)

// classify returns the class and the error to report (a *StatusError for HTTP status
// errors).
func classify(err error) (class, error) {
	if err == nil {
		return classOK, nil
	}
	if se, ok := parseStatusError(err); ok {
		if se.Temporary() {
			return classRetryable, se
		}
		return classPermanent, se
	}
	var ue *url.Error
	var ne net.Error
	if errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return classRetryable, err
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	if errors.As(err, &se) || errors.As(err, &te) || err.Error() == "unexpected end of JSON input" {
		return classBadBody, err
	}
	return classClientSide, err
}

// isConnectError reports errors where the request most likely never reached the
// upstream (refused, DNS, reset while connecting) rather than a slow or failing one.
func isConnectError(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	var de *net.DNSError
	return errors.As(err, &de)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
