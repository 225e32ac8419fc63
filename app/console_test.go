package app_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/internal/pushertest/apptest"
)

type consoleError struct {
	Error struct{ Code, Reason, Message string } `json:"error"`
}

// TestConsoleGateway: the console's API is the gRPC API behind the same
// interceptors: the token is checked, the scopes hold, unlisted methods do
// not exist, and the event stream streams.
func TestConsoleGateway(t *testing.T) {
	a := apptest.Start(t, func(c *config.Config) { c.Ops.Console = true })
	reader := a.Token(t, "ops", interceptors.ScopeConnectionsRead)
	post := func(method, token, body string) (*http.Response, consoleError) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+a.OpsAddr()+"/console/api/"+method, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e consoleError
		if resp.StatusCode != http.StatusOK {
			_ = json.NewDecoder(resp.Body).Decode(&e)
			_ = resp.Body.Close()
		}
		return resp, e
	}
	tests := []struct {
		name, method, token, body string
		status                    int
		reason                    string
	}{
		{"no token", "ConnectionService/GetMetrics", "", "{}", 401, "AUTHENTICATION_FAILED"},
		{"bad token", "ConnectionService/GetMetrics", "not-a-jwt", "{}", 401, "AUTHENTICATION_FAILED"},
		{"read", "ConnectionService/GetMetrics", reader, "{}", 200, ""},
		{"write without connections:write", "ConnectionService/DisconnectConnection", reader, `{"socketId":"1.1"}`, 403, "AUTHORIZATION_FAILED"},
		{"publish without events:publish", "BroadcastService/SendEvent", reader, `{"event":{"channels":["a"],"name":"x","data":"{}"}}`, 403, "AUTHORIZATION_FAILED"},
		{"handler's own validation", "ConnectionService/GetConnection", reader, `{"socketId":"nope"}`, 400, "INVALID_ARGUMENT"},
		{"not a console method", "AuthService/AuthorizeChannel", reader, "{}", 404, ""},
		{"bad JSON", "ConnectionService/GetMetrics", reader, `{"nope":1}`, 400, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, e := post(tc.method, tc.token, tc.body)
			if resp.StatusCode == http.StatusOK {
				_ = resp.Body.Close()
			}
			if resp.StatusCode != tc.status || e.Error.Reason != tc.reason {
				t.Fatalf("status %d reason %q (%s), want %d %q", resp.StatusCode, e.Error.Reason, e.Error.Message, tc.status, tc.reason)
			}
		})
	}

	t.Run("the event stream", func(t *testing.T) {
		resp, e := post("ConnectionService/WatchConnectionEvents", reader, `{"types":["CONNECTION_EVENT_TYPE_CONNECTED"]}`)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %+v", resp.StatusCode, e)
		}
		defer func() { _ = resp.Body.Close() }()
		c := a.Dial(t)
		defer c.Close()
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		var msg struct {
			Event struct{ Type, SocketID string } `json:"event"`
		}
		if err := json.Unmarshal([]byte(line), &msg); err != nil {
			t.Fatal(err)
		}
		if msg.Event.Type != "CONNECTION_EVENT_TYPE_CONNECTED" || msg.Event.SocketID == "" {
			t.Fatalf("event %s", line)
		}
	})
}
