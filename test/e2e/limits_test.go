package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	pusher "github.com/pusher/pusher-http-go/v5"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/protocol"
)

// TestEdgeLimitsWithDefaults: with the shipped defaults, the 101st
// subscription of a connection is refused and a burst of 20 client events
// gets 4301 errors for the excess; the socket stays connected throughout.
func TestEdgeLimitsWithDefaults(t *testing.T) {
	p := startApp(t, nil) // dev: client events on, Pusher's limits
	c := p.dial(t)
	for i := 0; i < 100; i++ {
		c.Subscribe(fmt.Sprintf("room-%d", i), "")
	}
	c.SubscribeAsync("room-100", "")
	m := c.Expect(protocol.EventSubscriptionError, "room-100")
	if !strings.Contains(string(m.Data), protocol.SubErrLimitReached) {
		t.Fatalf("101st subscription: %s", m.Data)
	}

	// The socket is full but alive; client events on a fresh one.
	c.Send(protocol.EventPing, "", map[string]any{})
	c.Expect(protocol.EventPong, "")
	c, peer := p.dial(t), p.dial(t)
	c.Subscribe("private-chat", "")
	peer.Subscribe("private-chat", "")
	for i := 0; i < 20; i++ {
		c.Send("client-typing", "private-chat", map[string]any{"n": i})
	}
	rejected := 0
	deadline := time.After(wait)
	for rejected < 5 { // 10/s with a burst of 10: about 10 of 20 are refused
		select {
		case m, ok := <-c.Frames():
			if !ok {
				t.Fatal("the socket was closed for client events over the limit")
			}
			if m.Event == protocol.EventError {
				if !strings.Contains(string(m.Data), "4301") {
					t.Fatalf("error %s, want code 4301", m.Data)
				}
				rejected++
			}
		case <-deadline:
			t.Fatalf("only %d client events refused", rejected)
		}
	}
	peer.Expect("client-typing", "private-chat") // the admitted ones are relayed
	// Still connected: a ping is answered.
	c.Send(protocol.EventPing, "", map[string]any{})
	c.Expect(protocol.EventPong, "")
}

// TestNewConnectionsPerIP: over edge.connectionsPerIpPerSecond, new sockets
// are refused with 4100 (pusher-js retries after a back-off).
func TestNewConnectionsPerIP(t *testing.T) {
	p := startApp(t, func(c *config.Config) { c.Edge.ConnectionsPerIPPerSecond = 2 })
	refused := 0
	for i := 0; i < 8; i++ {
		c := pushertest.Open(t, p.app.HTTPAddr(), p.cfg.Pusher.Key, "", pushertest.Options{})
		m := c.Next()
		if m.Event == protocol.EventError {
			if !strings.Contains(string(m.Data), "4100") {
				t.Fatalf("refusal %s, want 4100", m.Data)
			}
			refused++
		}
		c.Close()
	}
	if refused == 0 || refused == 8 {
		t.Fatalf("%d of 8 rapid connections refused at 2/s", refused)
	}
}

// TestPublishRateLimitPerUser: over the real gRPC server with the default
// user limit (burst 50), the 51st SendEvent for one user within a second is
// RESOURCE_EXHAUSTED with RetryInfo; another user is unaffected; health is
// never limited.
func TestPublishRateLimitPerUser(t *testing.T) {
	p := startApp(t, nil)
	bc := pushercmv1.NewBroadcastServiceClient(p.conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+mint(t, p.cfg, "svc-activity", "events:publish"))
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	send := func(user string) error {
		_, err := bc.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{
			Channels: []string{"activity"}, Name: "step", Payload: &pushercmv1.Event_Data{Data: "{}"}, UserId: user,
		}})
		return err
	}
	var limited error
	// The bucket refills at 10/s while we call, so on a slow machine a few
	// more than 50 pass; any caller faster than 10 calls/s is refused soon.
	for i := 0; i < 1000 && limited == nil; i++ {
		if err := send("walker-1"); err != nil {
			limited = err
			if i < 50 {
				t.Fatalf("call %d refused before the burst of 50 was spent: %v", i+1, err)
			}
		}
	}
	st := status.Convert(limited)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("got %v, want RESOURCE_EXHAUSTED", limited)
	}
	var retry *errdetails.RetryInfo
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			retry = d
		case *errdetails.ErrorInfo:
			info = d
		}
	}
	if retry == nil || retry.RetryDelay.AsDuration() <= 0 || retry.RetryDelay.AsDuration() > 200*time.Millisecond {
		t.Fatalf("RetryInfo %v: want the time to the next token (≤ 100 ms at 10/s)", retry)
	}
	if info == nil || info.Reason != "RATE_LIMITED" || info.Metadata["retryAfterMs"] == "" || info.Metadata["resetTime"] == "" {
		t.Fatalf("ErrorInfo %v", info)
	}
	if err := send("walker-2"); err != nil {
		t.Fatalf("another user was limited: %v", err)
	}
	for i := 0; i < 100; i++ {
		if _, err := healthpb.NewHealthClient(p.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("health limited: %v", err)
		}
	}
	// Not a condition to poll: the point is that a retry after exactly the
	// advertised delay (real time, as clients wait it) is accepted.
	time.Sleep(retry.RetryDelay.AsDuration())
	if err := send("walker-1"); err != nil {
		t.Fatalf("retry after RetryInfo's delay still refused: %v", err)
	}
}

// TestWebhooksFromTheApp: edge.webhooks.urls receives Pusher webhooks that
// pusher-http-go's Webhook() accepts.
func TestWebhooksFromTheApp(t *testing.T) {
	var (
		mu     sync.Mutex
		events []string
		bad    []string
	)
	got := make(chan struct{}, 16)
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		client := pusher.Client{AppID: config.DevAppID, Key: config.DevAppKey, Secret: config.DevAppSecret}
		wh, err := client.Webhook(r.Header, body)
		mu.Lock()
		if err != nil {
			bad = append(bad, err.Error())
		} else {
			for _, e := range wh.Events {
				events = append(events, e.Name+":"+e.Channel)
			}
		}
		mu.Unlock()
		got <- struct{}{}
	}))
	defer hooks.Close()
	p := startApp(t, func(c *config.Config) { c.Edge.Webhooks.URLs = []string{hooks.URL} })
	c := p.dial(t)
	c.Subscribe("team-walk", "")
	select {
	case <-got:
	case <-time.After(wait):
		t.Fatal("no webhook arrived")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 || len(events) == 0 || events[0] != "channel_occupied:team-walk" {
		t.Fatalf("webhooks %v, rejected %v", events, bad)
	}
}
