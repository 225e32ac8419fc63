package httpauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/milequest/pushercm/authz"
)

// TestRefuse maps every kind of authz error to its HTTP status and reason.
func TestRefuse(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		reason string
		status int
	}{
		{"missing token", &authz.TokenError{Kind: authz.ErrTokenMissing}, ReasonAuthenticationFailed, 401},
		{"expired", &authz.TokenError{Kind: authz.ErrTokenExpired}, ReasonAuthenticationFailed, 401},
		{"unknown key", &authz.TokenError{Kind: authz.ErrTokenUnknownKey, Detail: "kid"}, ReasonAuthenticationFailed, 401},
		{"wrapped token error", fmt.Errorf("auth: %w", &authz.TokenError{Kind: authz.ErrTokenAlgorithm}), ReasonAuthenticationFailed, 401},
		{"rule denied", &authz.DeniedError{Kind: authz.ErrRuleDenied, Rule: "r"}, ReasonAuthorizationFailed, 403},
		{"scope missing", &authz.DeniedError{Kind: authz.ErrScopeMissing}, ReasonAuthorizationFailed, 403},
		{"encryption unavailable", &authz.DeniedError{Kind: authz.ErrEncryptionUnavailable}, ReasonAuthorizationFailed, 403},
		{"bad argument", &authz.ArgumentError{Field: "socket_id", Reason: "x"}, ReasonInvalidArgument, 400},
		{"internal", errors.New("boom"), ReasonInternal, 500},
	}
	h := &Handler{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.refuse(w, httptest.NewRequest(http.MethodPost, ChannelAuthPath, nil), tc.err)
			if w.Code != tc.status {
				t.Errorf("status = %d, want %d", w.Code, tc.status)
			}
			var body errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if body.Reason != tc.reason {
				t.Errorf("reason = %q, want %q", body.Reason, tc.reason)
			}
		})
	}
}
