package e2e_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/milequest/pushercm/app"
	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/protocol"
)

// subscribeVia subscribes c to channel with what /pusher/auth answers for
// token, as pusher-js does.
func subscribeVia(t *testing.T, a *app.App, c *pushertest.Client, token, channel string) {
	t.Helper()
	code, body := authPost(t, a, "/pusher/auth", token, url.Values{"socket_id": {c.SocketID}, "channel_name": {channel}}, nil)
	if code != http.StatusOK {
		t.Fatalf("auth %s: %d %v", channel, code, body)
	}
	data := map[string]any{"channel": channel, "auth": body["auth"]}
	if cd, ok := body["channel_data"]; ok {
		data["channel_data"] = cd
	}
	c.Send(protocol.EventSubscribe, "", data)
	c.Expect(protocol.EventSubscriptionSucceeded, channel)
}

// TestClientEventPermission: a rule that grants only subscribe makes the
// channel read-only for client events, end to end (/pusher/auth, then two
// real sockets); a rule that grants client-events relays them.
func TestClientEventPermission(t *testing.T) {
	a, _ := startAuthApp(t, "", func(c *config.Config) {
		c.ChannelRules.Rules = []authz.Rule{
			{Name: "readonly-feed", Pattern: "private-ro-{id}", Permissions: []string{authz.PermSubscribe}},
			{Name: "readonly-room", Pattern: "presence-ro-{id}", Permissions: []string{authz.PermSubscribe}},
		}
	})
	alice := mintUser(t, authz.MintOptions{Subject: "alice", Teams: []string{"t1"}})
	bob := mintUser(t, authz.MintOptions{Subject: "bob", Teams: []string{"t1"}})
	tests := []struct {
		name, readOnly, full string
	}{
		{name: "private", readOnly: "private-ro-1", full: "private-team-t1"},
		{name: "presence", readOnly: "presence-ro-1", full: "presence-team-t1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sender := dialAuthEdge(t, a)
			// The receiver fails on any application event it does not expect.
			receiver := pushertest.Dial(t, a.HTTPAddr(), config.DevAppKey, config.DevAppSecret)
			for _, ch := range []string{tc.readOnly, tc.full} {
				subscribeVia(t, a, sender, alice, ch)
				subscribeVia(t, a, receiver, bob, ch)
			}

			sender.Send("client-chat", tc.readOnly, map[string]any{"msg": "refused"})
			m := sender.Expect(protocol.EventError, tc.readOnly)
			var e struct {
				Code int `json:"code"`
			}
			if err := m.DecodeData(&e); err != nil || e.Code != protocol.CodeClientEventRejected {
				t.Fatalf("pusher:error %s, want code %d", m.DataString(), protocol.CodeClientEventRejected)
			}

			// Sent after the refused one on the same socket: if the refused
			// event had been relayed, the receiver would see it first.
			sender.Send("client-chat", tc.full, map[string]any{"msg": "relayed"})
			receiver.Expect("client-chat", tc.full)
		})
	}
}

// TestBrowserUserInfo: through /pusher/auth the browser cannot choose its
// presence name; it sets only http.browserUserInfoKeys, and the edge shows
// the others what the token says.
func TestBrowserUserInfo(t *testing.T) {
	a, _ := startAuthApp(t, "", func(c *config.Config) { c.HTTP.BrowserUserInfoKeys = []string{"emoji"} })
	alice := mintUser(t, authz.MintOptions{Subject: "alice", Teams: []string{"t1"}, Name: "Alice"})
	bob := mintUser(t, authz.MintOptions{Subject: "bob", Teams: []string{"t1"}, Name: "Bob"})
	const channel = "presence-team-t1"
	watcher := dialAuthEdge(t, a)
	subscribeVia(t, a, watcher, bob, channel)

	c := dialAuthEdge(t, a)
	code, body := authPost(t, a, "/pusher/auth", alice, url.Values{"socket_id": {c.SocketID}, "channel_name": {channel},
		"user_info": {`{"name":"Bob (admin)","user_id":"bob","emoji":"x"}`}}, nil)
	const want = `{"user_id":"alice","user_info":{"emoji":"x","name":"Alice"}}`
	if code != http.StatusOK || body["channel_data"] != want {
		t.Fatalf("auth: %d %v, want channel_data %s", code, body, want)
	}
	c.Send(protocol.EventSubscribe, "", map[string]any{"channel": channel, "auth": body["auth"], "channel_data": body["channel_data"]})
	c.Expect(protocol.EventSubscriptionSucceeded, channel)
	m := watcher.Expect("pusher_internal:member_added", channel)
	var added struct {
		UserID   string         `json:"user_id"`
		UserInfo map[string]any `json:"user_info"`
	}
	if err := m.DecodeData(&added); err != nil || added.UserID != "alice" || added.UserInfo["name"] != "Alice" || added.UserInfo["emoji"] != "x" {
		t.Fatalf("member_added %s", m.DataString())
	}
}
