package authz

import (
	"errors"
	"fmt"
	"testing"

	"github.com/milequest/pushercm/errcode"
)

// TestErrorCodes: every error of this package carries the product code a
// transport maps (httpauth's refuse test checks the HTTP statuses).
func TestErrorCodes(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code errcode.Code
	}{
		{"missing token", &TokenError{Kind: ErrTokenMissing}, errcode.AuthenticationFailed},
		{"expired", &TokenError{Kind: ErrTokenExpired}, errcode.AuthenticationFailed},
		{"unknown key", &TokenError{Kind: ErrTokenUnknownKey, Detail: "kid"}, errcode.AuthenticationFailed},
		{"wrapped token error", fmt.Errorf("auth: %w", &TokenError{Kind: ErrTokenAlgorithm}), errcode.AuthenticationFailed},
		{"rule denied", &DeniedError{Kind: ErrRuleDenied, Rule: "r"}, errcode.AuthorizationFailed},
		{"scope missing", &DeniedError{Kind: ErrScopeMissing}, errcode.AuthorizationFailed},
		{"encryption unavailable", &DeniedError{Kind: ErrEncryptionUnavailable}, errcode.AuthorizationFailed},
		{"bad argument", argErr("socket_id", "x"), errcode.InvalidArgument},
		{"internal", errors.New("boom"), errcode.Internal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := errcode.Of(tc.err); got != tc.code {
				t.Errorf("code = %q, want %q", got, tc.code)
			}
		})
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
