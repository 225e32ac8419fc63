package app_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/pushertest/apptest"
	"github.com/milequest/pushercm/protocol"
)

// closed is what a client saw until the server closed it: its application
// events in order, the protocol errors, and the close code (0: the
// connection ended without a close frame).
type closed struct {
	events []pushertest.Frame
	errors []pushertest.Frame
	code   int
	// errorAfter is how many events had arrived when the first pusher:error did.
	errorAfter int
}

// untilClosed reads c until the server ends the connection, failing the test
// when that takes longer than the wait.
func untilClosed(t *testing.T, c *pushertest.Client) closed {
	t.Helper()
	var out closed
	out.errorAfter = -1
	deadline := time.After(pushertest.Wait)
	for {
		select {
		case m, ok := <-c.Frames():
			if !ok {
				if ce, ok := c.CloseFrame(); ok {
					out.code = int(ce.Code)
				}
				return out
			}
			switch {
			case m.Event == protocol.EventError:
				if out.errorAfter < 0 {
					out.errorAfter = len(out.events)
				}
				out.errors = append(out.errors, m)
			case !pushertest.IsInternal(m.Event):
				out.events = append(out.events, m)
			}
		case <-deadline:
			t.Fatalf("socket %s: not closed within the wait", c.SocketID)
		}
	}
}

// grpcConn dials the app's gRPC listener.
func grpcConn(t *testing.T, a *apptest.App) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// withToken is ctx carrying a service token with scopes.
func withToken(t *testing.T, ctx context.Context, a *apptest.App, scopes ...string) context.Context {
	t.Helper()
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+a.Token(t, "shutdown-test", scopes...))
}

// shutdownAsync starts a.Shutdown and reports when it returned.
func shutdownAsync(a *apptest.App) (done <-chan error) {
	ch := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), pushertest.Wait)
		defer cancel()
		ch <- a.Shutdown(ctx)
	}()
	return ch
}

// TestShutdownEndsOpenStreams: open streams that never end on their own (an
// unauthenticated grpc.health.v1 Watch, a reflection stream and a
// WatchConnectionEvents) do not hold the shutdown for shutdownTimeout, and
// the WebSocket drain still closes every client with 4200.
func TestShutdownEndsOpenStreams(t *testing.T) {
	const timeout = 10 * time.Second
	a := apptest.Start(t, func(c *config.Config) { c.ShutdownTimeout = timeout })
	a.CheckShutdown = true
	conn := grpcConn(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), pushertest.Wait)
	defer cancel()

	clients := make([]*pushertest.Client, 30)
	for i := range clients {
		clients[i] = a.Dial(t)
	}

	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", first, err)
	}
	refl, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := refl.Recv(); err != nil {
		t.Fatal(err)
	}
	events, err := pushercmv1.NewConnectionServiceClient(conn).WatchConnectionEvents(
		withToken(t, ctx, a, "connections:read"), &pushercmv1.WatchConnectionEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Header(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	done := shutdownAsync(a)

	// Without a shutdown delay the watch may end before its NOT_SERVING
	// update is sent (TestShutdownDelayKeepsServing sees it).
	for {
		if _, err := watch.Recv(); err != nil {
			if code := status.Code(err); code != codes.Unavailable {
				t.Errorf("health watch ended with %v, want UNAVAILABLE", err)
			}
			break
		}
	}
	if _, err := refl.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("reflection stream ended with %v, want UNAVAILABLE", err)
	}
	for {
		if _, err := events.Recv(); err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Errorf("WatchConnectionEvents ended with %v, want UNAVAILABLE", err)
			}
			break
		}
	}

	for i, c := range clients {
		if got := untilClosed(t, c); got.code != protocol.CodeReconnect {
			t.Errorf("client %d: close code %d, want %d", i, got.code, protocol.CodeReconnect)
		}
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > timeout/2 {
		t.Errorf("shutdown took %v with shutdownTimeout %v", d, timeout)
	}
}

// publishBatch sends n events on channel in one SendBatch and checks that
// each was reported delivered to want sockets.
func publishBatch(t *testing.T, ctx context.Context, a *apptest.App, conn *grpc.ClientConn, channel string, n int, want int64) {
	t.Helper()
	req := &pushercmv1.SendBatchRequest{}
	for i := range n {
		req.Events = append(req.Events, &pushercmv1.Event{
			Channels: []string{channel}, Name: "tick", Payload: &pushercmv1.Event_Data{Data: fmt.Sprintf(`{"n":%d}`, i)},
		})
	}
	resp, err := pushercmv1.NewBroadcastServiceClient(conn).SendBatch(withToken(t, ctx, a, "events:publish"), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Results {
		if r.Error != nil || r.Response.GetDeliveredTo() != want {
			t.Fatalf("batch item %d: %v, want delivered_to %d", r.Index, r, want)
		}
	}
}

// checkAll fails unless got holds the n events of publishBatch, in order.
func checkAll(t *testing.T, who string, got closed, n int) {
	t.Helper()
	if len(got.events) != n {
		t.Errorf("%s: got %d of %d events reported delivered, then close %d", who, len(got.events), n, got.code)
		return
	}
	for i, m := range got.events {
		if want := fmt.Sprintf(`{"n":%d}`, i); m.DataString() != want {
			t.Errorf("%s: event %d is %s, want %s", who, i, m.DataString(), want)
			return
		}
	}
}

// subscribers dials n clients subscribed to channel, all at once (with a
// flush interval, one at a time would take an interval per frame); setUp, when
// not nil, runs on each before it subscribes.
func subscribers(t *testing.T, a *apptest.App, n int, channel string, setUp func(i int, c *pushertest.Client)) []*pushertest.Client {
	t.Helper()
	clients := make([]*pushertest.Client, n)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			c := a.Dial(t)
			if setUp != nil {
				setUp(i, c)
			}
			c.Subscribe(channel, "")
			clients[i] = c
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return clients
}

// TestShutdownDeliversQueuedEvents: events reported delivered to a socket
// reach it before its 4200, even while they still wait in the outbox (a
// flush interval keeps them there for a while).
func TestShutdownDeliversQueuedEvents(t *testing.T) {
	const n, events = 10, 20
	a := apptest.Start(t, func(c *config.Config) { c.Edge.FlushInterval = 300 * time.Millisecond })
	a.CheckShutdown = true
	conn := grpcConn(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), pushertest.Wait)
	defer cancel()
	clients := subscribers(t, a, n, "feed", nil)
	publishBatch(t, ctx, a, conn, "feed", events, n)
	done := shutdownAsync(a)
	for i, c := range clients {
		got := untilClosed(t, c)
		checkAll(t, fmt.Sprintf("client %d", i), got, events)
		if got.code != protocol.CodeReconnect {
			t.Errorf("client %d: close code %d, want %d", i, got.code, protocol.CodeReconnect)
		}
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestDisconnectDeliversQueuedEvents: DisconnectConnection and
// TerminateUserConnections first deliver what was reported delivered to the
// socket, then the pusher:error, then the close.
func TestDisconnectDeliversQueuedEvents(t *testing.T) {
	const n, events = 10, 20
	a := apptest.Start(t, func(c *config.Config) { c.Edge.FlushInterval = 300 * time.Millisecond })
	conn := grpcConn(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), pushertest.Wait)
	defer cancel()
	clients := subscribers(t, a, n, "feed", func(i int, c *pushertest.Client) {
		if i%2 == 1 {
			c.SignIn(fmt.Sprintf("user-%d", i))
		}
	})
	publishBatch(t, ctx, a, conn, "feed", events, n)
	cs := pushercmv1.NewConnectionServiceClient(conn)
	wctx := withToken(t, ctx, a, "connections:write")
	for i, c := range clients {
		var err error
		if i%2 == 0 {
			_, err = cs.DisconnectConnection(wctx, &pushercmv1.DisconnectConnectionRequest{SocketId: c.SocketID, Code: 4100, Reason: "moving you"})
		} else {
			_, err = cs.TerminateUserConnections(wctx, &pushercmv1.TerminateUserConnectionsRequest{UserId: fmt.Sprintf("user-%d", i)})
		}
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	for i, c := range clients {
		who := fmt.Sprintf("client %d", i)
		got := untilClosed(t, c)
		checkAll(t, who, got, events)
		want := 4100
		if i%2 == 1 {
			want = protocol.CodeUnauthorized
		}
		if got.code != want {
			t.Errorf("%s: close code %d, want %d", who, got.code, want)
		}
		if len(got.errors) != 1 || got.errorAfter != events {
			t.Errorf("%s: %d pusher:error, the first after %d events; want one, after all %d", who, len(got.errors), got.errorAfter, events)
		}
	}
}

// TestShutdownDelayKeepsServing: during shutdownDelay, grpc.health.v1 says
// NOT_SERVING, /readyz answers 503 and GetHealthStatus unhealthy, while a
// SendEvent still succeeds and reaches its subscriber and a new WebSocket
// still connects; then the drain closes both with 4200.
func TestShutdownDelayKeepsServing(t *testing.T) {
	const delay = 3 * time.Second
	a := apptest.Start(t, func(c *config.Config) { c.ShutdownDelay = delay })
	a.CheckShutdown = true
	conn := grpcConn(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), pushertest.Wait)
	defer cancel()
	sub := a.Dial(t)
	sub.Subscribe("feed", "")

	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", r, err)
	}

	start := time.Now()
	done := shutdownAsync(a)
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch after shutdown started: %v %v, want NOT_SERVING", r, err)
	}
	if r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health check during the delay: %v %v, want NOT_SERVING", r, err)
	}
	resp, err := http.Get("http://" + a.OpsAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz answers %d while shutting down, want 503", resp.StatusCode)
	}
	hs, err := pushercmv1.NewConnectionServiceClient(conn).GetHealthStatus(withToken(t, ctx, a, "connections:read"), &pushercmv1.GetHealthStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if hs.Status != pushercmv1.HealthStatus_HEALTH_STATUS_UNHEALTHY {
		t.Errorf("GetHealthStatus says %v while shutting down, want unhealthy", hs.Status)
	}

	sent, err := pushercmv1.NewBroadcastServiceClient(conn).SendEvent(withToken(t, ctx, a, "events:publish"), &pushercmv1.SendEventRequest{
		Event: &pushercmv1.Event{Channels: []string{"feed"}, Name: "tick", Payload: &pushercmv1.Event_Data{Data: `{"n":0}`}},
	})
	if err != nil || sent.DeliveredTo != 1 {
		t.Fatalf("SendEvent during the delay: %v, %v", sent, err)
	}
	late := a.Dial(t)
	// The watch stays open through the delay, then ends with the other streams.
	if r, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("health watch after the delay: %v %v, want UNAVAILABLE", r, err)
	}

	for _, c := range []*pushertest.Client{sub, late} {
		got := untilClosed(t, c)
		if c == sub {
			checkAll(t, "subscriber", got, 1)
		}
		if got.code != protocol.CodeReconnect {
			t.Errorf("socket %s: close code %d, want %d", c.SocketID, got.code, protocol.CodeReconnect)
		}
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if d := time.Since(start); d < delay {
		t.Errorf("shutdown took %v, less than the %v delay", d, delay)
	}
}
