package app

import (
	"context"

	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/server"
)

// broadcastWiring holds what BroadcastService needs.
type broadcastWiring struct{}

// wireBroadcast builds the delivery driver and publisher and registers
// BroadcastService.
func (a *App) wireBroadcast(context.Context) error {
	a.bcast = &broadcastWiring{}
	pushercmv1.RegisterBroadcastServiceServer(a.grpc, &server.Broadcast{})
	return nil
}
