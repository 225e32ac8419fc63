package e2e_test

import (
	"bufio"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/redistest"
	"github.com/milequest/pushercm/protocol"
)

// userLimitConfig limits each user to a burst of 10 events refilled at one
// per 10 s: the 11th event within a second is refused, even on a machine so
// loaded that the calls take several seconds.
const userLimitConfig = `rateLimit:
  limiters:
    principal:
      messagesPerSecond: 1000
      burstLimit: 2000
      messagesPerMinute: 60000
    user:
      messagesPerSecond: 0.1
      burstLimit: 10
`

func configFile(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pushercm.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// reason is the ErrorInfo reason of err ("" without one).
func reason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei.GetReason()
		}
	}
	return ""
}

// TestClusterUserRateLimit: a user's 11th event in one second is refused
// whichever of three nodes the calls went to, with RetryInfo.
func TestClusterUserRateLimit(t *testing.T) {
	nodes := startCluster(t, redistest.Addr(t), redistest.Prefix(t), 3, "PUSHERCM_CONFIG="+configFile(t, userLimitConfig))
	send := make([]func(user string) error, len(nodes))
	headers := make([]metadata.MD, len(nodes)) // of each node's last call
	for i, n := range nodes {
		conn, ctx := serviceClient(t, n, "events:publish")
		bc := pushercmv1.NewBroadcastServiceClient(conn)
		send[i] = func(user string) error {
			var md metadata.MD
			_, err := bc.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{
				Channels: []string{"feed"}, Name: "e", UserId: user, Payload: &pushercmv1.Event_Data{Data: "{}"}}}, grpc.Header(&md))
			headers[i] = md
			return err
		}
		if err := send[i]("warm-up"); err != nil { // dials the connection
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if err := send[i%3]("u-limit"); err != nil {
			t.Fatalf("event %d through node %d: %v", i+1, i%3, err)
		}
	}
	for i := range nodes {
		err := send[i]("u-limit")
		if status.Code(err) != codes.ResourceExhausted || reason(err) != "RATE_LIMITED" {
			t.Fatalf("11th event through node %d: %v, want RESOURCE_EXHAUSTED / RATE_LIMITED", i, err)
		}
		var retry *errdetails.RetryInfo
		for _, d := range status.Convert(err).Details() {
			if r, ok := d.(*errdetails.RetryInfo); ok {
				retry = r
			}
		}
		if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 {
			t.Fatalf("refusal through node %d without a positive RetryInfo: %v", i, status.Convert(err).Details())
		}
		// The user's bucket of 10, empty, whichever node answers.
		if h := headers[i]; strings.Join(h.Get("x-ratelimit-limit"), ",") != "10" || strings.Join(h.Get("x-ratelimit-remaining"), ",") != "0" {
			t.Fatalf("refusal through node %d: headers %v, want x-ratelimit-limit 10, remaining 0", i, h)
		}
	}
	// Another user is not affected.
	if err := send[1]("u-other"); err != nil {
		t.Fatal(err)
	}
}

// TestClusterIdempotency: the same event id sent through two nodes is
// delivered once; the second answers duplicate: true.
func TestClusterIdempotency(t *testing.T) {
	nodes := startCluster(t, redistest.Addr(t), redistest.Prefix(t), 3)
	sub := pushertest.Dial(t, nodes[0].HTTPAddr, "app-key", "app-secret")
	sub.Subscribe("orders", "")
	event := func(id, name string) *pushercmv1.SendEventRequest {
		return &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{Id: id, Channels: []string{"orders"}, Name: name, Payload: &pushercmv1.Event_Data{Data: "{}"}}}
	}
	c1, ctx1 := serviceClient(t, nodes[1], "events:publish")
	c2, ctx2 := serviceClient(t, nodes[2], "events:publish")
	r1, err := pushercmv1.NewBroadcastServiceClient(c1).SendEvent(ctx1, event("evt-cluster-1", "once"))
	if err != nil || r1.GetDuplicate() {
		t.Fatalf("first send: %v, duplicate %v", err, r1.GetDuplicate())
	}
	r2, err := pushercmv1.NewBroadcastServiceClient(c2).SendEvent(ctx2, event("evt-cluster-1", "once"))
	if err != nil || !r2.GetDuplicate() {
		t.Fatalf("same id through another node: %v, duplicate %v, want duplicate", err, r2.GetDuplicate())
	}
	if _, err := pushercmv1.NewBroadcastServiceClient(c2).SendEvent(ctx2, event("", "marker")); err != nil {
		t.Fatal(err)
	}
	sub.Expect("once", "orders")
	if m := sub.Next(); m.Event != "marker" {
		t.Fatalf("after the event the subscriber got %q, want marker (the event was delivered twice)", m.Event)
	}
}

// dialOutcome opens a socket on addr: 0 when connection_established
// arrives (the socket stays open until the test ends), else the close code.
func dialOutcome(t *testing.T, addr string) (code int) {
	t.Helper()
	c := pushertest.Open(t, addr, config.DevAppKey, config.DevAppSecret, pushertest.Options{})
	for {
		select {
		case m, ok := <-c.Frames():
			switch {
			case !ok:
				ce, closed := c.CloseFrame()
				if !closed {
					t.Fatal("the socket ended without a close frame")
				}
				return int(ce.Code)
			case m.Event == protocol.EventConnectionEstablished:
				c.Discard()
				return 0
			case m.Event != protocol.EventError: // after pusher:error the close frame follows
				t.Fatalf("unexpected first frame %s", m.Event)
			}
		case <-time.After(pushertest.Wait):
			t.Fatal("no first frame within the wait")
		}
	}
}

// labelled sums the samples of name whose labels contain label.
func labelled(t *testing.T, opsAddr, name, label string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + opsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, label) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}

// TestClusterMaxConnections: a cap of 4 sockets holds over three nodes
// (refused with 4004, counted as CONNECTION_POOL_EXHAUSTED), and the slots of
// a SIGKILLed node come back within cluster.nodeTtl.
func TestClusterMaxConnections(t *testing.T) {
	nodes := startCluster(t, redistest.Addr(t), redistest.Prefix(t), 3, "PUSHERCM_CLUSTER_MAX_CONNECTIONS=4")
	for i, n := range []int{0, 0, 1, 2} {
		if code := dialOutcome(t, nodes[n].HTTPAddr); code != 0 {
			t.Fatalf("socket %d on node %d refused with %d under the cap", i+1, n, code)
		}
	}
	for i, n := range nodes {
		if code := dialOutcome(t, n.HTTPAddr); code != protocol.CodeOverQuota {
			t.Fatalf("5th socket through node %d: close code %d, want %d", i, code, protocol.CodeOverQuota)
		}
	}
	if v := labelled(t, nodes[1].OpsAddr, "pushercm_connections_refused_total", `reason="CONNECTION_POOL_EXHAUSTED"`); v != 1 {
		t.Fatalf("node 1 counted %v refusals as CONNECTION_POOL_EXHAUSTED, want 1", v)
	}

	// Node 0 held two sockets; it dies without a goodbye.
	nodes[0].Signal(t, syscall.SIGKILL)
	killed := time.Now()
	for dialOutcome(t, nodes[1].HTTPAddr) != 0 {
		if time.Since(killed) > 10*time.Second {
			t.Fatal("the dead node's connection slots were not released within 10s (nodeTtl 1.5s)")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("slots back %v after SIGKILL", time.Since(killed).Round(10*time.Millisecond))
	if code := dialOutcome(t, nodes[2].HTTPAddr); code != 0 {
		t.Fatalf("second freed slot refused with %d", code)
	}
	if code := dialOutcome(t, nodes[2].HTTPAddr); code != protocol.CodeOverQuota {
		t.Fatalf("over the cap again: close code %d, want %d", code, protocol.CodeOverQuota)
	}
}

// TestClusterRateLimitsWithoutRedis: with Redis stopped the limits fall back
// to the node's own (still enforced, never refusing everything), health is
// degraded with the reason, and the fallbacks are counted; when Redis is
// back the shared limits return.
func TestClusterRateLimitsWithoutRedis(t *testing.T) {
	rs := redistest.Start(t)
	nodes := startCluster(t, rs.Addr, redistest.Prefix(t), 2, "PUSHERCM_CONFIG="+configFile(t, userLimitConfig))
	conn, ctx := serviceClient(t, nodes[0], "events:publish", "connections:read")
	bc := pushercmv1.NewBroadcastServiceClient(conn)
	cs := pushercmv1.NewConnectionServiceClient(conn)
	send := func(user string) error {
		_, err := bc.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{
			Channels: []string{"feed"}, Name: "e", UserId: user, Payload: &pushercmv1.Event_Data{Data: "{}"}}})
		return err
	}
	if err := send("u-warm"); err != nil {
		t.Fatal(err)
	}

	rs.Stop()
	// The limiter admits the user's burst on the node's own: each publish
	// passes it and is refused only because publishing needs Redis.
	for i := range 10 {
		if err := send("u-down"); status.Code(err) != codes.Unavailable || reason(err) != "CONNECTION_FAILED" {
			t.Fatalf("event %d with Redis down: %v, want UNAVAILABLE / CONNECTION_FAILED (admitted by the node's limits)", i+1, err)
		}
	}
	if err := send("u-down"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("11th event with Redis down: %v, want RESOURCE_EXHAUSTED from the node's own limits", err)
	}
	h, err := cs.GetHealthStatus(ctx, &pushercmv1.GetHealthStatusRequest{})
	if err != nil {
		t.Fatalf("GetHealthStatus with Redis down: %v", err)
	}
	if h.GetStatus() != pushercmv1.HealthStatus_HEALTH_STATUS_DEGRADED || !hasReason(h.GetReasons(), "rate limits") {
		t.Fatalf("health with Redis down: %v %q, want degraded with a rate-limit reason", h.GetStatus(), h.GetReasons())
	}
	if v := labelled(t, nodes[0].OpsAddr, "pushercm_rate_limit_fallbacks_total", `limiter="user"`); v < 11 {
		t.Fatalf("pushercm_rate_limit_fallbacks_total{limiter=user} = %v, want at least 11", v)
	}

	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for send("u-back") != nil {
		if time.Now().After(deadline) {
			t.Fatal("publishes still refused 20s after Redis came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	h, err = cs.GetHealthStatus(ctx, &pushercmv1.GetHealthStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if hasReason(h.GetReasons(), "rate limits") {
		t.Fatalf("health still names the rate-limit fallback after Redis came back: %q", h.GetReasons())
	}
}

func hasReason(reasons []string, sub string) bool {
	for _, r := range reasons {
		if strings.Contains(r, sub) {
			return true
		}
	}
	return false
}

// TestClusterSubscriptionsPerUser: edge.subscriptionsPerUser counts a
// signed-in user's subscriptions on every node.
func TestClusterSubscriptionsPerUser(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "pushercm.yaml")
	if err := os.WriteFile(cfg, []byte("edge:\n  subscriptionsPerUser: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes := startCluster(t, redistest.Addr(t), redistest.Prefix(t), 2, "PUSHERCM_CONFIG="+cfg)
	a := pushertest.Dial(t, nodes[0].HTTPAddr, "app-key", "app-secret")
	b := pushertest.Dial(t, nodes[1].HTTPAddr, "app-key", "app-secret")
	a.SignIn("7")
	b.SignIn("7")
	a.Subscribe("one", "")
	b.Subscribe("two", "")
	b.SubscribeAsync("three", "")
	if m := b.Expect(protocol.EventSubscriptionError, "three"); !strings.Contains(m.DataString(), "Too many subscriptions for this user") {
		t.Fatalf("third subscription across two nodes: %s, want the per-user limit", m.DataString())
	}
	// A subscription given back on one node frees a place on the other.
	a.Send(protocol.EventUnsubscribe, "", map[string]string{"channel": "one"})
	pushertest.Eventually(t, "the freed place is usable on the other node", func() bool {
		b.SubscribeAsync("three", "")
		m := b.Next()
		return m.Event == protocol.EventSubscriptionSucceeded
	})
}
