package pusher

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/edge"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/pushertest/edgetest"
)

// edgeEnv is a second pushercm's edge (real WebSocket server and HTTP API on
// 127.0.0.1:0) behind the fault proxy, with the pusher driver pointed at the proxy: the
// same path events take to Pusher, end to end to a subscribed WebSocket client.
type edgeEnv struct {
	edge   *edge.Server
	proxy  *faultProxy
	driver *Driver
	sleeps *sleepRecorder
}

func newEdgeEnv(t *testing.T, mutate func(*Config)) *edgeEnv {
	t.Helper()
	cfg := edgetest.Config()
	cfg.AppID, cfg.Key, cfg.Secret = testAppID, testKey, testSecret
	s := edgetest.Start(t, cfg).Server
	e := &edgeEnv{edge: s, sleeps: &sleepRecorder{}}
	e.proxy = newFaultProxy(t, "http://"+s.Addr().String())
	dcfg := Config{
		AppID: testAppID, Key: testKey, Secret: testSecret,
		Host: e.proxy.host(), Scheme: "http",
		RequestTimeout:          10 * time.Second,
		ReconnectAttempts:       3,
		ReconnectDelay:          100 * time.Millisecond,
		MaxReconnectDelay:       time.Second,
		BreakerFailureThreshold: 100,
		BreakerOpenTimeout:      30 * time.Second,
	}
	if mutate != nil {
		mutate(&dcfg)
	}
	d, err := New(dcfg, withSleep(e.sleeps.Sleep), withBackOff(exactBackOff(dcfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	e.driver = d
	return e
}

func (e *edgeEnv) dial(t *testing.T) *pushertest.Client {
	return pushertest.Dial(t, e.edge.Addr().String(), testKey, testSecret)
}

func TestEdgeDeliveryThroughFaults(t *testing.T) {
	e := newEdgeEnv(t, nil)
	a, b := e.dial(t), e.dial(t)
	a.Subscribe("team-1", "")
	a.Subscribe("presence-team-1", "u1")
	b.Subscribe("team-1", "")

	store, _ := delivery.NewMemoryStore(delivery.MemoryStoreConfig{})
	p := delivery.NewPublisher(e.driver, delivery.WithIdempotencyStore(store))
	ctx := context.Background()

	// 500, 429 and 503 before the edge sees the request: retried, delivered once.
	e.proxy.setPlan(fail500, fail429, fail503)
	out, err := p.Publish(ctx, delivery.Event{ID: "e1", Channels: []string{"team-1", "presence-team-1"}, Name: "activity", Data: `{"km":1}`})
	if err != nil {
		t.Fatal(err)
	}
	// delivered_to is the edge's subscription_count: team-1 has 2 sockets, presence-team-1 1.
	if out.DeliveredTo != 3 {
		t.Fatalf("DeliveredTo = %d, want 3", out.DeliveredTo)
	}
	if got := fmt.Sprint(e.sleeps.Delays()); got != "[100ms 200ms 400ms]" {
		t.Fatalf("backoff = %s", got)
	}
	a.Expect("activity", "team-1")
	a.Expect("activity", "presence-team-1")
	if m := b.Expect("activity", "team-1"); m.DataString() != `{"km":1}` {
		t.Fatalf("data = %s", m.DataString())
	}

	// A 4xx is not retried and delivers nothing.
	e.proxy.setPlan(fail400)
	if _, err := p.Publish(ctx, delivery.Event{ID: "e2", Channels: []string{"team-1"}, Name: "rejected", Data: "{}"}); !errors.Is(err, delivery.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	// The repeat of e1 is a duplicate. The next frame the clients see is the marker.
	if out, err := p.Publish(ctx, delivery.Event{ID: "e1", Channels: []string{"team-1", "presence-team-1"}, Name: "activity", Data: `{"km":1}`}); err != nil || !out.Duplicate {
		t.Fatalf("repeat = %+v, %v", out, err)
	}
	if _, err := p.Publish(ctx, delivery.Event{Channels: []string{"team-1"}, Name: "marker", Data: "{}"}); err != nil {
		t.Fatal(err)
	}
	a.Expect("marker", "team-1")
	b.Expect("marker", "team-1")
}

func TestEdgeBatchAndUser(t *testing.T) {
	e := newEdgeEnv(t, nil)
	a := e.dial(t)
	a.Subscribe("team-1", "")
	a.SignIn("u7")

	var events []delivery.Event
	for i := 0; i < 23; i++ {
		events = append(events, delivery.Event{Channels: []string{"team-1"}, Name: fmt.Sprintf("n%02d", i), Data: fmt.Sprint(i)})
	}
	// Every batch request fails once with a 503 first.
	var seen = map[string]bool{}
	e.proxy.setRule(func(r *http.Request, body []byte) fault {
		k := string(body)
		if strings.HasSuffix(r.URL.Path, "/batch_events") && !seen[k] {
			seen[k] = true
			return fail503
		}
		return pass
	})
	res, errs := e.driver.PublishBatch(context.Background(), events)
	for i := range events {
		if errs[i] != nil || res[i].DeliveredTo != 1 {
			t.Fatalf("event %d: %+v, %v", i, res[i], errs[i])
		}
	}
	// Requests may run in parallel, so order across requests is not fixed; each event
	// must arrive exactly once.
	got := map[string]int{}
	for range events {
		m := a.Next()
		if m.Channel != "team-1" {
			t.Fatalf("unexpected frame %+v", m)
		}
		got[m.Event]++
	}
	for _, ev := range events {
		if got[ev.Name] != 1 {
			t.Fatalf("%s arrived %d times", ev.Name, got[ev.Name])
		}
	}

	if _, err := e.driver.SendToUser(context.Background(), "u7", "achievement", `{"badge":"10k"}`); err != nil {
		t.Fatal(err)
	}
	if m := a.Expect("achievement", "#server-to-user-u7"); m.DataString() != `{"badge":"10k"}` {
		t.Fatalf("data = %s", m.DataString())
	}
}

func TestEdgeQueries(t *testing.T) {
	e := newEdgeEnv(t, nil)
	a, b := e.dial(t), e.dial(t)
	a.Subscribe("presence-team-1", "u1")
	b.Subscribe("presence-team-1", "u2")
	b.Subscribe("team-1", "")
	ctx := context.Background()

	list, err := e.driver.Channels(ctx, "")
	if err != nil || fmt.Sprint(names(list)) != "[presence-team-1 team-1]" {
		t.Fatalf("channels = %+v, %v", list, err)
	}
	list, err = e.driver.Channels(ctx, "presence-")
	if err != nil || len(list) != 1 || list[0].UserCount != 2 {
		t.Fatalf("presence channels = %+v, %v", list, err)
	}
	ch, err := e.driver.Channel(ctx, "team-1")
	if err != nil || !ch.Occupied || ch.SubscriptionCount != 1 {
		t.Fatalf("channel = %+v, %v", ch, err)
	}
	ch, err = e.driver.Channel(ctx, "presence-team-1")
	if err != nil || !ch.Occupied || ch.UserCount != 2 {
		t.Fatalf("presence channel = %+v, %v", ch, err)
	}
	members, err := e.driver.PresenceMembers(ctx, "presence-team-1")
	if err != nil || len(members) != 2 {
		t.Fatalf("members = %+v, %v", members, err)
	}
	ids := []string{members[0].UserID, members[1].UserID}
	if fmt.Sprint(ids) != "[u1 u2]" && fmt.Sprint(ids) != "[u2 u1]" {
		t.Fatalf("member ids = %v", ids)
	}
}

// TestEdgeHidesServerToUserChannels: a Pusher-compatible server may list a
// socket's own #server-to-user- channel; the driver's channel reads do not.
func TestEdgeHidesServerToUserChannels(t *testing.T) {
	e := newEdgeEnv(t, nil)
	a := e.dial(t)
	a.SignIn("u7")
	a.Subscribe("#server-to-user-u7", "")
	a.Subscribe("team-1", "")
	ctx := context.Background()

	list, err := e.driver.Channels(ctx, "")
	if err != nil || fmt.Sprint(names(list)) != "[team-1]" {
		t.Fatalf("channels = %+v, %v", list, err)
	}
	ch, err := e.driver.Channel(ctx, "#server-to-user-u7")
	if err != nil || ch.Occupied || ch.SubscriptionCount != 0 {
		t.Fatalf("channel = %+v, %v; want unoccupied", ch, err)
	}
}

func TestEdgeBreakerOpensAndCloses(t *testing.T) {
	e := newEdgeEnv(t, func(c *Config) {
		c.BreakerFailureThreshold = 2
		c.BreakerOpenTimeout = time.Second
		c.ReconnectAttempts = 1
	})
	a := e.dial(t)
	a.Subscribe("team-1", "")
	e.proxy.setRule(func(*http.Request, []byte) fault { return fail500 })
	ctx := context.Background()
	if _, err := e.driver.Publish(ctx, ev("x", "team-1")); !errors.Is(err, delivery.ErrDeliveryFailed) && !errors.Is(err, delivery.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if h := e.driver.Health(); h.Breaker != delivery.BreakerOpen {
		t.Fatalf("health = %+v", h)
	}
	before := len(e.proxy.requests())
	if _, err := e.driver.Publish(ctx, ev("y", "team-1")); !errors.Is(err, delivery.ErrUnavailable) {
		t.Fatalf("open breaker err = %v", err)
	}
	if len(e.proxy.requests()) != before {
		t.Fatal("a request went out while the breaker was open")
	}
	e.proxy.setRule(nil)
	waitHalfOpen(t, e.driver)
	if res, err := e.driver.Publish(ctx, ev("z", "team-1")); err != nil || res.DeliveredTo != 1 {
		t.Fatalf("probe = %+v, %v", res, err)
	}
	if h := e.driver.Health(); h.Breaker != delivery.BreakerClosed || !h.Healthy {
		t.Fatalf("health = %+v", h)
	}
	// Only the probe's event reached the client.
	if m := a.Expect("activity", "team-1"); m.DataString() != `{"id":"z"}` {
		t.Fatalf("data = %s", m.DataString())
	}
}
