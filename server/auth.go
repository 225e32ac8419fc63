package server

import (
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

// Auth implements pushercm.v1.AuthService.
type Auth struct {
	pushercmv1.UnimplementedAuthServiceServer
}
