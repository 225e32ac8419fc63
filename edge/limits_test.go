package edge

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pusher "github.com/pusher/pusher-http-go/v5"

	"github.com/milequest/pushercm/edge/httpapi"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/protocol"
)

// A signed-in user's subscriptions count across all of the user's sockets.
func TestSubscriptionsPerUser(t *testing.T) {
	cfg := testConfig()
	cfg.UserAuthEnabled = true
	cfg.MaxSubscriptionsPerUser = 3
	s := startServer(t, cfg)
	a, b, anon := connect(t, s), connect(t, s), connect(t, s)
	signin(t, a, `{"id":"7"}`)
	signin(t, b, `{"id":"7"}`)
	a.subscribeOK("a1", "")
	a.subscribeOK("a2", "")
	b.subscribeOK("b1", "")
	b.subscribe("b2", "", "")
	if m := b.expect(protocol.EventSubscriptionError, "b2"); !strings.Contains(m.str(), protocol.SubErrLimitReached) {
		t.Fatalf("4th subscription of user 7: %s", m.Data)
	}
	// Another socket of nobody in particular is not affected, and the user's
	// sockets stay open.
	anon.subscribeOK("b2", "")
	a.send(map[string]any{"event": protocol.EventPing, "data": map[string]any{}})
	a.expect(protocol.EventPong, "")
	// Leaving frees room.
	a.send(map[string]any{"event": protocol.EventUnsubscribe, "data": map[string]any{"channel": "a1"}})
	pushertest.Eventually(t, "unsubscribe", func() bool { ci, _ := s.Connection(a.id); return len(ci.Channels) == 1 })
	b.subscribeOK("b2", "")
}

type countingLimiter struct {
	calls atomic.Int64
	allow int64
}

func (l *countingLimiter) Allow(_ context.Context, r httpapi.LimitRequest) (bool, time.Duration) {
	return l.calls.Add(1) <= l.allow, 1500 * time.Millisecond
}

// WithHTTPLimiter reaches the HTTP API: over the limit, 429 with Retry-After.
func TestHTTPLimiter(t *testing.T) {
	lim := &countingLimiter{allow: 2}
	s := startServer(t, testConfig(), WithHTTPLimiter(lim))
	client := pusher.Client{AppID: "app-id", Key: testKey, Secret: testSecret, Host: s.Addr().String()}
	for i := 0; i < 2; i++ {
		if err := client.Trigger("c", "e", "x"); err != nil {
			t.Fatalf("trigger %d: %v", i, err)
		}
	}
	err := client.Trigger("c", "e", "x")
	if err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("3rd trigger: %v, want 429", err)
	}
	// Retry-After is whole seconds, rounded up.
	path := "/apps/app-id/channels"
	q := url.Values{}
	for k, v := range protocol.SignRequest(testKey, testSecret, http.MethodGet, path, nil, nil, time.Now()) {
		q.Set(k, v)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.Addr().String()+path+"?"+q.Encode(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("status %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
