package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/milequest/pushercm/app"
	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/pushertest/apptest"
	"github.com/milequest/pushercm/protocol"
)

const (
	authWait = 15 * time.Second
	// authMasterKey is the encryption master key of PUSHER-PROTOCOL.md §3.3.
	authMasterKey = "nxzvbGF+f8FGhk/jOaZvgMle1tqxzF/VfUZLBLhhaH0="
)

// startAuthApp runs a dev-mode pushercm on 127.0.0.1:0 with an extra rule for
// encrypted team channels and, unless noMasterKey, an encryption master key.
func startAuthApp(t *testing.T, noMasterKey bool) *app.App {
	t.Helper()
	a := apptest.Start(t, func(cfg *config.Config) {
		cfg.Log.Level = "ERROR"
		cfg.ShutdownTimeout = config.Default().ShutdownTimeout
		cfg.Pusher.EncryptionMasterKeyBase64 = authMasterKey
		if noMasterKey {
			cfg.Pusher.EncryptionMasterKeyBase64 = "" // --dev sets one
		}
		cfg.ChannelRules.Rules = []authz.Rule{
			{Name: "encrypted-team", Pattern: "private-encrypted-team-{teamId}", RequiredTeamMembership: "teamId"},
		}
	})
	a.CheckShutdown = true
	return a.App
}

// mintAuth mints a dev token: a service token (signed with the dev service
// secret) when o has scopes, a user token otherwise.
func mintAuth(t *testing.T, o authz.MintOptions) string {
	t.Helper()
	if len(o.Scopes) > 0 {
		return pushertest.Mint(t, config.DevServiceSecret, o)
	}
	return pushertest.Mint(t, config.DevJWTSecret, o)
}

// authClient dials the app's gRPC listener; every call carries the service
// token unless the context already has authorization metadata.
func authClient(t *testing.T, a *app.App) pushercmv1.AuthServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pushercmv1.NewAuthServiceClient(conn)
}

func authBearer(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// dialAuthEdge connects a client whose Expect skips unrelated frames.
func dialAuthEdge(t *testing.T, a *app.App) *pushertest.Client {
	t.Helper()
	c := pushertest.Dial(t, a.HTTPAddr(), config.DevAppKey, config.DevAppSecret)
	c.SkipOther = true
	return c
}

// TestAuthorizeChannelSignaturesAcceptedByEdge: what AuthorizeChannel
// returns over gRPC is what the embedded server accepts in pusher:subscribe.
func TestAuthorizeChannelSignaturesAcceptedByEdge(t *testing.T) {
	a := startAuthApp(t, false)
	client := authClient(t, a)
	svc := mintAuth(t, authz.MintOptions{Subject: "web-app", Scopes: []string{"channels:authorize"}})
	user := mintAuth(t, authz.MintOptions{Subject: "u1", Teams: []string{"t1"}, Name: "Ann"})

	tests := []struct {
		name        string
		channel     string
		userInfo    map[string]any
		wantRule    string
		wantPresent bool // channel_data expected
		wantSecret  bool // shared_secret expected
		wantData    string
	}{
		{name: "own user channel", channel: "private-user-u1", wantRule: "user-channel"},
		{name: "team channel", channel: "private-team-t1", wantRule: "team-channel"},
		{name: "team presence with user_info", channel: "presence-team-t1", userInfo: map[string]any{"avatar": "a.png"},
			wantRule: "team-presence", wantPresent: true, wantData: `{"user_id":"u1","user_info":{"avatar":"a.png","name":"Ann"}}`},
		// The web app is trusted: its user_info is signed, over the token's name.
		{name: "team presence with a name from the web app", channel: "presence-team-t1", userInfo: map[string]any{"name": "Ann (team lead)"},
			wantRule: "team-presence", wantPresent: true, wantData: `{"user_id":"u1","user_info":{"name":"Ann (team lead)"}}`},
		{name: "team presence default info", channel: "presence-team-t1", wantRule: "team-presence", wantPresent: true,
			wantData: `{"user_id":"u1","user_info":{"name":"Ann"}}`},
		{name: "encrypted team channel", channel: "private-encrypted-team-t1", wantRule: "encrypted-team", wantSecret: true},
		{name: "public channel", channel: "news"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialAuthEdge(t, a)
			req := &pushercmv1.AuthorizeChannelRequest{SocketId: c.SocketID, ChannelName: tc.channel, Token: user}
			if tc.userInfo != nil {
				s, err := structpb.NewStruct(tc.userInfo)
				if err != nil {
					t.Fatal(err)
				}
				req.UserInfo = s
			}
			ctx, cancel := context.WithTimeout(authBearer(context.Background(), svc), authWait)
			defer cancel()
			resp, err := client.AuthorizeChannel(ctx, req)
			if err != nil {
				t.Fatalf("AuthorizeChannel: %v", err)
			}
			if resp.GetMatchedRule() != tc.wantRule {
				t.Errorf("matched_rule %q, want %q", resp.GetMatchedRule(), tc.wantRule)
			}
			if len(resp.GetPermissions()) == 0 || resp.GetPermissions()[0] != authz.PermSubscribe {
				t.Errorf("permissions %q, want subscribe first", resp.GetPermissions())
			}
			if (resp.GetChannelData() != "") != tc.wantPresent || (tc.wantData != "" && resp.GetChannelData() != tc.wantData) {
				t.Errorf("channel_data %q, want %q", resp.GetChannelData(), tc.wantData)
			}
			if tc.wantPresent && resp.GetUserId() != "u1" {
				t.Errorf("user_id %q, want u1", resp.GetUserId())
			}
			if tc.wantSecret {
				key, _ := protocol.DecodeMasterKey(authMasterKey)
				if want := protocol.SharedSecret(tc.channel, key); resp.GetSharedSecret() != want {
					t.Errorf("shared_secret %q, want %q", resp.GetSharedSecret(), want)
				}
			} else if resp.GetSharedSecret() != "" {
				t.Errorf("unexpected shared_secret")
			}
			if tc.wantRule == "" && resp.GetAuth() != "" {
				t.Errorf("public channel got auth %q", resp.GetAuth())
			}

			data := map[string]any{"channel": tc.channel, "auth": resp.GetAuth()}
			if resp.GetChannelData() != "" {
				data["channel_data"] = resp.GetChannelData()
			}
			c.Send(protocol.EventSubscribe, "", data)
			c.Expect("pusher_internal:subscription_succeeded", tc.channel)
		})
	}
}

// TestAuthenticateUserSignatureAcceptedByEdge: the sign-in auth works in
// pusher:signin.
func TestAuthenticateUserSignatureAcceptedByEdge(t *testing.T) {
	a := startAuthApp(t, false)
	client := authClient(t, a)
	svc := mintAuth(t, authz.MintOptions{Subject: "web-app", Scopes: []string{"channels:authorize"}})
	user := mintAuth(t, authz.MintOptions{Subject: "u7", Name: "Una"})
	c := dialAuthEdge(t, a)

	ctx, cancel := context.WithTimeout(authBearer(context.Background(), svc), authWait)
	defer cancel()
	resp, err := client.AuthenticateUser(ctx, &pushercmv1.AuthenticateUserRequest{SocketId: c.SocketID, Token: user})
	if err != nil {
		t.Fatalf("AuthenticateUser: %v", err)
	}
	if resp.GetUserId() != "u7" || resp.GetUserData() != `{"id":"u7","user_info":{"name":"Una"}}` {
		t.Errorf("got user_id %q user_data %q", resp.GetUserId(), resp.GetUserData())
	}
	c.Send("pusher:signin", "", map[string]any{"auth": resp.GetAuth(), "user_data": resp.GetUserData()})
	c.Expect("pusher:signin_success", "")
}

// TestAuthServiceRefusals: codes, ErrorInfo reasons and the deciding rule.
func TestAuthServiceRefusals(t *testing.T) {
	a := startAuthApp(t, false)
	client := authClient(t, a)
	svc := mintAuth(t, authz.MintOptions{Subject: "web-app", Scopes: []string{"channels:authorize"}})
	publisher := mintAuth(t, authz.MintOptions{Subject: "publisher", Scopes: []string{"events:publish"}})
	user := mintAuth(t, authz.MintOptions{Subject: "u1", Teams: []string{"t1"}})
	userWithScope := pushertest.Mint(t, config.DevJWTSecret, authz.MintOptions{Subject: "u1", Scopes: []string{"channels:authorize"}})
	expired := mintAuth(t, authz.MintOptions{Subject: "u1", TTL: time.Hour, Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
	otherKey, err := authz.Mint([]byte("another-secret-that-is-long-enough-0123"), authz.MintOptions{Subject: "u1", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const socket = "1234.5678"

	tests := []struct {
		name       string
		service    string // service token; "" sends none
		req        *pushercmv1.AuthorizeChannelRequest
		wantCode   codes.Code
		wantReason string
		wantRule   *string // nil: no rule key expected
	}{
		{name: "other user's channel", service: svc, req: &pushercmv1.AuthorizeChannelRequest{SocketId: socket, ChannelName: "private-user-u2", Token: user},
			wantCode: codes.PermissionDenied, wantReason: "AUTHORIZATION_FAILED", wantRule: authPtr("user-channel")},
		{name: "not a team member", service: svc, req: &pushercmv1.AuthorizeChannelRequest{SocketId: socket, ChannelName: "presence-team-t9", Token: user},
			wantCode: codes.PermissionDenied, wantReason: "AUTHORIZATION_FAILED", wantRule: authPtr("team-presence")},
		{name: "not an admin", service: svc, req: &pushercmv1.AuthorizeChannelRequest{SocketId: socket, ChannelName: "private-admin-ops", Token: user},
			wantCode: codes.PermissionDenied, wantReason: "AUTHORIZATION_FAILED", wantRule: authPtr("admin-channel")},
		{name: "no rule matches", service: svc, req: &pushercmv1.AuthorizeChannelRequest{SocketId: socket, ChannelName: "private-random", Token: user},
			wantCode: codes.PermissionDenied, wantReason: "AUTHORIZATION_FAILED", wantRule: authPtr("")},
		{name: "user token missing", service: svc, req: &pushercmv1.AuthorizeChannelRequest{SocketId: socket, ChannelName: "private-user-u1"},
			wantCode: codes.Unauthenticated, wantReason: "AUTHENTICATION_FAILED"},
		{name: "user token garbage", service: svc, req: &pushercmv1.AuthorizeChannelRequest{SocketId: socket, ChannelName: "private-user-u1", Token: "not.a.jwt"},
			wantCode: codes.Unauthenticated, wantReason: "AUTHENTICATION_FAILED"},
		{name: "user token expired", service: svc, req: &pushercmv1.AuthorizeChannelRequest{SocketId: socket, ChannelName: "private-user-u1", Token: expired},
			wantCode: codes.Unauthenticated, wantReason: "AUTHENTICATION_FAILED"},
		{name: "user token signed by another key", service: svc, req: &pushercmv1.AuthorizeChannelRequest{SocketId: socket, ChannelName: "private-user-u1", Token: otherKey},
			wantCode: codes.Unauthenticated, wantReason: "AUTHENTICATION_FAILED"},
		{name: "bad token on a public channel", service: svc, req: &pushercmv1.AuthorizeChannelRequest{SocketId: socket, ChannelName: "news", Token: "not.a.jwt"},
			wantCode: codes.Unauthenticated, wantReason: "AUTHENTICATION_FAILED"},
		{name: "no service token", req: &pushercmv1.AuthorizeChannelRequest{SocketId: socket, ChannelName: "private-user-u1", Token: user},
			wantCode: codes.Unauthenticated, wantReason: "AUTHENTICATION_FAILED"},
		{name: "service token without channels:authorize", service: publisher, req: &pushercmv1.AuthorizeChannelRequest{SocketId: socket, ChannelName: "private-user-u1", Token: user},
			wantCode: codes.PermissionDenied, wantReason: "AUTHORIZATION_FAILED", wantRule: authPtr("")},
		// Service tokens have their own trust (jwt.service): a user token
		// does not verify as one, whatever scope it claims.
		{name: "user token as service token", service: user, req: &pushercmv1.AuthorizeChannelRequest{SocketId: socket, ChannelName: "private-user-u1", Token: user},
			wantCode: codes.Unauthenticated, wantReason: "AUTHENTICATION_FAILED"},
		{name: "user token with scope as service token", service: userWithScope, req: &pushercmv1.AuthorizeChannelRequest{SocketId: socket, ChannelName: "private-user-u1", Token: user},
			wantCode: codes.Unauthenticated, wantReason: "AUTHENTICATION_FAILED"},
		{name: "bad socket id", service: svc, req: &pushercmv1.AuthorizeChannelRequest{SocketId: "abc", ChannelName: "private-user-u1", Token: user},
			wantCode: codes.InvalidArgument, wantReason: "INVALID_ARGUMENT"},
		{name: "bad channel name", service: svc, req: &pushercmv1.AuthorizeChannelRequest{SocketId: socket, ChannelName: "private-user-u1!", Token: user},
			wantCode: codes.InvalidArgument, wantReason: "INVALID_ARGUMENT"},
		{name: "user_info too big", service: svc, req: &pushercmv1.AuthorizeChannelRequest{SocketId: socket, ChannelName: "presence-team-t1", Token: user,
			UserInfo: authStruct(t, map[string]any{"bio": strings.Repeat("x", 2000)})},
			wantCode: codes.InvalidArgument, wantReason: "INVALID_ARGUMENT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.service != "" {
				ctx = authBearer(ctx, tc.service)
			}
			ctx, cancel := context.WithTimeout(ctx, authWait)
			defer cancel()
			resp, err := client.AuthorizeChannel(ctx, tc.req)
			if err == nil {
				t.Fatalf("allowed (%v), want %s", resp, tc.wantCode)
			}
			st := status.Convert(err)
			if st.Code() != tc.wantCode {
				t.Fatalf("code %s, want %s (%s)", st.Code(), tc.wantCode, st.Message())
			}
			info := authErrorInfo(t, st)
			if info.GetReason() != tc.wantReason || info.GetDomain() != "pushercm" {
				t.Errorf("ErrorInfo %s/%s, want pushercm/%s", info.GetDomain(), info.GetReason(), tc.wantReason)
			}
			rule, hasRule := info.GetMetadata()["rule"]
			switch {
			case tc.wantRule == nil && hasRule:
				t.Errorf("unexpected rule %q in metadata", rule)
			case tc.wantRule != nil && (!hasRule || rule != *tc.wantRule):
				t.Errorf("metadata rule %q (present %v), want %q", rule, hasRule, *tc.wantRule)
			}
			if strings.Contains(st.Message(), user) || strings.Contains(st.Message(), svc) {
				t.Error("status message contains a token")
			}
		})
	}
}

// TestEncryptedChannelWithoutMasterKey is refused with a reason, never
// signed without a shared secret.
func TestEncryptedChannelWithoutMasterKey(t *testing.T) {
	a := startAuthApp(t, true)
	client := authClient(t, a)
	svc := mintAuth(t, authz.MintOptions{Subject: "web-app", Scopes: []string{"channels:authorize"}})
	user := mintAuth(t, authz.MintOptions{Subject: "u1", Teams: []string{"t1"}})
	ctx, cancel := context.WithTimeout(authBearer(context.Background(), svc), authWait)
	defer cancel()
	_, err := client.AuthorizeChannel(ctx, &pushercmv1.AuthorizeChannelRequest{SocketId: "1.2", ChannelName: "private-encrypted-team-t1", Token: user})
	st := status.Convert(err)
	if st.Code() != codes.PermissionDenied || authErrorInfo(t, st).GetReason() != "AUTHORIZATION_FAILED" {
		t.Fatalf("got %v, want PERMISSION_DENIED/AUTHORIZATION_FAILED", err)
	}
}

// TestAuthDecisionsMetric: decisions are counted by rule and outcome on
// /metrics.
func TestAuthDecisionsMetric(t *testing.T) {
	a := startAuthApp(t, false)
	client := authClient(t, a)
	svc := mintAuth(t, authz.MintOptions{Subject: "web-app", Scopes: []string{"channels:authorize"}})
	user := mintAuth(t, authz.MintOptions{Subject: "u1", Teams: []string{"t1"}})
	ctx, cancel := context.WithTimeout(authBearer(context.Background(), svc), authWait)
	defer cancel()
	for _, ch := range []string{"private-user-u1", "private-user-u2"} {
		_, _ = client.AuthorizeChannel(ctx, &pushercmv1.AuthorizeChannelRequest{SocketId: "1.2", ChannelName: ch, Token: user})
	}
	resp, err := http.Get("http://" + a.OpsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`outcome="allowed"`, `outcome="denied"`} {
		found := false
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "pushercm_auth_decisions_total{") && strings.Contains(line, `rule="user-channel"`) &&
				strings.Contains(line, want) && strings.Contains(line, `transport="grpc"`) && strings.HasSuffix(line, " 1") {
				found = true
			}
		}
		if !found {
			t.Errorf("no pushercm_auth_decisions_total{rule=\"user-channel\",%s,transport=\"grpc\"} 1 in /metrics", want)
		}
	}
	if strings.Contains(string(body), user) {
		t.Error("/metrics contains a token")
	}
}

func authErrorInfo(t *testing.T, st *status.Status) *errdetails.ErrorInfo {
	t.Helper()
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	t.Fatalf("no ErrorInfo in %v", st.Proto())
	return nil
}

func authStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func authPtr(s string) *string { return &s }

// TestAuthenticateUserRefusals: codes and reasons of sign-in refusals.
func TestAuthenticateUserRefusals(t *testing.T) {
	a := startAuthApp(t, false)
	client := authClient(t, a)
	svc := mintAuth(t, authz.MintOptions{Subject: "web-app", Scopes: []string{"channels:authorize"}})
	user := mintAuth(t, authz.MintOptions{Subject: "u1"})
	noSub := mintAuth(t, authz.MintOptions{Teams: []string{"t1"}})
	tests := []struct {
		name       string
		req        *pushercmv1.AuthenticateUserRequest
		wantCode   codes.Code
		wantReason string
	}{
		{"no user token", &pushercmv1.AuthenticateUserRequest{SocketId: "1.2"}, codes.Unauthenticated, "AUTHENTICATION_FAILED"},
		{"bad user token", &pushercmv1.AuthenticateUserRequest{SocketId: "1.2", Token: user + "x"}, codes.Unauthenticated, "AUTHENTICATION_FAILED"},
		{"token without a user id", &pushercmv1.AuthenticateUserRequest{SocketId: "1.2", Token: noSub}, codes.Unauthenticated, "AUTHENTICATION_FAILED"},
		{"bad socket id", &pushercmv1.AuthenticateUserRequest{SocketId: "1", Token: user}, codes.InvalidArgument, "INVALID_ARGUMENT"},
		{"watchlist over 100 ids", &pushercmv1.AuthenticateUserRequest{SocketId: "1.2", Token: user, Watchlist: manyIDs(101)}, codes.InvalidArgument, "INVALID_ARGUMENT"},
		{"watchlist id with a space", &pushercmv1.AuthenticateUserRequest{SocketId: "1.2", Token: user, Watchlist: []string{"u 2"}}, codes.InvalidArgument, "INVALID_ARGUMENT"},
		{"empty watchlist id", &pushercmv1.AuthenticateUserRequest{SocketId: "1.2", Token: user, Watchlist: []string{""}}, codes.InvalidArgument, "INVALID_ARGUMENT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(authBearer(context.Background(), svc), authWait)
			defer cancel()
			_, err := client.AuthenticateUser(ctx, tc.req)
			st := status.Convert(err)
			if st.Code() != tc.wantCode || authErrorInfo(t, st).GetReason() != tc.wantReason {
				t.Fatalf("got %s %q, want %s %s", st.Code(), authErrorInfo(t, st).GetReason(), tc.wantCode, tc.wantReason)
			}
		})
	}
}

func manyIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("u%d", i)
	}
	return ids
}
