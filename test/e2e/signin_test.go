package e2e_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/milequest/pushercm/app"
	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/protocol"
)

// authServiceClient dials a's gRPC listener and returns an AuthService
// client and a call context carrying a channels:authorize service token.
func authServiceClient(t *testing.T, a *app.App) (pushercmv1.AuthServiceClient, context.Context) {
	t.Helper()
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	svc := pushertest.Mint(t, config.DevServiceSecret, authz.MintOptions{Subject: "web-app", Scopes: []string{"channels:authorize"}})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return pushercmv1.NewAuthServiceClient(conn), metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+svc)
}

// TestEncryptedTwinsOfBuiltinRules: with a master key set, the built-in
// rules judge private-encrypted- channels like their private- twins,
// through /pusher/auth and through AuthorizeChannel, and the embedded
// server accepts what they sign.
func TestEncryptedTwinsOfBuiltinRules(t *testing.T) {
	master := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	a, _ := startAuthApp(t, "", func(c *config.Config) { c.Pusher.EncryptionMasterKeyBase64 = master })
	member := mintUser(t, authz.MintOptions{Subject: "u1", Teams: []string{"t1"}})
	admin := mintUser(t, authz.MintOptions{Subject: "boss", Roles: []string{"admin"}})
	auth, ctx := authServiceClient(t, a)

	tests := []struct {
		name, token, channel string
		allowed              bool
		rule                 string
	}{
		{"own encrypted user channel", member, "private-encrypted-user-u1", true, "user-channel"},
		{"someone else's encrypted user channel", member, "private-encrypted-user-u2", false, ""},
		{"encrypted team channel of a member", member, "private-encrypted-team-t1", true, "team-channel"},
		{"encrypted team channel of another team", member, "private-encrypted-team-t2", false, ""},
		{"encrypted admin channel, admin", admin, "private-encrypted-admin-ops", true, "admin-channel"},
		{"encrypted admin channel, not admin", member, "private-encrypted-admin-ops", false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialAuthEdge(t, a)

			code, body := authPost(t, a, "/pusher/auth", tc.token, url.Values{"socket_id": {c.SocketID}, "channel_name": {tc.channel}}, nil)
			wantHTTP := http.StatusOK
			if !tc.allowed {
				wantHTTP = http.StatusForbidden
			}
			if code != wantHTTP {
				t.Fatalf("/pusher/auth: status %d %v, want %d", code, body, wantHTTP)
			}
			if !tc.allowed {
				if body["reason"] != "AUTHORIZATION_FAILED" {
					t.Fatalf("/pusher/auth: reason %q, want AUTHORIZATION_FAILED", body["reason"])
				}
			} else {
				if body["shared_secret"] == "" {
					t.Fatalf("/pusher/auth: no shared_secret: %v", body)
				}
				c.Send(protocol.EventSubscribe, "", map[string]any{"channel": tc.channel, "auth": body["auth"]})
				c.Expect(protocol.EventSubscriptionSucceeded, tc.channel)
			}

			resp, err := auth.AuthorizeChannel(ctx, &pushercmv1.AuthorizeChannelRequest{SocketId: c.SocketID, ChannelName: tc.channel, Token: tc.token})
			if !tc.allowed {
				wantStatus(t, err, codes.PermissionDenied, "AUTHORIZATION_FAILED")
				return
			}
			if err != nil {
				t.Fatalf("AuthorizeChannel: %v", err)
			}
			if resp.GetMatchedRule() != tc.rule || resp.GetSharedSecret() != body["shared_secret"] || resp.GetAuth() != body["auth"] {
				t.Fatalf("AuthorizeChannel: rule %q secret %q auth %q, want rule %q and what /pusher/auth signed %v",
					resp.GetMatchedRule(), resp.GetSharedSecret(), resp.GetAuth(), tc.rule, body)
			}
		})
	}
}

// TestAuthenticateUserWatchlist: the watchlist of AuthenticateUser reaches
// the signed user_data, and the embedded server then tells the watcher when
// a watched user comes online and goes offline.
func TestAuthenticateUserWatchlist(t *testing.T) {
	a, _ := startAuthApp(t, "", nil)
	auth, ctx := authServiceClient(t, a)
	signIn := func(sub string, watchlist ...string) *pushertest.Client {
		t.Helper()
		c := dialAuthEdge(t, a)
		resp, err := auth.AuthenticateUser(ctx, &pushercmv1.AuthenticateUserRequest{
			SocketId: c.SocketID, Token: mintUser(t, authz.MintOptions{Subject: sub}), Watchlist: watchlist,
		})
		if err != nil {
			t.Fatalf("AuthenticateUser(%s): %v", sub, err)
		}
		var ud struct {
			ID        string   `json:"id"`
			Watchlist []string `json:"watchlist"`
		}
		if err := json.Unmarshal([]byte(resp.GetUserData()), &ud); err != nil || ud.ID != sub || !slices.Equal(ud.Watchlist, watchlist) {
			t.Fatalf("user_data %s (%v), want id %s and watchlist %v", resp.GetUserData(), err, sub, watchlist)
		}
		c.Send(protocol.EventSignin, "", map[string]any{"auth": resp.GetAuth(), "user_data": resp.GetUserData()})
		c.Expect(protocol.EventSigninSuccess, "")
		return c
	}

	watcher := signIn("ann", "bob", "cid")
	// Right after sign-in: the status of the whole watchlist.
	wantWatchlist(t, watcher, nil, []string{"bob", "cid"})

	bob := signIn("bob")
	wantWatchlist(t, watcher, []string{"bob"}, nil)

	bob.Close()
	wantWatchlist(t, watcher, nil, []string{"bob"})
}

// wantWatchlist waits for the next watchlist event on c and checks its
// online and offline ids.
func wantWatchlist(t *testing.T, c *pushertest.Client, online, offline []string) {
	t.Helper()
	m := c.Expect(protocol.EventWatchlist, "")
	var data struct {
		Events []struct {
			Name    string   `json:"name"`
			UserIDs []string `json:"user_ids"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(m.DataString()), &data); err != nil {
		t.Fatalf("watchlist event %s: %v", m.DataString(), err)
	}
	got := map[string][]string{}
	for _, e := range data.Events {
		ids := slices.Clone(e.UserIDs)
		slices.Sort(ids)
		got[e.Name] = ids
	}
	if !slices.Equal(got["online"], online) || !slices.Equal(got["offline"], offline) {
		t.Fatalf("watchlist event %s, want online %v offline %v", m.DataString(), online, offline)
	}
}
