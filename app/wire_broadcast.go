package app

import (
	"context"
	"fmt"

	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/delivery/embedded"
	pusherdriver "github.com/milequest/pushercm/delivery/pusher"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/protocol"
	"github.com/milequest/pushercm/server"
)

// broadcastWiring holds what later wire steps read of the broadcast wiring:
// the driver (health, ConnectionService channel queries).
type broadcastWiring struct {
	// driver delivers: the embedded edge or Pusher's HTTP API.
	driver delivery.Driver
}

// wireBroadcast builds the delivery driver and publisher and registers
// BroadcastService.
func (a *App) wireBroadcast(context.Context) error {
	cfg := &a.cfg.Config
	w := &broadcastWiring{}
	switch cfg.Driver {
	case config.DriverEmbedded:
		var key []byte
		if cfg.Pusher.EncryptionMasterKeyBase64 != "" {
			// newAuthz has checked it decodes to 32 bytes.
			key, _ = protocol.DecodeMasterKey(cfg.Pusher.EncryptionMasterKeyBase64)
		}
		d, err := embedded.New(embedded.Config{EncryptionMasterKey: key}, a.edge)
		if err != nil {
			return fmt.Errorf("embedded driver: %w", err)
		}
		w.driver = d
	case config.DriverPusher:
		d, err := pusherdriver.New(cfg.Pusher, pusherdriver.WithTracerProvider(a.tel.Tracer))
		if err != nil {
			return fmt.Errorf("pusher driver: %w", err)
		}
		a.closers = append(a.closers, func(context.Context) error { return d.Close() })
		w.driver = d
	default:
		return fmt.Errorf("driver: %q is not a driver (embedded or pusher)", cfg.Driver)
	}

	var store delivery.IdempotencyStore
	mem, err := delivery.NewMemoryStore(cfg.Idempotency)
	if err != nil {
		return fmt.Errorf("idempotency: %w", err)
	}
	store = mem
	if a.cluster != nil {
		// Ids are reserved cluster-wide, so a retry through any node is a
		// duplicate; without Redis the publish is refused, never doubled.
		store = &clusterIdempotency{node: a.cluster, window: cfg.Idempotency.WithDefaults().Window}
	}
	// The publisher validates with the same limits the edge enforces, so an
	// event accepted over gRPC is never refused by the edge.
	publisher := delivery.NewPublisher(w.driver,
		delivery.WithIdempotencyStore(store),
		delivery.WithLimits(edgeConfig(cfg, a.log).Limits),
		delivery.WithTracerProvider(a.tel.Tracer),
	)
	a.bcast = w
	pushercmv1.RegisterBroadcastServiceServer(a.grpc, &server.Broadcast{Publisher: publisher, Log: a.log})
	return nil
}
