package server

import (
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

// Broadcast implements pushercm.v1.BroadcastService.
type Broadcast struct {
	pushercmv1.UnimplementedBroadcastServiceServer
}
