package e2e_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestServeHealthReflectionAndSIGTERM runs the real binary: health and
// reflection answer over TCP without a token, the ops listener serves
// /healthz, /readyz and /metrics, and SIGTERM makes it exit cleanly within
// the shutdown deadline.
func TestServeHealthReflectionAndSIGTERM(t *testing.T) {
	s := StartServer(t, nil)
	conn := dial(t, s.GRPCAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, svc := range []string{"", "pushercm.v1.BroadcastService", "pushercm.v1.AuthService", "pushercm.v1.ConnectionService"} {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v %v", svc, resp, err)
		}
	}

	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, svc := range r.GetListServicesResponse().GetService() {
		names = append(names, svc.Name)
	}
	all := strings.Join(names, " ")
	for _, want := range []string{"pushercm.v1.BroadcastService", "pushercm.v1.AuthService", "pushercm.v1.ConnectionService", "grpc.health.v1.Health"} {
		if !strings.Contains(all, want) {
			t.Fatalf("reflection lists %v, missing %s", names, want)
		}
	}
	_ = stream.CloseSend()

	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200} {
		resp, err := http.Get("http://" + s.OpsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		if path == "/metrics" && !strings.Contains(string(body), "rpc_server_call_duration_seconds") {
			t.Fatalf("/metrics lacks the otelgrpc server metrics:\n%.2000s", body)
		}
	}
	if !strings.Contains(s.Stdout(), "export TOKEN=") {
		t.Fatalf("--dev must print a service token; stdout:\n%s", s.Stdout())
	}

	// Keep a watch open across the shutdown: it must see NOT_SERVING. A
	// well-behaved client then goes away, so the graceful stop completes.
	wctx0, stopWatch := context.WithCancel(ctx)
	watch, err := healthpb.NewHealthClient(conn).Watch(wctx0, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", first, err)
	}

	start := time.Now()
	s.Signal(t, syscall.SIGTERM)
	if next, err := watch.Recv(); err == nil && next.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("after SIGTERM health says %v", next.Status)
	}
	stopWatch()
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	code, err := s.Wait(wctx)
	if err != nil || code != 0 {
		t.Fatalf("exit code %d, err %v\n%s", code, err, s.Log())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("graceful shutdown took %v", d)
	}
	if !strings.Contains(s.Log(), `msg=stopped`) {
		t.Fatalf("no clean stop in the log:\n%s", s.Log())
	}
}

// TestShutdownIsNotHeldByStreams: an open unauthenticated health Watch (as
// clients with client-side health checking keep) sees NOT_SERVING when
// SIGTERM arrives; during shutdownDelay calls still succeed; then the watch
// ends with UNAVAILABLE instead of holding the process until the shutdown
// deadline, and the process exits well before it.
func TestShutdownIsNotHeldByStreams(t *testing.T) {
	const delay, timeout = time.Second, 10 * time.Second
	cfg := filepath.Join(t.TempDir(), "pushercm.yaml")
	if err := os.WriteFile(cfg, []byte("shutdownTimeout: 10s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := StartServer(t, []string{"PUSHERCM_CONFIG=" + cfg, "PUSHERCM_SHUTDOWN_DELAY=1s"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := dial(t, s.GRPCAddr)
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s.Signal(t, syscall.SIGTERM)
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("after SIGTERM the watch got %v %v, want NOT_SERVING", r, err)
	}
	if _, err := pushercmv1.NewBroadcastServiceClient(conn).SendEvent(publishContext(t, ctx), &pushercmv1.SendEventRequest{
		Event: &pushercmv1.Event{Channels: []string{"news"}, Name: "late", Payload: &pushercmv1.Event_Data{Data: "{}"}},
	}); err != nil {
		t.Errorf("SendEvent during shutdownDelay: %v", err)
	}
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("the watch ended with %v, want UNAVAILABLE", err)
	}
	code, err := s.Wait(ctx)
	if err != nil || code != 0 {
		t.Fatalf("exit code %d, err %v", code, err)
	}
	if d := time.Since(start); d < delay || d > delay+timeout/2 {
		t.Fatalf("shutdown took %v with shutdownDelay %v and shutdownTimeout %v", d, delay, timeout)
	}
	if strings.Contains(s.Log(), "forcing") {
		t.Fatalf("the graceful stop was forced:\n%s", s.Log())
	}
}

// TestMissingSecretsRefuseToStart: without --dev and without secrets the
// process exits non-zero naming what is missing.
func TestMissingSecretsRefuseToStart(t *testing.T) {
	out, err := execOutput(binary, "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0")
	if err == nil {
		t.Fatalf("started without secrets:\n%s", out)
	}
	for _, want := range []string{"pusher.secret", "jwt"} {
		if !strings.Contains(out, want) {
			t.Fatalf("error does not name %s:\n%s", want, out)
		}
	}
}
