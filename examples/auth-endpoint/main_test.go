package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/milequest/pushercm/app"
	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/protocol"
)

// TestProxyToPushercm runs the example against a real pushercm (dev mode,
// 127.0.0.1:0) and checks what pusher-js would receive.
func TestProxyToPushercm(t *testing.T) {
	cfg := config.Default()
	cfg.Dev = true
	cfg.GRPC.Addr, cfg.HTTP.Addr, cfg.Ops.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Log.Level = "ERROR"
	filled := cfg.ApplyDev()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	a, err := app.New(ctx, &config.Loaded{Config: cfg, DevFilled: filled}, app.Options{LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	mint := func(o authz.MintOptions) string {
		o.TTL = time.Hour
		secret := config.DevJWTSecret
		if len(o.Scopes) > 0 {
			secret = config.DevServiceSecret // service tokens have their own trust
		}
		tok, err := authz.Mint([]byte(secret), o)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	service := mint(authz.MintOptions{Subject: "web-app", Scopes: []string{"channels:authorize"}})
	user := mint(authz.MintOptions{Subject: "u1", Teams: []string{"t1"}})
	srv := httptest.NewServer(NewHandler(pushercmv1.NewAuthServiceClient(conn), service))
	t.Cleanup(srv.Close)

	const socket = "123.456"
	tests := []struct {
		name, path, token string
		form              url.Values
		wantStatus        int
	}{
		{"private channel", "/pusher/auth", user, url.Values{"socket_id": {socket}, "channel_name": {"private-user-u1"}}, 200},
		{"presence channel", "/pusher/auth", user, url.Values{"socket_id": {socket}, "channel_name": {"presence-team-t1"}}, 200},
		{"sign-in", "/pusher/user-auth", user, url.Values{"socket_id": {socket}}, 200},
		{"denied", "/pusher/auth", user, url.Values{"socket_id": {socket}, "channel_name": {"private-user-u2"}}, 403},
		{"no user token", "/pusher/auth", "", url.Values{"socket_id": {socket}, "channel_name": {"private-user-u1"}}, 401},
		{"bad socket id", "/pusher/auth", user, url.Values{"socket_id": {"x"}, "channel_name": {"private-user-u1"}}, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+tc.path, strings.NewReader(tc.form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			var body map[string]string
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d %v, want %d", resp.StatusCode, body, tc.wantStatus)
			}
			if resp.StatusCode != 200 {
				return
			}
			if tc.path == "/pusher/user-auth" {
				if err := protocol.VerifyUserAuth(config.DevAppKey, config.DevAppSecret, socket, body["user_data"], body["auth"]); err != nil {
					t.Errorf("user auth does not verify: %v (%v)", err, body)
				}
				return
			}
			if err := protocol.VerifyChannelAuth(config.DevAppKey, config.DevAppSecret, socket, tc.form.Get("channel_name"), body["channel_data"], body["auth"]); err != nil {
				t.Errorf("channel auth does not verify: %v (%v)", err, body)
			}
		})
	}
}
