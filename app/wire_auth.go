package app

import (
	"context"

	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/server"
)

// authWiring holds what AuthService and the pusher-js auth endpoints need.
type authWiring struct{}

// wireAuth registers AuthService and the realtime auth endpoints.
func (a *App) wireAuth(context.Context) error {
	a.authw = &authWiring{}
	pushercmv1.RegisterAuthServiceServer(a.grpc, &server.Auth{})
	return nil
}
