// Command health-watch follows pushercm's health: it streams
// grpc.health.v1.Health/Watch for the whole server and for BroadcastService
// (no token needed), and polls ConnectionService.GetHealthStatus for the
// detailed verdict (needs a token with connections:read). Stop with Ctrl-C.
//
//	PUSHERCM_TOKEN=$(pushercm token --dev --sub ops --scopes connections:read) \
//	  go -C examples run ./health-watch -every 5s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/milequest/pushercm/examples/internal/exampleenv"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

func main() {
	every := flag.Duration("every", 5*time.Second, "GetHealthStatus poll interval")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := exampleenv.Dial(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Close() }()

	health := healthpb.NewHealthClient(c.Conn())
	for _, svc := range []string{"", pushercmv1.BroadcastService_ServiceDesc.ServiceName} {
		go watch(ctx, health, svc)
	}

	conns := pushercmv1.NewConnectionServiceClient(c.Conn())
	t := time.NewTicker(*every)
	defer t.Stop()
	for {
		report(ctx, conns)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watch prints every serving-status change of svc ("" is the whole
// server), re-opening the stream with a pause when it breaks (for example
// while the server restarts).
func watch(ctx context.Context, h healthpb.HealthClient, svc string) {
	name := svc
	if name == "" {
		name = "(server)"
	}
	for ctx.Err() == nil {
		stream, err := h.Watch(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err == nil {
			for {
				var resp *healthpb.HealthCheckResponse
				resp, err = stream.Recv()
				if err != nil {
					break
				}
				fmt.Printf("%s health %s: %s\n", time.Now().Format(time.TimeOnly), name, resp.GetStatus())
			}
		}
		if ctx.Err() != nil || errors.Is(err, context.Canceled) {
			return
		}
		fmt.Printf("%s health %s: watch ended (%s); retrying\n", time.Now().Format(time.TimeOnly), name, status.Code(err))
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

func report(ctx context.Context, conns pushercmv1.ConnectionServiceClient) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	h, err := conns.GetHealthStatus(rctx, &pushercmv1.GetHealthStatusRequest{})
	if err != nil {
		if ctx.Err() == nil {
			fmt.Printf("%s GetHealthStatus: %s (%v)\n", time.Now().Format(time.TimeOnly), status.Code(err), err)
		}
		if status.Code(err) == codes.PermissionDenied {
			fmt.Println("  the token needs the connections:read scope")
		}
		return
	}
	fmt.Printf("%s status %s driver=%s connections=%d/%d msgs/s=%.1f p99=%s errors=%.2f%% uptime=%s\n",
		time.Now().Format(time.TimeOnly), h.GetStatus(), h.GetDriver(),
		h.GetConnections().GetActive(), h.GetConnections().GetMax(),
		h.GetPerformance().GetMessagesPerSecond(), h.GetPerformance().GetP99Latency().AsDuration(),
		100*h.GetErrors().GetErrorRate(), h.GetUptime().AsDuration().Round(time.Second))
	for _, r := range h.GetReasons() {
		fmt.Printf("  reason: %s\n", r)
	}
}
