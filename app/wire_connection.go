package app

import (
	"context"

	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/server"
)

// connectionWiring holds what ConnectionService, metrics and health need.
type connectionWiring struct{}

// wireConnection registers ConnectionService and the health evaluator.
func (a *App) wireConnection(context.Context) error {
	a.connw = &connectionWiring{}
	pushercmv1.RegisterConnectionServiceServer(a.grpc, &server.Connection{})
	return nil
}
