package authz

import (
	"errors"
	"fmt"
	"testing"
)

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		reason string
		status int
	}{
		{"missing token", &TokenError{Kind: ErrTokenMissing}, ReasonCodeAuthentication, 401},
		{"expired", &TokenError{Kind: ErrTokenExpired}, ReasonCodeAuthentication, 401},
		{"unknown key", &TokenError{Kind: ErrTokenUnknownKey, Detail: "kid"}, ReasonCodeAuthentication, 401},
		{"wrapped token error", fmt.Errorf("auth: %w", &TokenError{Kind: ErrTokenAlgorithm}), ReasonCodeAuthentication, 401},
		{"rule denied", &DeniedError{Kind: ErrRuleDenied, Rule: "r"}, ReasonCodeAuthorization, 403},
		{"scope missing", &DeniedError{Kind: ErrScopeMissing}, ReasonCodeAuthorization, 403},
		{"encryption unavailable", &DeniedError{Kind: ErrEncryptionUnavailable}, ReasonCodeAuthorization, 403},
		{"bad argument", argErr("socket_id", "x"), ReasonCodeInvalid, 400},
		{"internal", errors.New("boom"), "", 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ReasonCode(tc.err); got != tc.reason {
				t.Errorf("ReasonCode = %q, want %q", got, tc.reason)
			}
			if got := HTTPStatus(tc.err); got != tc.status {
				t.Errorf("HTTPStatus = %d, want %d", got, tc.status)
			}
		})
	}
	if HTTPStatus(nil) != 200 {
		t.Error("nil is not 200")
	}
	// Each error matches exactly one kind.
	for _, k := range []error{ErrTokenMissing, ErrTokenInvalid, ErrTokenExpired, ErrTokenNotYetValid, ErrTokenIssuer, ErrTokenAudience, ErrTokenAlgorithm, ErrTokenSignature, ErrTokenUnknownKey, ErrScopeMissing, ErrRuleDenied, ErrEncryptionUnavailable} {
		n := 0
		for _, kind := range []error{ErrUnauthenticated, ErrPermissionDenied, ErrInvalidArgument} {
			if errors.Is(k, kind) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%v matches %d kinds", k, n)
		}
	}
}
