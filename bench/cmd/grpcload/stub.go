//go:build linux

package main

import (
	"context"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

// stubBroadcast answers SendEvent at once with the response the real
// server gives an event nobody is subscribed to: no interceptors, no
// validation, no idempotency, no delivery.
type stubBroadcast struct {
	pushercmv1.UnimplementedBroadcastServiceServer
}

func (stubBroadcast) SendEvent(_ context.Context, req *pushercmv1.SendEventRequest) (*pushercmv1.SendEventResponse, error) {
	e := req.GetEvent()
	return &pushercmv1.SendEventResponse{EventId: e.GetId(), Channels: e.GetChannels()}, nil
}

// startStub serves the health service and stubBroadcast on a loopback
// port, in this process: with -stub, the ratio of SendEvent to Check is
// what the load generator and gRPC itself leave possible for these two
// messages, before pushercm does any work.
func startStub() (addr string, stop func(), err error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	pushercmv1.RegisterBroadcastServiceServer(srv, stubBroadcast{})
	reflection.Register(srv) // ghz reads the methods' descriptors from it, as from the real server
	go func() { _ = srv.Serve(lis) }()
	return lis.Addr().String(), srv.Stop, nil
}
