package e2e_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/internal/pushertest"
)

// TestServiceTokenTrust: gRPC callers' tokens are verified with jwt.service
// only. A token signed with the user-token secret is refused whatever scope
// it claims; the service secret's tokens pass.
func TestServiceTokenTrust(t *testing.T) {
	p := startApp(t, nil)
	cs := pushercmv1.NewConnectionServiceClient(p.conn)
	bc := pushercmv1.NewBroadcastServiceClient(p.conn)
	scopes := []string{"events:publish", "connections:read", "connections:write", "channels:authorize"}
	tests := []struct {
		name       string
		secret     string
		wantCode   codes.Code
		wantReason string
	}{
		{name: "service token", secret: p.cfg.JWT.Service.Secret, wantCode: codes.OK},
		{name: "user token claiming every scope", secret: p.cfg.JWT.Secret, wantCode: codes.Unauthenticated, wantReason: "AUTHENTICATION_FAILED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := pushertest.Mint(t, tc.secret, authz.MintOptions{Subject: "u1", Teams: []string{"t1"}, Scopes: scopes})
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
			_, err := cs.GetHealthStatus(ctx, &pushercmv1.GetHealthStatusRequest{})
			wantStatus(t, err, tc.wantCode, tc.wantReason)
			_, err = bc.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{Name: "e", Channels: []string{"c"}, Payload: &pushercmv1.Event_Data{Data: "{}"}}})
			wantStatus(t, err, tc.wantCode, tc.wantReason)
		})
	}
}

// TestDevServiceTokens: out of the box, `serve --dev` prints a service token
// and `pushercm token --dev --scopes ...` mints one that the server accepts;
// a dev user token with the same scopes is refused.
func TestDevServiceTokens(t *testing.T) {
	s := StartServer(t, nil)
	var banner []string
	pushertest.Eventually(t, "the dev banner's service token", func() error {
		if banner = regexp.MustCompile(`export TOKEN=(\S+)`).FindStringSubmatch(s.Stdout()); banner == nil {
			return fmt.Errorf("stdout so far:\n%s", s.Stdout())
		}
		return nil
	})
	minted := func(args ...string) string {
		out, err := execOutput(binary, append([]string{"token", "--dev", "--sub", "svc"}, args...)...)
		if err != nil {
			t.Fatalf("pushercm token %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(out)
	}
	conn := dial(t, s.GRPCAddr)
	cs := pushercmv1.NewConnectionServiceClient(conn)
	tests := []struct {
		name       string
		token      string
		wantCode   codes.Code
		wantReason string
	}{
		{name: "banner token", token: banner[1], wantCode: codes.OK},
		{name: "pushercm token --scopes", token: minted("--scopes", "connections:read"), wantCode: codes.OK},
		{name: "user token with scope claim", token: pushertest.Mint(t, config.DevJWTSecret, authz.MintOptions{Subject: "svc", Scopes: []string{"connections:read"}}),
			wantCode: codes.Unauthenticated, wantReason: "AUTHENTICATION_FAILED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tc.token)
			_, err := cs.GetHealthStatus(ctx, &pushercmv1.GetHealthStatusRequest{})
			wantStatus(t, err, tc.wantCode, tc.wantReason)
		})
	}
}
