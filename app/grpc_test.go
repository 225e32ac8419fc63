package app_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/internal/pushertest/apptest"
)

// TestStreamWorkers: with grpc.streamWorkers none, the default, or one,
// calls are answered; with one worker held by a long-lived stream, further
// calls still run at once (a call that finds no free worker gets its own
// goroutine, it does not wait for one).
func TestStreamWorkers(t *testing.T) {
	for _, n := range []int{-1, 0, 1} {
		a := apptest.Start(t, func(c *config.Config) { c.GRPC.StreamWorkers = n })
		conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		hc := healthpb.NewHealthClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)

		// A Watch stream lives until cancelled: with one worker, it holds it.
		wctx, stopWatch := context.WithCancel(ctx)
		w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("streamWorkers %d: watch: %v", n, err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatalf("streamWorkers %d: watch: %v", n, err)
		}

		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for range 32 {
			wg.Go(func() {
				cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
				defer ccancel()
				_, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("streamWorkers %d: check while a stream is open: %v", n, err)
			}
		}
		stopWatch()
		cancel()
		_ = conn.Close()
	}
}
