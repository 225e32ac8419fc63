package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/milequest/pushercm/app"
	"github.com/milequest/pushercm/authz"
	edgebench "github.com/milequest/pushercm/bench/edge"
	"github.com/milequest/pushercm/client"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/ratelimit"
)

func TestMain(m *testing.M) {
	// IgnoreCurrent: nbio starts a package-level task pool at init.
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// fast is a retry policy for tests: short backoffs, a few attempts.
var fast = client.RetryPolicy{MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}

func startApp(t *testing.T) (*app.App, config.Config) { return startAppWith(t, nil) }

func startAppWith(t *testing.T, mutate func(*config.Config)) (*app.App, config.Config) {
	t.Helper()
	cfg := config.Default()
	cfg.Dev = true
	cfg.ApplyDev()
	cfg.GRPC.Addr, cfg.HTTP.Addr, cfg.Ops.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Log.Level = "ERROR"
	cfg.ShutdownTimeout = 5 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := app.New(context.Background(), &config.Loaded{Config: cfg}, app.Options{LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	return a, cfg
}

func token(t *testing.T, cfg config.Config, scopes ...string) string {
	t.Helper()
	tok, err := authz.Mint([]byte(cfg.JWT.Service.Secret), authz.MintOptions{Subject: "svc", Scopes: scopes, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func dial(t *testing.T, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, append([]client.Option{client.WithInsecure()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestAgainstServer(t *testing.T) {
	a, cfg := startApp(t)
	c := dial(t, a.GRPCAddr(), client.WithToken(token(t, cfg, interceptors.ScopePublish)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	sub, err := edgebench.Dial(ctx, edgebench.Target{Addr: a.HTTPAddr(), AppID: cfg.Pusher.AppID, Key: cfg.Pusher.Key, Secret: cfg.Pusher.Secret})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Close() }()
	if err := sub.Subscribe("team-1"); err != nil {
		t.Fatal(err)
	}

	t.Run("SendEvent sets an id and delivers", func(t *testing.T) {
		r, err := c.SendEvent(ctx, client.Event{Channels: []string{"team-1"}, Name: "activity", JSON: map[string]int{"steps": 10}})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.EventID) != 36 || r.DeliveredTo != 1 || r.Duplicate {
			t.Fatalf("result %+v, want a UUID id delivered to 1", r)
		}
		again, err := c.SendEvent(ctx, client.Event{ID: r.EventID, Channels: []string{"team-1"}, Name: "activity"})
		if err != nil || !again.Duplicate || again.DeliveredTo != 0 {
			t.Fatalf("repeat: %+v %v, want duplicate", again, err)
		}
	})
	t.Run("SendBatch", func(t *testing.T) {
		rs, err := c.SendBatch(ctx, []client.Event{
			{Channels: []string{"team-1"}, Name: "a", Data: "1"},
			{Channels: []string{"team-1"}, Name: "", Data: "2"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].Err != nil || rs[0].DeliveredTo != 1 {
			t.Fatalf("first %+v", rs[0])
		}
		if status.Code(rs[1].Err) != codes.InvalidArgument || client.Reason(rs[1].Err) != interceptors.ReasonInvalidArgument {
			t.Fatalf("second %+v", rs[1])
		}
		if fv := client.FieldViolations(rs[1].Err); len(fv) != 1 || fv[0].Field != "events[1].name" {
			t.Fatalf("violations %+v", fv)
		}
	})
	t.Run("SendToUser", func(t *testing.T) {
		r, err := c.SendToUser(ctx, client.UserEvent{UserID: "u1", Name: "badge", JSON: map[string]string{"b": "x"}})
		if err != nil || r.EventID == "" || r.Duplicate {
			t.Fatalf("%+v %v", r, err)
		}
		again, err := c.SendToUser(ctx, client.UserEvent{ID: r.EventID, UserID: "u1", Name: "badge"})
		if err != nil || !again.Duplicate {
			t.Fatalf("repeat %+v %v", again, err)
		}
	})
	t.Run("validation error", func(t *testing.T) {
		_, err := c.SendEvent(ctx, client.Event{Channels: []string{"bad channel"}, Name: "e"})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("got %v", err)
		}
		if fv := client.FieldViolations(err); len(fv) != 1 || fv[0].Field != "event.channels[0]" {
			t.Fatalf("violations %+v", fv)
		}
	})
	t.Run("no token", func(t *testing.T) {
		anon := dial(t, a.GRPCAddr())
		_, err := anon.SendEvent(ctx, client.Event{Channels: []string{"team-1"}, Name: "e"})
		if status.Code(err) != codes.Unauthenticated || client.Reason(err) != interceptors.ReasonAuthenticationFailed {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("token source", func(t *testing.T) {
		tok := token(t, cfg, interceptors.ScopePublish)
		calls := 0
		var mu sync.Mutex
		c := dial(t, a.GRPCAddr(), client.WithTokenSource(func(context.Context) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			return tok, nil
		}))
		if _, err := c.SendEvent(ctx, client.Event{Channels: []string{"x"}, Name: "e"}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if calls != 1 {
			t.Fatalf("token source called %d times", calls)
		}
	})
}

// TestRateLimitedByTheServer: the real rate limiter refuses with RetryInfo;
// the client waits that long and the retry goes through, once.
func TestRateLimitedByTheServer(t *testing.T) {
	a, cfg := startAppWith(t, func(c *config.Config) {
		// One call, then one more every 300 ms.
		c.RateLimit.Limiters[ratelimit.LimiterPrincipal] = ratelimit.Policy{Limits: ratelimit.Limits{
			MessagesPerSecond: 1 / 0.3, BurstLimit: 1, MessagesPerMinute: 1000,
		}}
	})
	tok := token(t, cfg, interceptors.ScopePublish)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Without retries the second call is refused with a retry delay.
	noRetry := dial(t, a.GRPCAddr(), client.WithToken(tok), client.WithRetry(client.RetryPolicy{MaxAttempts: 1}))
	if _, err := noRetry.SendEvent(ctx, client.Event{Channels: []string{"a"}, Name: "e"}); err != nil {
		t.Fatal(err)
	}
	_, err := noRetry.SendEvent(ctx, client.Event{Channels: []string{"a"}, Name: "e"})
	if status.Code(err) != codes.ResourceExhausted || client.Reason(err) != "RATE_LIMITED" || client.RetryDelay(err) <= 0 {
		t.Fatalf("got %v (retry delay %s), want RATE_LIMITED with RetryInfo", err, client.RetryDelay(err))
	}

	// With retries the client honours the delay and succeeds.
	c := dial(t, a.GRPCAddr(), client.WithToken(tok))
	for i := range 3 {
		r, err := c.SendEvent(ctx, client.Event{Channels: []string{"a"}, Name: "e"})
		if err != nil || r.Duplicate {
			t.Fatalf("send %d: %+v %v", i, r, err)
		}
	}
}

// scripted is a BroadcastService that answers from a script and records
// what it received.
type scripted struct {
	pushercmv1.UnimplementedBroadcastServiceServer
	mu      sync.Mutex
	events  [][]string // ids per call
	auth    []string
	answers []func(req any) (any, error)
}

func (s *scripted) next(ctx context.Context, req any, ids []string) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	s.auth = append(s.auth, md.Get("authorization")...)
	s.events = append(s.events, ids)
	i := len(s.events) - 1
	if i >= len(s.answers) {
		i = len(s.answers) - 1
	}
	return s.answers[i](req)
}

func (s *scripted) calls() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]string(nil), s.events...)
}

func (s *scripted) SendEvent(ctx context.Context, req *pushercmv1.SendEventRequest) (*pushercmv1.SendEventResponse, error) {
	resp, err := s.next(ctx, req, []string{req.GetEvent().GetId()})
	if err != nil {
		return nil, err
	}
	return resp.(*pushercmv1.SendEventResponse), nil
}

func (s *scripted) SendBatch(ctx context.Context, req *pushercmv1.SendBatchRequest) (*pushercmv1.SendBatchResponse, error) {
	var ids []string
	for _, e := range req.GetEvents() {
		ids = append(ids, e.GetId())
	}
	resp, err := s.next(ctx, req, ids)
	if err != nil {
		return nil, err
	}
	return resp.(*pushercmv1.SendBatchResponse), nil
}

func startScripted(t *testing.T, answers ...func(req any) (any, error)) (*scripted, string) {
	t.Helper()
	s := &scripted{answers: answers}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pushercmv1.RegisterBroadcastServiceServer(srv, s)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return s, ln.Addr().String()
}

func rateLimited(d time.Duration) func(any) (any, error) {
	return func(any) (any, error) {
		st, _ := status.New(codes.ResourceExhausted, "rate limited").WithDetails(
			&errdetails.ErrorInfo{Reason: "RATE_LIMITED", Domain: "pushercm"},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		return nil, st.Err()
	}
}

func fail(code codes.Code) func(any) (any, error) {
	return func(any) (any, error) { return nil, status.Error(code, code.String()) }
}

func ok(req any) (any, error) {
	r := req.(*pushercmv1.SendEventRequest)
	return &pushercmv1.SendEventResponse{EventId: r.GetEvent().GetId(), DeliveredTo: 1}, nil
}

func TestRetryPolicy(t *testing.T) {
	tests := []struct {
		name     string
		answers  []func(any) (any, error)
		timeout  time.Duration
		code     codes.Code
		attempts int
		minTime  time.Duration
	}{
		{"rate limited once honours RetryInfo", []func(any) (any, error){rateLimited(300 * time.Millisecond), ok}, time.Minute, codes.OK, 2, 300 * time.Millisecond},
		{"resource exhausted without RetryInfo is final", []func(any) (any, error){fail(codes.ResourceExhausted), ok}, time.Minute, codes.ResourceExhausted, 1, 0},
		{"retry delay beyond the deadline returns at once", []func(any) (any, error){rateLimited(time.Hour), ok}, 10 * time.Second, codes.ResourceExhausted, 1, 0},
		{"unavailable backs off and recovers", []func(any) (any, error){fail(codes.Unavailable), fail(codes.Unavailable), ok}, time.Minute, codes.OK, 3, 0},
		{"unavailable gives up after MaxAttempts", []func(any) (any, error){fail(codes.Unavailable)}, time.Minute, codes.Unavailable, 3, 0},
		{"invalid argument is not retried", []func(any) (any, error){fail(codes.InvalidArgument), ok}, time.Minute, codes.InvalidArgument, 1, 0},
		{"internal is not retried", []func(any) (any, error){fail(codes.Internal), ok}, time.Minute, codes.Internal, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := startScripted(t, tc.answers...)
			c := dial(t, addr, client.WithToken("tok"), client.WithRetry(fast))
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			start := time.Now()
			_, err := c.SendEvent(ctx, client.Event{Channels: []string{"a"}, Name: "e"})
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
			if el := time.Since(start); el < tc.minTime {
				t.Fatalf("returned after %s, before the retry delay %s", el, tc.minTime)
			}
			calls := s.calls()
			if len(calls) != tc.attempts {
				t.Fatalf("%d attempts, want %d", len(calls), tc.attempts)
			}
			// Every attempt carries the same id, so a retry cannot
			// deliver twice, and the token.
			for _, ids := range calls {
				if ids[0] == "" || ids[0] != calls[0][0] {
					t.Fatalf("attempt ids %v", calls)
				}
			}
			for _, a := range s.auth {
				if a != "Bearer tok" {
					t.Fatalf("authorization %q", a)
				}
			}
		})
	}
}

func TestRawCallWithoutIDIsNotRetried(t *testing.T) {
	s, addr := startScripted(t, fail(codes.Unavailable), ok)
	c := dial(t, addr, client.WithRetry(fast))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.Broadcast().SendEvent(ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{Channels: []string{"a"}, Name: "e"}})
	if status.Code(err) != codes.Unavailable || len(s.calls()) != 1 {
		t.Fatalf("got %v after %d attempts, want UNAVAILABLE after 1", err, len(s.calls()))
	}
	// With an id the same raw call is retried.
	s2, addr2 := startScripted(t, fail(codes.Unavailable), ok)
	c2 := dial(t, addr2, client.WithRetry(fast))
	if _, err := c2.Broadcast().SendEvent(ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{Id: "k", Channels: []string{"a"}, Name: "e"}}); err != nil || len(s2.calls()) != 2 {
		t.Fatalf("got %v after %d attempts, want success after 2", err, len(s2.calls()))
	}
}

func TestSendBatchRetriesOnlyFailedItems(t *testing.T) {
	first := func(req any) (any, error) {
		return &pushercmv1.SendBatchResponse{Results: []*pushercmv1.SendBatchResult{
			{Index: 0, Response: &pushercmv1.SendEventResponse{EventId: "a", DeliveredTo: 1}},
			{Index: 1, Error: &pushercmv1.ItemError{Code: int32(codes.ResourceExhausted), Reason: "RATE_LIMITED", RetryAfterMs: 100}},
			{Index: 2, Error: &pushercmv1.ItemError{Code: int32(codes.InvalidArgument), Reason: "INVALID_ARGUMENT",
				FieldViolations: []*pushercmv1.FieldViolation{{Field: "events[2].name", Description: "required"}}}},
		}}, nil
	}
	second := func(req any) (any, error) {
		r := req.(*pushercmv1.SendBatchRequest)
		return &pushercmv1.SendBatchResponse{Results: []*pushercmv1.SendBatchResult{
			{Index: 0, Response: &pushercmv1.SendEventResponse{EventId: r.GetEvents()[0].GetId(), DeliveredTo: 2}},
		}}, nil
	}
	s, addr := startScripted(t, first, second)
	c := dial(t, addr, client.WithRetry(fast))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := c.SendBatch(ctx, []client.Event{
		{ID: "a", Channels: []string{"c"}, Name: "e"},
		{ID: "b", Channels: []string{"c"}, Name: "e"},
		{ID: "c", Channels: []string{"c"}, Name: ""},
	})
	if err != nil {
		t.Fatal(err)
	}
	calls := s.calls()
	if len(calls) != 2 || len(calls[1]) != 1 || calls[1][0] != "b" {
		t.Fatalf("calls %v, want the whole batch then only b", calls)
	}
	if rs[0].Err != nil || rs[0].DeliveredTo != 1 || rs[1].Err != nil || rs[1].EventID != "b" || rs[1].DeliveredTo != 2 {
		t.Fatalf("results %+v", rs)
	}
	if status.Code(rs[2].Err) != codes.InvalidArgument || client.Reason(rs[2].Err) != "INVALID_ARGUMENT" {
		t.Fatalf("third %v", rs[2].Err)
	}
	if fv := client.FieldViolations(rs[2].Err); len(fv) != 1 || fv[0].Field != "events[2].name" {
		t.Fatalf("violations %+v", fv)
	}
}

func TestDialOptions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Nothing listens: Dial waits until ctx ends and says so.
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	_, err := client.Dial(short, "127.0.0.1:1", client.WithInsecure())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	// WithoutWaitForReady returns at once; the call fails UNAVAILABLE.
	c, err := client.Dial(ctx, "127.0.0.1:1", client.WithInsecure(), client.WithoutWaitForReady(), client.WithRetry(client.RetryPolicy{MaxAttempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := c.SendEvent(ctx, client.Event{Channels: []string{"a"}, Name: "e"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want UNAVAILABLE", err)
	}
}
