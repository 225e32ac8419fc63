package interceptors_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"

	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/ratelimit"
)

func TestMethodCounts(t *testing.T) {
	set, err := ratelimit.NewSet(ratelimit.Config{Limiters: map[string]ratelimit.Policy{
		ratelimit.LimiterUser: {Limits: ratelimit.Limits{MessagesPerSecond: 1, MessagesPerMinute: 60, BurstLimit: 2}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	counts := &interceptors.MethodCounts{}
	unary := interceptors.UnaryRateLimit(set, interceptors.WithRateLimitKeys(interceptors.BroadcastUserIDs),
		interceptors.WithRateLimitMethodCounts(counts))
	info := &grpc.UnaryServerInfo{FullMethod: pushercmv1.BroadcastService_SendEvent_FullMethodName}
	req := &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{UserId: "u1"}}
	ok := func(context.Context, any) (any, error) { return &pushercmv1.SendEventResponse{}, nil }
	for i := 0; i < 5; i++ {
		_, _ = unary(context.Background(), req, info, ok)
	}
	// Health is exempt and never counted.
	_, _ = unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}, ok)
	snap := counts.Snapshot()
	if len(snap) != 1 || snap[0].Method != info.FullMethod || snap[0].Allowed != 2 || snap[0].Limited != 3 {
		t.Fatalf("counts %+v, want SendEvent allowed 2 limited 3", snap)
	}
}
