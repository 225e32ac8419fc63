package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
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

// startCluster runs n pushercm processes sharing one Redis under prefix
// (redisAddr with commas: the seed addresses of a Redis Cluster),
// with a short heartbeat so that dead nodes go within a couple of seconds.
func startCluster(t *testing.T, redisAddr, prefix string, n int, env ...string) []*Server {
	t.Helper()
	nodes := make([]*Server, n)
	redis := "PUSHERCM_REDIS_URL=redis://" + redisAddr
	if strings.Contains(redisAddr, ",") { // the seeds of a Redis Cluster
		redis = "PUSHERCM_REDIS_CLUSTER_ADDRS=" + redisAddr
	}
	for i := range nodes {
		e := append([]string{
			redis,
			"PUSHERCM_REDIS_PREFIX=" + prefix,
			"PUSHERCM_CLUSTER_NODE_ID=" + prefix + "-n" + string(rune('0'+i)),
			"PUSHERCM_CLUSTER_HEARTBEAT=250ms",
			"PUSHERCM_CLUSTER_NODE_TTL=1500ms",
		}, env...)
		nodes[i] = StartServer(t, e)
	}
	for _, s := range nodes {
		s.WaitLog(t, "connected to redis", 20*time.Second)
	}
	return nodes
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

// subscribersOn dials one client on each node, subscribed to channels.
func subscribersOn(t *testing.T, nodes []*Server, channels ...string) []*pushertest.Client {
	t.Helper()
	subs := make([]*pushertest.Client, len(nodes))
	for i, n := range nodes {
		subs[i] = pushertest.Dial(t, n.HTTPAddr, "app-key", "app-secret")
		for _, ch := range channels {
			subs[i].Subscribe(ch, "")
		}
	}
	return subs
}

// sender publishes event "n" with data on a channel through s's SendEvent.
func sender(t *testing.T, s *Server) func(channel, data string) error {
	t.Helper()
	conn, ctx := serviceClient(t, s, "events:publish")
	bc := pushercmv1.NewBroadcastServiceClient(conn)
	return func(channel, data string) error {
		_, err := bc.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{
			Channels: []string{channel}, Name: "n", Payload: &pushercmv1.Event_Data{Data: data}}})
		return err
	}
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
	if _, err := sdk.TriggerWithParams("orders", "skip", "x", pusher.TriggerParams{SocketID: &a.SocketID}); err != nil {
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
	nodes[2].Signal(t, syscall.SIGKILL)
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

// TestClusterRedisRestart: Redis is killed and restarted (empty) while
// events are published through one node to subscribers on two nodes. Every
// publish answered OK reaches both subscribers, in order; those during the
// outage are refused with UNAVAILABLE (CONNECTION_FAILED); sockets stay
// connected; delivery resumes on every node without a restart.
func TestClusterRedisRestart(t *testing.T) {
	rs := redistest.Start(t)
	prefix := redistest.Prefix(t)
	nodes := startCluster(t, rs.Addr, prefix, 2)
	subs := subscribersOn(t, nodes, "feed")
	publish1 := sender(t, nodes[1])
	send := func(i int) error {
		err := publish1("feed", fmt.Sprint(i))
		if err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Errorf("publish %d: %v, want OK or UNAVAILABLE", i, err)
			}
			if r := reasonOf(err); r != "CONNECTION_FAILED" {
				t.Errorf("publish %d refused with reason %q, want CONNECTION_FAILED", i, r)
			}
		}
		return err
	}
	var ok []int
	refused := 0
	i := 0
	publish := func(until func() bool) {
		for ; !until(); i++ {
			if send(i) == nil {
				ok = append(ok, i)
			} else {
				refused++
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	publish(func() bool { return i >= 20 })
	rs.Stop()
	publish(func() bool { return refused >= 10 })
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	resumed := 0
	publish(func() bool {
		if time.Now().After(deadline) {
			t.Fatalf("publishes still refused 30s after Redis came back")
		}
		if len(ok) > 0 && ok[len(ok)-1] == i-1 {
			resumed++
		}
		return resumed >= 20
	})
	t.Logf("%d publishes answered OK, %d refused while Redis was down", len(ok), refused)
	for n, c := range subs {
		for _, want := range ok {
			m := c.Next()
			for m.Event == "n" && m.DataString() != fmt.Sprint(want) {
				// A publish refused at the moment Redis died may still have
				// reached the subscribers; no OK'd one may be missing.
				var got int
				if _, err := fmt.Sscan(m.DataString(), &got); err != nil || got > want {
					t.Fatalf("node %d's subscriber got event %s, want %d (an OK'd publish is missing)", n, m.DataString(), want)
				}
				m = c.Next()
			}
			if m.Event != "n" {
				t.Fatalf("node %d's subscriber got %s, want event %d", n, m.Event, want)
			}
		}
	}
}

// webhookCounts receives the webhooks of the nodes started with the
// PUSHERCM_CONFIG it returns, and counts them by "name channel".
type webhookCounts struct {
	mu  sync.Mutex
	got map[string]int
}

func newWebhookCounts(t *testing.T) (*webhookCounts, string) {
	t.Helper()
	w := &webhookCounts{got: map[string]int{}}
	hooks := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		var body struct {
			Events []struct{ Name, Channel string } `json:"events"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err == nil {
			w.mu.Lock()
			for _, e := range body.Events {
				w.got[e.Name+" "+e.Channel]++
			}
			w.mu.Unlock()
		}
	}))
	t.Cleanup(hooks.Close)
	cfg := filepath.Join(t.TempDir(), "pushercm.yaml")
	if err := os.WriteFile(cfg, []byte("edge:\n  webhooks:\n    urls: [\""+hooks.URL+"\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return w, "PUSHERCM_CONFIG=" + cfg
}

// count is how many "name channel" webhooks arrived.
func (w *webhookCounts) count(name string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.got[name]
}

// all is a copy of the counts.
func (w *webhookCounts) all() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.got)
}

// TestClusterWebhooksOnce: a channel whose subscribers are spread over three
// nodes sends exactly one channel_occupied and one channel_vacated, and a
// presence user on two nodes one member_added and one member_removed.
func TestClusterWebhooksOnce(t *testing.T) {
	hooks, env := newWebhookCounts(t)
	nodes := startCluster(t, redistest.Addr(t), redistest.Prefix(t), 3, env)

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
	pushertest.EventuallyWithin(t, 15*time.Second, fmt.Sprintf("each of the webhooks %v once", want), func() error {
		got := hooks.all()
		done := len(got) == len(want)
		for k, n := range want {
			done = done && got[k] == n
		}
		if !done {
			return fmt.Errorf("webhooks %v", got)
		}
		return nil
	})
	// Nothing more arrives (a second copy would come from another node). Not
	// a condition to poll: the point is that nothing happens in this window.
	time.Sleep(500 * time.Millisecond)
	for k, n := range hooks.all() {
		if want[k] != n {
			t.Fatalf("webhook %q sent %d times, want %d", k, n, want[k])
		}
	}
}

// TestClusterRedisAbsentAtStart: a node whose Redis does not answer starts
// anyway, serves its sockets, refuses publishes, and joins the cluster by
// itself once Redis answers.
func TestClusterRedisAbsentAtStart(t *testing.T) {
	rs := redistest.Start(t)
	rs.Stop()
	s := StartServer(t, []string{"PUSHERCM_REDIS_URL=redis://" + rs.Addr, "PUSHERCM_REDIS_PREFIX=" + redistest.Prefix(t)})
	sub := pushertest.Dial(t, s.HTTPAddr, "app-key", "app-secret")
	sub.Subscribe("late", "")
	conn, ctx := serviceClient(t, s, "events:publish")
	bc := pushercmv1.NewBroadcastServiceClient(conn)
	ev := &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{Channels: []string{"late"}, Name: "x", Payload: &pushercmv1.Event_Data{Data: "{}"}}}
	if _, err := bc.SendEvent(ctx, ev); status.Code(err) != codes.Unavailable || reasonOf(err) != "CONNECTION_FAILED" {
		t.Fatalf("publish before Redis answers: %v, want UNAVAILABLE / CONNECTION_FAILED", err)
	}
	if !strings.Contains(s.Log(), "redis unreachable; retrying") {
		t.Fatalf("the log does not say Redis is unreachable:\n%s", s.Log())
	}
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	s.WaitLog(t, "connected to redis", 20*time.Second)
	if _, err := bc.SendEvent(ctx, ev); err != nil {
		t.Fatalf("publish once Redis answers: %v", err)
	}
	// The subscription made before Redis answered was made in Redis too.
	sub.Expect("x", "late")
}

// TestClusterOnRedisCluster: the nodes work the same on a Redis Cluster
// (redis.clusterAddrs), whose three masters each hold part of the channels'
// keys: fan-out through another node, presence, users; publications go by
// sharded pub/sub (SPUBLISH, SSUBSCRIBE), never PUBLISH.
func TestClusterOnRedisCluster(t *testing.T) {
	seeds := redistest.StartCluster(t)
	nodes := startCluster(t, strings.Join(seeds, ","), redistest.Prefix(t), 3)
	var subs []*pushertest.Client
	for i := range 2 {
		c := pushertest.Dial(t, nodes[i].HTTPAddr, "app-key", "app-secret")
		c.SignIn("u" + fmt.Sprint(i))
		subs = append(subs, c)
	}
	// Enough channels to spread over the three masters' slots.
	var chans []string
	for i := range 12 {
		chans = append(chans, fmt.Sprintf("presence-rc-%d", i))
	}
	for _, ch := range chans {
		for i, c := range subs {
			c.SubscribeAsync(ch, "u"+fmt.Sprint(i))
			c.Expect(protocol.EventSubscriptionSucceeded, ch)
		}
	}
	sdk := sdkFor(nodes[2])
	for _, ch := range chans {
		users, err := sdk.GetChannelUsers(ch)
		if err != nil || len(users.List) != 2 {
			t.Fatalf("users of %s through node 2: %+v %v, want u0 and u1", ch, users, err)
		}
		if err := sdk.Trigger(ch, "ping", ch); err != nil {
			t.Fatal(err)
		}
	}
	// Order holds per channel, not across channels on different shards.
	for i, c := range subs {
		got := map[string]bool{}
		for len(got) < len(chans) {
			m := c.Next()
			if m.Event == protocol.EventMemberAdded {
				continue // the other user joining, depending on timing
			}
			if m.Event != "ping" || got[m.Channel] {
				t.Fatalf("subscriber %d got %s on %s, want one ping per channel", i, m.Event, m.Channel)
			}
			got[m.Channel] = true
		}
	}
	conn, ctx := serviceClient(t, nodes[2], "events:publish")
	r, err := pushercmv1.NewBroadcastServiceClient(conn).SendToUser(ctx, &pushercmv1.SendToUserRequest{UserId: "u1", Name: "hi", Payload: &pushercmv1.SendToUserRequest_Data{Data: "{}"}})
	if err != nil || r.GetDeliveredTo() != 1 {
		t.Fatalf("SendToUser on a Redis Cluster: %v %v", r, err)
	}
	subs[1].Expect("hi", protocol.ServerToUserChannel("u1"))
	// Sharded pub/sub: the masters ran SPUBLISH for their own channels and
	// SSUBSCRIBE for the nodes' subscriptions, and none ran PUBLISH, which the
	// cluster would have broadcast to every master. (Which master owns which
	// channel depends on the random prefix.)
	all := map[string]int{}
	for _, m := range seeds {
		calls, err := redistest.CommandCalls(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []string{"publish", "subscribe"} {
			if calls[cmd] > 0 {
				t.Errorf("master %s ran %s", m, cmd)
			}
		}
		for cmd, n := range calls {
			all[cmd] += n
		}
	}
	for _, cmd := range []string{"spublish", "ssubscribe"} {
		if all[cmd] == 0 {
			t.Errorf("no master ran %s", cmd)
		}
	}
}

// TestClusterRedisRefusingWrites: a Redis that cannot persist refuses writes
// and PING (MISCONF). The nodes stay up while sockets come and go, refuse
// publishes with UNAVAILABLE / CONNECTION_FAILED, say why on /readyz, a node
// started meanwhile waits for Redis, and once Redis accepts writes again
// delivery resumes on every node with no restart.
func TestClusterRedisRefusingWrites(t *testing.T) {
	rs := redistest.Start(t)
	prefix := redistest.Prefix(t)
	nodes := startCluster(t, rs.Addr, prefix, 2)
	subs := subscribersOn(t, nodes, "feed", "other")
	send := sender(t, nodes[1])
	if err := send("feed", "before"); err != nil {
		t.Fatal(err)
	}
	for _, c := range subs {
		if m := c.Expect("n", "feed"); m.DataString() != "before" {
			t.Fatalf("got %s, want before", m.DataString())
		}
	}

	if err := rs.RefuseWrites(); err != nil {
		t.Fatal(err)
	}
	// Sockets come and go: channels are left, vacated and taken.
	for _, c := range subs {
		c.Send("pusher:unsubscribe", "", map[string]string{"channel": "other"})
	}
	gone := pushertest.Dial(t, nodes[0].HTTPAddr, "app-key", "app-secret")
	gone.SubscribeAsync("brief", "")
	gone.Close()
	late := StartServer(t, []string{"PUSHERCM_REDIS_URL=redis://" + rs.Addr, "PUSHERCM_REDIS_PREFIX=" + prefix})
	pushertest.Eventually(t, "publishes refused", func() error {
		err := send("feed", "during")
		if err == nil {
			return errors.New("a publish was accepted while Redis refuses writes")
		}
		if status.Code(err) != codes.Unavailable || reasonOf(err) != "CONNECTION_FAILED" {
			t.Fatalf("publish while Redis refuses writes: %v, want UNAVAILABLE / CONNECTION_FAILED", err)
		}
		return nil
	})
	for _, s := range append(nodes, late) {
		pushertest.Eventually(t, "/readyz naming MISCONF", func() error {
			resp, err := http.Get("http://" + s.OpsAddr + "/readyz")
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if !strings.Contains(string(body), "MISCONF") || !strings.Contains(string(body), "degraded") {
				return fmt.Errorf("/readyz: %s", body)
			}
			return nil
		})
	}
	// Every process is still running.
	for i, s := range append(nodes, late) {
		select {
		case <-s.Exited():
			t.Fatalf("node %d exited while Redis refused writes: %v\n%s", i, s.Err(), s.Log())
		default:
		}
	}

	if err := rs.AllowWrites(); err != nil {
		t.Fatal(err)
	}
	late.WaitLog(t, "connected to redis", 20*time.Second)
	pushertest.Eventually(t, "publishes accepted again", func() error { return send("feed", "after") })
	for i, c := range subs {
		for m := c.Next(); m.DataString() != "after"; m = c.Next() {
			if m.Event == "n" && m.DataString() != "during" {
				t.Fatalf("node %d's subscriber got %s %s, want after", i, m.Channel, m.DataString())
			}
		}
	}
	if err := send("other", "left"); err != nil {
		t.Fatal(err)
	}
	if err := send("feed", "last"); err != nil {
		t.Fatal(err)
	}
	for i, c := range subs {
		if m := c.Expect("n", "feed"); m.DataString() != "last" {
			t.Fatalf("node %d's subscriber got %s, want last (nothing on the channel it left)", i, m.DataString())
		}
	}
}

// TestClusterWebhooksRejoinOnAnotherNode: a socket leaves on one node and its
// user rejoins on another within the leave delay (3 s). The first node holds
// channel_vacated and member_removed; they must not be sent after the second
// node's channel_occupied and member_added, which would leave the receiver
// believing the channel empty while the user is subscribed.
func TestClusterWebhooksRejoinOnAnotherNode(t *testing.T) {
	hooks, env := newWebhookCounts(t)
	nodes := startCluster(t, redistest.Addr(t), redistest.Prefix(t), 2, env)

	first := pushertest.Dial(t, nodes[0].HTTPAddr, "app-key", "app-secret")
	first.Subscribe("hop", "")
	first.Subscribe("presence-hop", "u")
	pushertest.Eventually(t, "the first join's webhooks", func() error {
		if hooks.count("channel_occupied hop") != 1 || hooks.count("member_added presence-hop") != 1 {
			return fmt.Errorf("webhooks %v", hooks.all())
		}
		return nil
	})
	first.Close()
	second := pushertest.Dial(t, nodes[1].HTTPAddr, "app-key", "app-secret")
	second.Subscribe("hop", "")
	second.Subscribe("presence-hop", "u")
	// The leave delay (3 s) and the webhook batching pass; nothing may say the
	// channel is empty or the user gone. Not a condition to poll: the point
	// is what does not happen in this window.
	time.Sleep(4500 * time.Millisecond)
	for _, name := range []string{"channel_vacated hop", "channel_vacated presence-hop", "member_removed presence-hop"} {
		if n := hooks.count(name); n != 0 {
			t.Fatalf("%q sent %d times while the user was subscribed on the other node (webhooks %v)", name, n, hooks.all())
		}
	}
	second.Close()
	pushertest.EventuallyWithin(t, 10*time.Second, "the final leave's webhooks", func() error {
		if hooks.count("channel_vacated hop") != 1 || hooks.count("channel_vacated presence-hop") != 1 || hooks.count("member_removed presence-hop") != 1 {
			return fmt.Errorf("webhooks %v", hooks.all())
		}
		return nil
	})
}

// TestClusterFollowsARedisClusterFailover: a master of the Redis Cluster dies
// and Redis Cluster promotes its replica. The nodes, none restarted, follow it:
// an event on one of its channels published through one node reaches the
// subscriber on another, once, after the events published before.
func TestClusterFollowsARedisClusterFailover(t *testing.T) {
	rc := redistest.StartClusterWithReplicas(t)
	nodes := startCluster(t, strings.Join(rc.Addrs, ","), redistest.Prefix(t), 2)
	sub := pushertest.Dial(t, nodes[0].HTTPAddr, "app-key", "app-secret")
	sdk := sdkFor(nodes[1])
	const ch = "failover"
	sub.Subscribe(ch, "")
	// A channel's keys share the hash tag {channel}: its slot is the channel
	// name's, whatever the prefix.
	slot, err := redistest.Do(rc.Addrs[0], "CLUSTER", "KEYSLOT", ch)
	if err != nil {
		t.Fatal(err)
	}
	owner := func() string { return redistest.SlotOwner(rc.Addrs, slot.(int64)) }

	victim := owner()
	for i := range 3 {
		if err := sdk.Trigger(ch, "before", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		sub.Expect("before", ch)
	}

	redistest.EventuallyReplicated(t, rc.Addrs)
	rc.Kill(victim)
	pushertest.EventuallyWithin(t, 30*time.Second, "the channel's slot on the promoted replica", func() error {
		if o := owner(); o == "" || o == victim {
			return fmt.Errorf("slot %d still on %s", slot, victim)
		}
		return nil
	})
	// Publishes are refused until the publishing node has found the new
	// master; the subscriber's node delivers what is taken live, or from the
	// channel's history once it has followed.
	pushertest.EventuallyWithin(t, 30*time.Second, "a publish after the failover", func() error {
		return sdk.Trigger(ch, "after", "0")
	})
	sub.Expect("after", ch)
	if err := sdk.Trigger(ch, "after", "1"); err != nil {
		t.Fatal(err)
	}
	if m := sub.Expect("after", ch); m.DataString() != "1" {
		t.Fatalf("second event after the failover: %q, want 1", m.DataString())
	}
}
