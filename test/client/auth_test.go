package client_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/client"
	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/interceptors"
)

// TestAuthHelpers: AuthorizeChannel and AuthenticateUser against a real
// server, their answers shaped for pusher-js, and refusals with their
// codes, reasons and deciding rule.
func TestAuthHelpers(t *testing.T) {
	master := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	a, cfg := startAppWith(t, func(c *config.Config) { c.Pusher.EncryptionMasterKeyBase64 = master })
	c := dial(t, a.GRPCAddr(), client.WithToken(token(t, cfg, interceptors.ScopeAuthorize)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	user := func(o authz.MintOptions) string {
		o.TTL = time.Hour
		tok, err := authz.Mint([]byte(cfg.JWT.Secret), o)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	member := user(authz.MintOptions{Subject: "u1", Teams: []string{"t1"}, Name: "Ann"})

	t.Run("presence channel", func(t *testing.T) {
		res, err := c.AuthorizeChannel(ctx, client.ChannelAuthRequest{
			SocketID: "1.2", Channel: "presence-team-t1", UserToken: member, UserInfo: map[string]any{"avatar": "a.png"},
		})
		if err != nil {
			t.Fatal(err)
		}
		js := res.PusherJS()
		if res.MatchedRule != "team-presence" || res.UserID != "u1" || js["auth"] == "" || js["channel_data"] != res.ChannelData || len(js) != 2 {
			t.Fatalf("%+v, pusher-js %v", res, js)
		}
		var cd struct {
			UserID   string         `json:"user_id"`
			UserInfo map[string]any `json:"user_info"`
		}
		if err := json.Unmarshal([]byte(res.ChannelData), &cd); err != nil || cd.UserID != "u1" || cd.UserInfo["avatar"] != "a.png" || cd.UserInfo["name"] != "Ann" {
			t.Fatalf("channel_data %s (%v)", res.ChannelData, err)
		}
	})
	t.Run("encrypted channel", func(t *testing.T) {
		res, err := c.AuthorizeChannel(ctx, client.ChannelAuthRequest{SocketID: "1.2", Channel: "private-encrypted-team-t1", UserToken: member})
		if err != nil {
			t.Fatal(err)
		}
		if res.SharedSecret == "" || res.PusherJS()["shared_secret"] != res.SharedSecret {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("sign-in with a watchlist", func(t *testing.T) {
		res, err := c.AuthenticateUser(ctx, client.UserAuthRequest{SocketID: "1.2", UserToken: member, Watchlist: []string{"u2", "u3"}})
		if err != nil {
			t.Fatal(err)
		}
		var ud struct {
			ID        string   `json:"id"`
			Watchlist []string `json:"watchlist"`
		}
		if err := json.Unmarshal([]byte(res.UserData), &ud); err != nil || ud.ID != "u1" || !slices.Equal(ud.Watchlist, []string{"u2", "u3"}) {
			t.Fatalf("user_data %s (%v)", res.UserData, err)
		}
		if js := res.PusherJS(); js["auth"] != res.Auth || js["user_data"] != res.UserData || res.UserID != "u1" {
			t.Fatalf("%+v", res)
		}
	})

	refusals := []struct {
		name       string
		req        client.ChannelAuthRequest
		code       codes.Code
		reason     string
		ruleInMeta string
	}{
		{"other team", client.ChannelAuthRequest{SocketID: "1.2", Channel: "private-team-t2", UserToken: member}, codes.PermissionDenied, "AUTHORIZATION_FAILED", "team-channel"},
		{"no rule", client.ChannelAuthRequest{SocketID: "1.2", Channel: "private-nobody", UserToken: member}, codes.PermissionDenied, "AUTHORIZATION_FAILED", ""},
		{"no user token", client.ChannelAuthRequest{SocketID: "1.2", Channel: "private-team-t1"}, codes.Unauthenticated, "AUTHENTICATION_FAILED", ""},
		{"bad socket id", client.ChannelAuthRequest{SocketID: "x", Channel: "private-team-t1", UserToken: member}, codes.InvalidArgument, "INVALID_ARGUMENT", ""},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.AuthorizeChannel(ctx, tc.req)
			if status.Code(err) != tc.code || client.Reason(err) != tc.reason || client.Metadata(err)["rule"] != tc.ruleInMeta {
				t.Fatalf("got %v (reason %q, metadata %v), want %v %s rule %q", err, client.Reason(err), client.Metadata(err), tc.code, tc.reason, tc.ruleInMeta)
			}
			if client.Message(err) == "" {
				t.Fatal("no message saying why")
			}
		})
	}
	t.Run("user info that is not JSON", func(t *testing.T) {
		_, err := c.AuthorizeChannel(ctx, client.ChannelAuthRequest{SocketID: "1.2", Channel: "presence-team-t1", UserToken: member, UserInfo: map[string]any{"f": func() {}}})
		if err == nil {
			t.Fatal("want an error")
		}
	})
}
