package interceptors_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/milequest/pushercm/interceptors"
)

// TestStreamStopper: Stop ends a stream whose handler waits for updates
// (health Watch) and one whose handler is blocked in RecvMsg (reflection)
// with UNAVAILABLE / CONNECTION_FAILED, refuses new streams, leaves unary
// calls alone, and so lets GracefulStop return.
func TestStreamStopper(t *testing.T) {
	stopper := interceptors.NewStreamStopper()
	mapper := &interceptors.ErrorMapper{Log: slog.New(slog.DiscardHandler)}
	srv := grpc.NewServer(grpc.ChainStreamInterceptor(mapper.Stream(), stopper.Stream()))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	reflection.Register(srv)
	conn := serveBufconn(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(conn)

	watch, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
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

	stopper.Stop()
	unavailable := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.Unavailable || reason(status.Convert(err)) != interceptors.ReasonConnectionFailed {
			t.Errorf("%s: %v (reason %q), want UNAVAILABLE / CONNECTION_FAILED", what, err, reason(status.Convert(err)))
		}
	}
	_, err = watch.Recv()
	unavailable("open watch", err)
	_, err = refl.Recv()
	unavailable("open reflection stream", err)
	late, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = late.Recv()
	}
	unavailable("watch opened after Stop", err)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("unary call after Stop: %v", err)
	}

	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("GracefulStop still waits for a stream")
	}
}
