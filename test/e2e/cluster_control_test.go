package e2e_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/redistest"
	"github.com/milequest/pushercm/protocol"
)

// TestClusterConnectionControl: ConnectionService asked through node 2
// reaches sockets held by nodes 0 and 1: listing (paged, socket id order),
// getting, server-side subscribing, disconnecting and terminating.
func TestClusterConnectionControl(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	nodes := startCluster(t, addr, prefix, 3)

	a := pushertest.Dial(t, nodes[0].HTTPAddr, "app-key", "app-secret")
	b := pushertest.Dial(t, nodes[1].HTTPAddr, "app-key", "app-secret")
	b.SignIn("7")
	c := pushertest.Dial(t, nodes[2].HTTPAddr, "app-key", "app-secret")
	conn, ctx := serviceClient(t, nodes[2], "connections:read", "connections:write", "events:publish")
	cs := pushercmv1.NewConnectionServiceClient(conn)
	waitNodes(t, nodes[2], 3)

	// Listing: one socket per page, in socket id order, across the nodes.
	want := []string{a.SocketID, b.SocketID, c.SocketID}
	slices.Sort(want)
	var got []string
	tok := ""
	for range 10 {
		r, err := cs.ListConnections(ctx, &pushercmv1.ListConnectionsRequest{PageSize: 1, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range r.GetConnections() {
			got = append(got, c.GetSocketId())
		}
		if tok = r.GetNextPageToken(); tok == "" {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged listing through node 2: %v, want %v", got, want)
	}
	r, err := cs.ListConnections(ctx, &pushercmv1.ListConnectionsRequest{UserId: "7"})
	if err != nil || len(r.GetConnections()) != 1 || r.GetConnections()[0].GetSocketId() != b.SocketID {
		t.Fatalf("listing user 7: %v %v, want b's socket on node 1", r, err)
	}

	// Getting a socket on another node, and one nobody holds.
	g, err := cs.GetConnection(ctx, &pushercmv1.GetConnectionRequest{SocketId: a.SocketID})
	if err != nil || g.GetConnection().GetSocketId() != a.SocketID {
		t.Fatalf("GetConnection of a socket on node 0: %v %v", g, err)
	}
	if _, err := cs.GetConnection(ctx, &pushercmv1.GetConnectionRequest{SocketId: "1.2"}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetConnection of an unknown socket: %v, want NOT_FOUND", err)
	}

	// Server-side subscribe of a socket on node 0, then a publish through node 1.
	if _, err := cs.Subscribe(ctx, &pushercmv1.SubscribeRequest{SocketId: a.SocketID, Channel: "ops-feed"}); err != nil {
		t.Fatal(err)
	}
	a.Expect(protocol.EventSubscriptionSucceeded, "ops-feed")
	if err := sdkFor(nodes[1]).Trigger("ops-feed", "hello", "1"); err != nil {
		t.Fatal(err)
	}
	a.Expect("hello", "ops-feed")
	if _, err := cs.Unsubscribe(ctx, &pushercmv1.UnsubscribeRequest{SocketId: a.SocketID, Channel: "ops-feed"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Unsubscribe(ctx, &pushercmv1.UnsubscribeRequest{SocketId: a.SocketID, Channel: "ops-feed"}); status.Code(err) != codes.NotFound {
		t.Fatalf("second Unsubscribe: %v, want NOT_FOUND from the holding node", err)
	}

	// Disconnecting a socket on node 0 and terminating a user on node 1.
	if _, err := cs.DisconnectConnection(ctx, &pushercmv1.DisconnectConnectionRequest{SocketId: a.SocketID, Code: 4100, Reason: "bye"}); err != nil {
		t.Fatal(err)
	}
	if code := a.CloseCode(); code.Code != 4100 {
		t.Fatalf("a closed with %v, want 4100", code)
	}
	tr, err := cs.TerminateUserConnections(ctx, &pushercmv1.TerminateUserConnectionsRequest{UserId: "7"})
	// closed_connections is the edge's cluster-wide count of the user's
	// sockets (TestClusterUsers holds it); here what matters is that the
	// socket on node 1 is closed.
	if err != nil || tr.GetClosedConnections() < 1 {
		t.Fatalf("TerminateUserConnections: %v %v, want b's socket closed", tr, err)
	}
	if code := b.CloseCode(); code.Code != protocol.CodeUnauthorized {
		t.Fatalf("b closed with %v, want %d", code, protocol.CodeUnauthorized)
	}
}

// TestClusterWatch: a watcher on node 0 sees the events of all three nodes,
// each tagged with its node.
func TestClusterWatch(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	nodes := startCluster(t, addr, prefix, 3)
	conn, ctx := serviceClient(t, nodes[0], "connections:read")
	// "connected to redis" comes before a node's first heartbeat: a watch
	// reaches the nodes registered when it starts (and the others from the
	// next renewal, a heartbeat later).
	waitNodes(t, nodes[0], 3)
	stream, err := pushercmv1.NewConnectionServiceClient(conn).WatchConnectionEvents(ctx, &pushercmv1.WatchConnectionEventsRequest{
		Types: []pushercmv1.ConnectionEventType{pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_SUBSCRIBED},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // socket id -> node id
	for i, n := range nodes {
		c := pushertest.Dial(t, n.HTTPAddr, "app-key", "app-secret")
		c.Subscribe("watched", "")
		want[c.SocketID] = prefix + "-n" + string(rune('0'+i))
	}
	for len(want) > 0 {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("stream ended with %v while waiting for %v", err, want)
		}
		e := m.GetEvent()
		node, ok := want[e.GetSocketId()]
		if !ok {
			t.Fatalf("unexpected event %v", e)
		}
		if e.GetNodeId() != node || e.GetChannel() != "watched" {
			t.Fatalf("event %v, want it tagged %s", e, node)
		}
		delete(want, e.GetSocketId())
	}

	// Message events too, when asked for: a publish through node 1 shows on
	// node 0's watcher, tagged with node 1.
	pub, err := pushercmv1.NewConnectionServiceClient(conn).WatchConnectionEvents(ctx, &pushercmv1.WatchConnectionEventsRequest{
		Types: []pushercmv1.ConnectionEventType{pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_PUBLISHED},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Header(); err != nil {
		t.Fatal(err)
	}
	if err := sdkFor(nodes[1]).Trigger("watched", "news", "1"); err != nil {
		t.Fatal(err)
	}
	m, err := pub.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if e := m.GetEvent(); e.GetEventName() != "news" || e.GetNodeId() != prefix+"-n1" {
		t.Fatalf("published event %v, want news from node 1", e)
	}
}

// waitNodes waits until s lists n live nodes.
func waitNodes(t *testing.T, s *Server, n int) {
	t.Helper()
	conn, ctx := serviceClient(t, s, "connections:read")
	cs := pushercmv1.NewConnectionServiceClient(conn)
	pushertest.EventuallyWithin(t, 10*time.Second, fmt.Sprintf("%d nodes listed", n), func() error {
		r, err := cs.ListNodes(ctx, &pushercmv1.ListNodesRequest{})
		if err == nil && len(r.GetNodes()) != n {
			err = fmt.Errorf("%d nodes listed", len(r.GetNodes()))
		}
		return err
	})
}

// TestClusterNodes: ListNodes lists the three nodes and drops a SIGKILLed one
// after nodeTtl; GetHealthStatus shows Redis and the nodes; GetMetrics and
// GetHealthStatus answer for one node by id or (metrics) for the cluster.
func TestClusterNodes(t *testing.T) {
	addr := redistest.Addr(t)
	prefix := redistest.Prefix(t)
	nodes := startCluster(t, addr, prefix, 3)
	ids := []string{prefix + "-n0", prefix + "-n1", prefix + "-n2"}
	for _, n := range nodes[:2] {
		pushertest.Dial(t, n.HTTPAddr, "app-key", "app-secret")
	}
	waitNodes(t, nodes[0], 3)
	conn, ctx := serviceClient(t, nodes[0], "connections:read")
	cs := pushercmv1.NewConnectionServiceClient(conn)

	listed := func() []*pushercmv1.Node {
		t.Helper()
		r, err := cs.ListNodes(ctx, &pushercmv1.ListNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if r.GetSelf() != ids[0] {
			t.Fatalf("self %q, want %q", r.GetSelf(), ids[0])
		}
		return r.GetNodes()
	}
	ln := listed()
	if len(ln) != 3 {
		t.Fatalf("ListNodes: %v, want 3 nodes", ln)
	}
	for i, n := range ln {
		if n.GetId() != ids[i] || n.GetGrpcAddr() != nodes[i].GRPCAddr || n.GetHttpAddr() != nodes[i].HTTPAddr ||
			n.GetOpsAddr() != nodes[i].OpsAddr || n.GetVersion() == "" || n.GetStartedAt() == nil || n.GetLastHeartbeatAt() == nil {
			t.Fatalf("node %d: %v, want %s at %s", i, n, ids[i], nodes[i].GRPCAddr)
		}
	}

	h, err := cs.GetHealthStatus(ctx, &pushercmv1.GetHealthStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !h.GetRedis().GetConfigured() || !h.GetRedis().GetUp() || len(h.GetNodes()) != 3 || h.GetNodeId() != ids[0] ||
		h.GetStatus() != pushercmv1.HealthStatus_HEALTH_STATUS_HEALTHY {
		t.Fatalf("GetHealthStatus: %v, want healthy, redis up, 3 nodes", h)
	}
	h, err = cs.GetHealthStatus(ctx, &pushercmv1.GetHealthStatusRequest{NodeId: ids[1]})
	if err != nil || h.GetNodeId() != ids[1] || h.GetConnections().GetActive() != 1 {
		t.Fatalf("GetHealthStatus of node 1: %v %v, want node 1's verdict with its 1 connection", h, err)
	}
	if _, err := cs.GetHealthStatus(ctx, &pushercmv1.GetHealthStatusRequest{NodeId: "nobody"}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetHealthStatus of an unknown node: %v, want NOT_FOUND", err)
	}
	m, err := cs.GetMetrics(ctx, &pushercmv1.GetMetricsRequest{})
	if err != nil || m.GetNodes() != 3 || m.GetActiveConnections() != 2 {
		t.Fatalf("GetMetrics of the cluster: %v %v, want 2 connections over 3 nodes", m, err)
	}
	m, err = cs.GetMetrics(ctx, &pushercmv1.GetMetricsRequest{NodeId: ids[2]})
	if err != nil || m.GetNodeId() != ids[2] || m.GetActiveConnections() != 0 {
		t.Fatalf("GetMetrics of node 2: %v %v, want its 0 connections", m, err)
	}

	nodes[2].Signal(t, syscall.SIGKILL)
	// Reaped here, so that the harness's cleanup does not race the exit.
	if _, err := nodes[2].Wait(ctx); err == nil {
		t.Fatal("the killed node exited cleanly")
	}
	pushertest.EventuallyWithin(t, 5*time.Second, "the killed node no longer listed", func() error {
		if ln := listed(); len(ln) != 2 {
			return fmt.Errorf("listed: %v", ln)
		}
		return nil
	})
	if ln := listed(); ln[0].GetId() != ids[0] || ln[1].GetId() != ids[1] {
		t.Fatalf("after the kill: %v", ln)
	}
}

// TestClusterHealthRedisDown: with Redis stopped, GetHealthStatus and
// /readyz say so: degraded by default, unhealthy (503) with
// cluster.redisDown: unhealthy.
func TestClusterHealthRedisDown(t *testing.T) {
	rs := redistest.Start(t)
	cfg := filepath.Join(t.TempDir(), "pushercm.yaml")
	if err := os.WriteFile(cfg, []byte("cluster:\n  redisDown: unhealthy\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	soft := startCluster(t, rs.Addr, redistest.Prefix(t), 1)[0]
	hard := startCluster(t, rs.Addr, redistest.Prefix(t), 1, "PUSHERCM_CONFIG="+cfg)[0]
	rs.Stop()
	for _, tc := range []struct {
		s      *Server
		want   pushercmv1.HealthStatus
		readyz int
	}{
		{soft, pushercmv1.HealthStatus_HEALTH_STATUS_DEGRADED, http.StatusOK},
		{hard, pushercmv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, http.StatusServiceUnavailable},
	} {
		conn, ctx := serviceClient(t, tc.s, "connections:read")
		cs := pushercmv1.NewConnectionServiceClient(conn)
		var h *pushercmv1.GetHealthStatusResponse
		pushertest.EventuallyWithin(t, 10*time.Second, fmt.Sprintf("health %v with Redis down", tc.want), func() error {
			var err error
			h, err = cs.GetHealthStatus(ctx, &pushercmv1.GetHealthStatusRequest{})
			if err != nil {
				t.Fatal(err)
			}
			// The rate limits' store may notice first (degraded, with
			// Redis still up); wait for the cluster's own view too.
			if h.GetStatus() != tc.want || h.GetRedis().GetUp() {
				return fmt.Errorf("health %v", h)
			}
			return nil
		})
		if !h.GetRedis().GetConfigured() || h.GetRedis().GetError() == "" || len(h.GetReasons()) == 0 {
			t.Fatalf("health with Redis down: %v, want redis down with its error and a reason", h)
		}
		// A socket this node does not hold cannot be looked for elsewhere.
		if _, err := cs.GetConnection(ctx, &pushercmv1.GetConnectionRequest{SocketId: "1.2"}); status.Code(err) != codes.Unavailable {
			t.Fatalf("GetConnection with Redis down: %v, want UNAVAILABLE", err)
		}
		resp, err := http.Get("http://" + tc.s.OpsAddr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		var rz struct {
			Status  string
			Reasons []string
		}
		if resp.StatusCode != tc.readyz || json.Unmarshal(body, &rz) != nil || len(rz.Reasons) == 0 {
			t.Fatalf("/readyz: %d %s, want %d with the reason", resp.StatusCode, body, tc.readyz)
		}
	}
}

// TestSingleNodeListNodes: without Redis, ListNodes lists the node itself.
func TestSingleNodeListNodes(t *testing.T) {
	s := StartServer(t, nil)
	conn, ctx := serviceClient(t, s, "connections:read")
	r, err := pushercmv1.NewConnectionServiceClient(conn).ListNodes(ctx, &pushercmv1.ListNodesRequest{})
	if err != nil || len(r.GetNodes()) != 1 || r.GetNodes()[0].GetGrpcAddr() != s.GRPCAddr || r.GetNodes()[0].GetId() != r.GetSelf() {
		t.Fatalf("ListNodes on one node: %v %v, want the node itself", r, err)
	}
}

// TestClusterWatchNeverSkipsSilently: a node forwards its events to the
// watchers on other nodes through Redis. Flooded faster than it can forward,
// it drops some; the watchers must then end with WATCHER_LAGGED, never go on
// with a gap: a watcher either gets every event or is told it missed some.
func TestClusterWatchNeverSkipsSilently(t *testing.T) {
	nodes := startCluster(t, redistest.Addr(t), redistest.Prefix(t), 2, "PUSHERCM_CONFIG="+configFile(t, "rateLimit:\n  dryRun: true\n"))
	waitNodes(t, nodes[0], 2)
	conn, ctx := serviceClient(t, nodes[0], "connections:read")
	stream, err := pushercmv1.NewConnectionServiceClient(conn).WatchConnectionEvents(ctx, &pushercmv1.WatchConnectionEventsRequest{
		Types: []pushercmv1.ConnectionEventType{pushercmv1.ConnectionEventType_CONNECTION_EVENT_TYPE_PUBLISHED},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	type recv struct {
		m   *pushercmv1.WatchConnectionEventsResponse
		err error
	}
	events := make(chan recv, 1024)
	go func() {
		for {
			m, err := stream.Recv()
			events <- recv{m, err}
			if err != nil {
				return
			}
		}
	}()
	next := func(d time.Duration) (*pushercmv1.WatchConnectionEventsResponse, error) {
		select {
		case r := <-events:
			return r.m, r.err
		case <-time.After(d):
			return nil, errors.New("no event within " + d.String())
		}
	}
	// Node 1 forwards from the first renewal on: wait until one of its events
	// arrives.
	pconn, pctx := serviceClient(t, nodes[1], "events:publish")
	bc := pushercmv1.NewBroadcastServiceClient(pconn)
	pushertest.Eventually(t, "node 1 forwarding", func() error {
		if _, err := bc.SendEvent(pctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{
			Channels: []string{"probe"}, Name: "probe", Payload: &pushercmv1.Event_Data{Data: "1"}}}); err != nil {
			return err
		}
		m, err := next(200 * time.Millisecond)
		if err != nil {
			return err
		}
		if m.GetEvent().GetNodeId() == "" {
			return errors.New("untagged event")
		}
		return nil
	})

	// 20 000 events in batches of 100 from 8 callers: far more than a
	// forwarder's buffer (4096) in less time than it takes to forward them.
	const callers, batches, per = 8, 25, 100
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				req := &pushercmv1.SendBatchRequest{}
				for i := range per {
					req.Events = append(req.Events, &pushercmv1.Event{Channels: []string{"flood"}, Name: "f",
						Payload: &pushercmv1.Event_Data{Data: fmt.Sprint(c, "-", b, "-", i)}})
				}
				if _, err := bc.SendBatch(pctx, req); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	total := callers * batches * per
	got := 0
	for got < total {
		m, err := next(15 * time.Second)
		if status.Code(err) == codes.ResourceExhausted && reasonOf(err) == "WATCHER_LAGGED" {
			t.Logf("the watcher ended lagged after %d of %d events", got, total)
			return
		}
		if err != nil {
			t.Fatalf("after %d of %d events the stream gave %v, want the rest or WATCHER_LAGGED", got, total, err)
		}
		if m.GetEvent().GetEventName() == "f" {
			got++
		}
	}
	t.Logf("the watcher got all %d events", total)
}
