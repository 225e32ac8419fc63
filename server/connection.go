package server

import (
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

// Connection implements pushercm.v1.ConnectionService.
type Connection struct {
	pushercmv1.UnimplementedConnectionServiceServer
}
