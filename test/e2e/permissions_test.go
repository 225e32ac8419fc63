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
