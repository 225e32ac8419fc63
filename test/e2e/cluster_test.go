package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pusher "github.com/pusher/pusher-http-go/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/redistest"
	"github.com/milequest/pushercm/protocol"
)

// startCluster runs n pushercm processes sharing one Redis under prefix,
// with a short heartbeat so that dead nodes go within a couple of seconds.
func startCluster(t *testing.T, redisAddr, prefix string, n int, env ...string) []*Server {
	t.Helper()
	nodes := make([]*Server, n)
	for i := range nodes {
		e := append([]string{
			"PUSHERCM_REDIS_URL=redis://" + redisAddr,
			"PUSHERCM_REDIS_PREFIX=" + prefix,
			"PUSHERCM_CLUSTER_NODE_ID=" + prefix + "-n" + string(rune('0'+i)),
			"PUSHERCM_CLUSTER_HEARTBEAT=250ms",
			"PUSHERCM_CLUSTER_NODE_TTL=1500ms",
		}, env...)
		nodes[i] = StartServer(t, e)
	}
	for _, s := range nodes {
		waitLog(t, s, "connected to redis")
	}
	return nodes
}

func waitLog(t *testing.T, s *Server, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.Log(), what) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", what, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sdkFor(s *Server) *pusher.Client {
	host, port, _ := net.SplitHostPort(s.HTTPAddr)
	return &pusher.Client{AppID: "app-id", Key: "app-key", Secret: "app-secret", Host: net.JoinHostPort(host, port)}
}

func serviceClient(t *testing.T, s *Server, scopes ...string) (*grpc.ClientConn, context.Context) {
	t.Helper()
	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	tok := pushertest.Mint(t, config.DevServiceSecret, authz.MintOptions{Subject: "svc-cluster", Scopes: scopes})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return conn, metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// TestClusterFanOut: subscribers on two nodes, publishes through a third, by
// the HTTP API and by gRPC, reach every subscriber once and in order;
// delivered_to and the channel queries count the whole cluster.
func TestClusterFanOut(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	nodes := startCluster(t, addr, prefix, 3)

	a := pushertest.Dial(t, nodes[0].HTTPAddr, "app-key", "app-secret")
	b := pushertest.Dial(t, nodes[1].HTTPAddr, "app-key", "app-secret")
	for _, c := range []*pushertest.Client{a, b} {
		c.Subscribe("orders", "")
		c.Subscribe("private-team-1", "")
	}

	sdk := sdkFor(nodes[2])
	for i := range 20 {
		if err := sdk.Trigger("orders", "n", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	conn, ctx := serviceClient(t, nodes[2], "events:publish", "connections:read")
	bc := pushercmv1.NewBroadcastServiceClient(conn)
	r, err := bc.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{Channels: []string{"private-team-1"}, Name: "grpc", Payload: &pushercmv1.Event_Data{Data: `{"x":1}`}}})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetDeliveredTo() != 2 {
		t.Fatalf("delivered_to %d, want 2 (one subscriber on each of two other nodes)", r.GetDeliveredTo())
	}
	for _, c := range []*pushertest.Client{a, b} {
		for i := range 20 {
			m := c.Expect("n", "orders")
			var d struct{ I int }
			if err := json.Unmarshal([]byte(m.DataString()), &d); err != nil || d.I != i {
				t.Fatalf("event %d: got %s (%v)", i, m.DataString(), err)
			}
		}
		c.Expect("grpc", "private-team-1")
	}

	// exclude_socket_id across nodes.
	if err := sdk.TriggerExclusive("orders", "skip", "x", a.SocketID); err != nil {
		t.Fatal(err)
	}
	if err := sdk.Trigger("orders", "after", "x"); err != nil {
		t.Fatal(err)
	}
	b.Expect("skip", "orders")
	if m := a.Next(); m.Event != "after" {
		t.Fatalf("excluded socket got %q, want the next event", m.Event)
	}
	b.Expect("after", "orders")

	// The cluster's counts, asked through the node with no subscriber.
	info, err := sdk.Channel("orders", pusher.ChannelParams{Info: &[]string{"subscription_count"}[0]})
	if err != nil || !info.Occupied || info.SubscriptionCount != 2 {
		t.Fatalf("GET /channels/orders through node 2: %+v %v, want 2 subscriptions", info, err)
	}
	cs := pushercmv1.NewConnectionServiceClient(conn)
	lc, err := cs.ListChannels(ctx, &pushercmv1.ListChannelsRequest{})
	if err != nil || len(lc.GetChannels()) != 2 {
		t.Fatalf("ListChannels through node 2: %v %v, want the two channels", lc, err)
	}
}

// TestClusterPresence: one user on two nodes is one member; leaving one node
// sends no member_removed; a SIGKILLed node's members are removed (and
// member_removed sent) within cluster.nodeTtl.
func TestClusterPresence(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	nodes := startCluster(t, addr, prefix, 3)
	const ch = "presence-team-7"

	watcher := pushertest.Dial(t, nodes[0].HTTPAddr, "app-key", "app-secret")
	watcher.Subscribe(ch, "w")
	u1 := pushertest.Dial(t, nodes[1].HTTPAddr, "app-key", "app-secret")
	u1.SubscribeAsync(ch, "u")
	m := u1.Expect(protocol.EventSubscriptionSucceeded, ch)
	if !strings.Contains(m.DataString(), `"w"`) || !strings.Contains(m.DataString(), `"u"`) {
		t.Fatalf("subscription_succeeded on node 1 lists %s, want w and u", m.DataString())
	}
	if m := watcher.Expect(protocol.EventMemberAdded, ch); !strings.Contains(m.DataString(), `"u"`) {
		t.Fatalf("member_added %s", m.DataString())
	}
	u2 := pushertest.Dial(t, nodes[2].HTTPAddr, "app-key", "app-secret")
	u2.Subscribe(ch, "u") // the same user on a third node: no member_added
	u1.Close()            // leaving one node: no member_removed

	sdk := sdkFor(nodes[0])
	users, err := sdk.GetChannelUsers(ch)
	if err != nil || len(users.List) != 2 {
		t.Fatalf("users %+v %v, want w and u", users, err)
	}
	if err := sdk.Trigger(ch, "marker", "1"); err != nil {
		t.Fatal(err)
	}
	if m := watcher.Next(); m.Event != "marker" {
		t.Fatalf("watcher got %s %s before the marker, want nothing", m.Event, m.DataString())
	}

	// SIGKILL the node holding u's last socket.
	if err := nodes[2].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m = watcher.Expect(protocol.EventMemberRemoved, ch)
	if !strings.Contains(m.DataString(), `"u"`) {
		t.Fatalf("member_removed %s", m.DataString())
	}
	// Within cluster.nodeTtl (1.5 s) of the kill, plus delivery.
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("member_removed %s after the kill, want within the node TTL (1.5s)", d)
	}
	t.Logf("member_removed %s after the SIGKILL (cluster.nodeTtl 1.5s)", time.Since(start))
	users, err = sdk.GetChannelUsers(ch)
	if err != nil || len(users.List) != 1 {
		t.Fatalf("users after the kill %+v %v, want only w", users, err)
	}
}

// TestClusterUsers: SendToUser and terminate_connections reach a user's
// sockets on every node.
func TestClusterUsers(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	nodes := startCluster(t, addr, prefix, 3)

	a := pushertest.Dial(t, nodes[0].HTTPAddr, "app-key", "app-secret")
	b := pushertest.Dial(t, nodes[1].HTTPAddr, "app-key", "app-secret")
	a.SignIn("42")
	b.SignIn("42")
	conn, ctx := serviceClient(t, nodes[2], "events:publish", "connections:write")
	bc := pushercmv1.NewBroadcastServiceClient(conn)
	r, err := bc.SendToUser(ctx, &pushercmv1.SendToUserRequest{UserId: "42", Name: "hello", Payload: &pushercmv1.SendToUserRequest_Data{Data: "{}"}})
	if err != nil || r.GetDeliveredTo() != 2 {
		t.Fatalf("SendToUser %v %v, want delivered to 2", r, err)
	}
	a.Expect("hello", protocol.ServerToUserChannel("42"))
	b.Expect("hello", protocol.ServerToUserChannel("42"))

	cs := pushercmv1.NewConnectionServiceClient(conn)
	tr, err := cs.TerminateUserConnections(ctx, &pushercmv1.TerminateUserConnectionsRequest{UserId: "42"})
	if err != nil || tr.GetClosedConnections() != 2 {
		t.Fatalf("TerminateUserConnections %v %v, want 2", tr, err)
	}
	for _, c := range []*pushertest.Client{a, b} {
		if code := c.CloseCode(); code.Code != protocol.CodeUnauthorized {
			t.Fatalf("close code %v, want %d", code, protocol.CodeUnauthorized)
		}
	}
}

// TestClusterTwoPrefixes: two clusters on one Redis under different
// prefixes never see each other's events or channels.
func TestClusterTwoPrefixes(t *testing.T) {
	addr := redistest.Addr(t)
	one := startCluster(t, addr, redistest.Prefix(t), 1)[0]
	two := startCluster(t, addr, redistest.Prefix(t), 1)[0]
	a := pushertest.Dial(t, one.HTTPAddr, "app-key", "app-secret")
	b := pushertest.Dial(t, two.HTTPAddr, "app-key", "app-secret")
	a.Subscribe("shared-name", "")
	b.Subscribe("shared-name", "")
	if err := sdkFor(one).Trigger("shared-name", "for-one", "1"); err != nil {
		t.Fatal(err)
	}
	if err := sdkFor(two).Trigger("shared-name", "for-two", "2"); err != nil {
		t.Fatal(err)
	}
	if m := a.Next(); m.Event != "for-one" {
		t.Fatalf("prefix one got %s", m.Event)
	}
	if m := b.Next(); m.Event != "for-two" {
		t.Fatalf("prefix two got %s", m.Event)
	}
	info, err := sdkFor(one).Channel("shared-name", pusher.ChannelParams{Info: &[]string{"subscription_count"}[0]})
	if err != nil || info.SubscriptionCount != 1 {
		t.Fatalf("prefix one counts %+v %v, want its own subscriber only", info, err)
	}
}

// TestClusterRedisRestart: while Redis is down, publishes are refused
// (UNAVAILABLE / CONNECTION_FAILED), sockets stay connected; when it is back,
// delivery resumes on every node without a restart.
func TestClusterRedisRestart(t *testing.T) {
	rs := redistest.Start(t)
	prefix := redistest.Prefix(t)
	nodes := startCluster(t, rs.Addr, prefix, 2)
	a := pushertest.Dial(t, nodes[0].HTTPAddr, "app-key", "app-secret")
	a.Subscribe("feed", "")
	conn, ctx := serviceClient(t, nodes[1], "events:publish")
	bc := pushercmv1.NewBroadcastServiceClient(conn)
	send := func(name string) error {
		_, err := bc.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{Channels: []string{"feed"}, Name: name, Payload: &pushercmv1.Event_Data{Data: "{}"}}})
		return err
	}
	if err := send("before"); err != nil {
		t.Fatal(err)
	}
	a.Expect("before", "feed")

	rs.Stop()
	err := send("during")
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("publish with Redis down: %v, want UNAVAILABLE", err)
	}
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := send("after")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishes still refused 30s after Redis came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if m := a.Next(); m.Event != "after" {
		t.Fatalf("after the restart the subscriber got %q, want after (and never during)", m.Event)
	}
}

// TestClusterWebhooksOnce: a channel whose subscribers are spread over three
// nodes sends exactly one channel_occupied and one channel_vacated, and a
// presence user on two nodes one member_added and one member_removed.
func TestClusterWebhooksOnce(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Events []struct{ Name, Channel string } `json:"events"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err == nil {
			mu.Lock()
			for _, e := range body.Events {
				got[e.Name+" "+e.Channel]++
			}
			mu.Unlock()
		}
	}))
	t.Cleanup(hooks.Close)
	cfg := filepath.Join(t.TempDir(), "pushercm.yaml")
	if err := os.WriteFile(cfg, []byte("edge:\n  webhooks:\n    urls: [\""+hooks.URL+"\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes := startCluster(t, redistest.Addr(t), redistest.Prefix(t), 3, "PUSHERCM_CONFIG="+cfg)

	var clients []*pushertest.Client
	for i, n := range nodes {
		c := pushertest.Dial(t, n.HTTPAddr, "app-key", "app-secret")
		c.Subscribe("spread", "")
		if i > 0 {
			c.Subscribe("presence-spread", "u")
		}
		clients = append(clients, c)
	}
	for _, c := range clients {
		c.Close()
	}
	want := map[string]int{
		"channel_occupied spread": 1, "channel_vacated spread": 1,
		"channel_occupied presence-spread": 1, "channel_vacated presence-spread": 1,
		"member_added presence-spread": 1, "member_removed presence-spread": 1,
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		done := len(got) == len(want)
		for k, n := range want {
			done = done && got[k] == n
		}
		snapshot := fmt.Sprint(got)
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhooks %s, want each of %v once", snapshot, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Nothing more arrives (a second copy would come from another node).
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for k, n := range got {
		if want[k] != n {
			t.Fatalf("webhook %q sent %d times, want %d", k, n, want[k])
		}
	}
}
