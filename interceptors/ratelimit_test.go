package interceptors_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/ratelimit"
)

// A tiny hand-registered service, so these tests do not depend on gen/.
const (
	pingMethod  = "/pushercm.test.Limited/Ping"
	watchMethod = "/pushercm.test.Limited/Watch"
)

type limitedServer interface{}

var limitedDesc = grpc.ServiceDesc{
	ServiceName: "pushercm.test.Limited",
	HandlerType: (*limitedServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Ping",
		Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(context.Context, any) (any, error) { return &emptypb.Empty{}, nil }
			if ic == nil {
				return h(ctx, in)
			}
			return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: pingMethod}, h)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Watch",
		ServerStreams: true,
		Handler:       func(_ any, ss grpc.ServerStream) error { return ss.SendMsg(&emptypb.Empty{}) },
	}},
}

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// Test callers name themselves and their events' users in metadata; the
// lead's wiring gets them from the auth principal and the request instead.
func principalFromMD(ctx context.Context) string {
	if v := metadata.ValueFromIncomingContext(ctx, "x-principal"); len(v) > 0 {
		return v[0]
	}
	return ""
}

func usersFromMD(ctx context.Context, _ string, _ any) []string {
	if v := metadata.ValueFromIncomingContext(ctx, "x-users"); len(v) > 0 && v[0] != "" {
		return strings.Split(v[0], ",")
	}
	return nil
}

// recorder keeps log records so tests can check what was logged.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) attrs(level slog.Level) []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]string
	for _, rec := range r.records {
		if rec.Level != level {
			continue
		}
		m := map[string]string{}
		rec.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
		out = append(out, m)
	}
	return out
}

type fixture struct {
	conn  *grpc.ClientConn
	set   *ratelimit.Set
	clock *ratelimit.ManualClock
	logs  *recorder
}

// newFixture serves the test service and the standard health service over
// bufconn behind the error mapper and the rate-limit interceptors, as the
// server chain orders them.
func newFixture(t *testing.T, cfg ratelimit.Config) *fixture {
	t.Helper()
	// Cleanups run last-registered first: this one checks after the server stopped.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
	clock := ratelimit.NewManualClock(t0)
	set, err := ratelimit.NewSet(cfg, ratelimit.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	logs := &recorder{}
	log := slog.New(logs)
	opts := []interceptors.RateLimitOption{
		interceptors.WithRateLimitPrincipal(principalFromMD),
		interceptors.WithRateLimitKeys(usersFromMD),
		interceptors.WithRateLimitLogger(log),
	}
	mapper := &interceptors.ErrorMapper{Log: log}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(mapper.Unary(), interceptors.UnaryRateLimit(set, opts...)),
		grpc.ChainStreamInterceptor(mapper.Stream(), interceptors.StreamRateLimit(set, opts...)),
	)
	srv.RegisterService(&limitedDesc, struct{}{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	conn := serveBufconn(t, srv)
	return &fixture{conn: conn, set: set, clock: clock, logs: logs}
}

// ping calls Ping as principal with the given event users.
func (f *fixture) ping(t *testing.T, principal string, users ...string) (metadata.MD, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-principal", principal, "x-users", strings.Join(users, ","))
	var hdr metadata.MD
	err := f.conn.Invoke(ctx, pingMethod, &emptypb.Empty{}, &emptypb.Empty{}, grpc.Header(&hdr))
	return hdr, err
}

// userLimits is a tight user limit under a loose principal one; admitted
// calls carry their headers every time (HeadersBelowPercent 100), so that
// tests can read each call's figures.
func userLimits(burst int) ratelimit.Config {
	return ratelimit.Config{HeadersBelowPercent: 100, Limiters: map[string]ratelimit.Policy{
		ratelimit.LimiterUser:      {Limits: ratelimit.Limits{MessagesPerSecond: 10, BurstLimit: burst}},
		ratelimit.LimiterPrincipal: {Limits: ratelimit.Limits{MessagesPerSecond: 1000, BurstLimit: 1000, MessagesPerMinute: 100000}},
	}}
}

// TestRateLimitHeadersOnlyNearTheLimit: by default admitted calls carry
// the headers once the binding limit has less than half left, and
// refusals always do.
func TestRateLimitHeadersOnlyNearTheLimit(t *testing.T) {
	cfg := userLimits(4)
	cfg.HeadersBelowPercent = 0 // the default, 50
	f := newFixture(t, cfg)
	for i, want := range []string{"", "", "1", "0"} { // remaining 3 and 2 of 4 are not below half
		hdr, err := f.ping(t, "svc", "u1")
		if err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
		got := strings.Join(hdr.Get(interceptors.HeaderRateLimitRemaining), ",")
		if got != want || (want == "") != (len(hdr.Get(interceptors.HeaderRateLimitLimit)) == 0) {
			t.Errorf("call %d: x-ratelimit-remaining %q, limit %v; want remaining %q", i+1, got, hdr.Get(interceptors.HeaderRateLimitLimit), want)
		}
	}
	hdr, err := f.ping(t, "svc", "u1")
	if err == nil {
		t.Fatal("the fifth call was admitted")
	}
	if got := hdr.Get(interceptors.HeaderRateLimitRemaining); len(got) != 1 || got[0] != "0" {
		t.Errorf("refusal's x-ratelimit-remaining = %v, want [0]", got)
	}
}

// refusal extracts what a rate-limit refusal carries.
type refusal struct {
	code       codes.Code
	reason     string
	domain     string
	meta       map[string]string
	retryDelay time.Duration
	hasRetry   bool
}

func refusalOf(t *testing.T, err error) refusal {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a status: %v", err)
	}
	r := refusal{code: st.Code()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			r.reason, r.domain, r.meta = d.GetReason(), d.GetDomain(), d.GetMetadata()
		case *errdetails.RetryInfo:
			r.retryDelay, r.hasRetry = d.GetRetryDelay().AsDuration(), true
		}
	}
	return r
}

func checkRateLimited(t *testing.T, err error, limiter string, wait time.Duration, now time.Time) {
	t.Helper()
	r := refusalOf(t, err)
	if r.code != codes.ResourceExhausted || r.reason != interceptors.ReasonRateLimited || r.domain != interceptors.Domain {
		t.Fatalf("refusal = %v %q %q, want RESOURCE_EXHAUSTED RATE_LIMITED pushercm", r.code, r.reason, r.domain)
	}
	if !r.hasRetry || r.retryDelay != wait {
		t.Fatalf("RetryInfo = %v (present %v), want %v", r.retryDelay, r.hasRetry, wait)
	}
	if got := r.meta["retryAfterMs"]; got != strconv.FormatInt(wait.Milliseconds(), 10) {
		t.Errorf("retryAfterMs = %q, want %d", got, wait.Milliseconds())
	}
	reset, perr := time.Parse(time.RFC3339Nano, r.meta["resetTime"])
	if perr != nil || !reset.Equal(now.Add(wait)) {
		t.Errorf("resetTime = %q, want %v", r.meta["resetTime"], now.Add(wait))
	}
	if r.meta["limiter"] != limiter {
		t.Errorf("limiter = %q, want %q", r.meta["limiter"], limiter)
	}
}

func TestRateLimitUnaryPerUser(t *testing.T) {
	f := newFixture(t, userLimits(3))

	for i := range 3 {
		hdr, err := f.ping(t, "svc", "u1")
		if err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
		// The user's bucket is tighter than the principal's: its figures are sent.
		want := map[string]string{
			interceptors.HeaderRateLimitLimit:     "3",
			interceptors.HeaderRateLimitRemaining: strconv.Itoa(2 - i),
			interceptors.HeaderRateLimitReset:     strconv.FormatInt(t0.Unix()+1, 10), // next token at +100ms, rounded up
		}
		for k, v := range want {
			if got := hdr.Get(k); len(got) != 1 || got[0] != v {
				t.Errorf("call %d header %s = %v, want %s", i+1, k, got, v)
			}
		}
	}
	_, err := f.ping(t, "svc", "u1")
	checkRateLimited(t, err, ratelimit.LimiterUser, 100*time.Millisecond, t0)

	if _, err := f.ping(t, "svc", "u2"); err != nil {
		t.Fatalf("another user affected: %v", err)
	}
	if _, err := f.ping(t, "svc"); err != nil {
		t.Fatalf("a call without users affected: %v", err)
	}
	f.clock.Advance(100*time.Millisecond - time.Nanosecond)
	_, err = f.ping(t, "svc", "u1")
	checkRateLimited(t, err, ratelimit.LimiterUser, time.Nanosecond, f.clock.Now())
	f.clock.Advance(time.Nanosecond)
	if _, err := f.ping(t, "svc", "u1"); err != nil {
		t.Fatalf("refused when RetryInfo said to retry: %v", err)
	}

	// Refusals are logged at DEBUG with the key.
	var found bool
	for _, a := range f.logs.attrs(slog.LevelDebug) {
		if a["limiter"] == ratelimit.LimiterUser && a["key"] == "u1" {
			found = true
		}
	}
	if !found {
		t.Error("no DEBUG record with limiter=user key=u1")
	}
}

func TestRateLimitBatchCountsEachEvent(t *testing.T) {
	f := newFixture(t, userLimits(3))
	tests := []struct {
		name   string
		users  []string
		code   codes.Code
		reason string
	}{
		{"two events for b, one for c", []string{"b", "c", "b"}, codes.OK, ""},
		{"two more for b exceed its burst", []string{"b", "b"}, codes.ResourceExhausted, interceptors.ReasonRateLimited},
		{"one more for b fits", []string{"b"}, codes.OK, ""},
		{"more events for one user than the burst can never fit", []string{"d", "d", "d", "d"}, codes.InvalidArgument, interceptors.ReasonInvalidArgument},
		{"empty user ids do not count", []string{"", "", "", "", "e"}, codes.OK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.ping(t, "svc", tc.users...)
			r := refusalOf(t, err)
			if r.code != tc.code || r.reason != tc.reason {
				t.Fatalf("got %v %q, want %v %q", r.code, r.reason, tc.code, tc.reason)
			}
		})
	}
}

func TestRateLimitPrincipalAndMethod(t *testing.T) {
	cfg := ratelimit.Config{Limiters: map[string]ratelimit.Policy{
		ratelimit.LimiterPrincipal: {
			Limits:    ratelimit.Limits{BurstLimit: 2},
			Overrides: map[string]ratelimit.Limits{"big": {BurstLimit: 4}},
		},
		ratelimit.LimiterMethod: {Unlimited: true, Overrides: map[string]ratelimit.Limits{watchMethod: {BurstLimit: 1}}},
	}}
	f := newFixture(t, cfg)
	count := func(principal string) int {
		n := 0
		for range 6 {
			if _, err := f.ping(t, principal); err == nil {
				n++
			} else if c := status.Code(err); c != codes.ResourceExhausted {
				t.Fatalf("unexpected %v", err)
			}
		}
		return n
	}
	if got := count("small"); got != 2 {
		t.Errorf("default principal admitted %d, want 2", got)
	}
	if got := count("big"); got != 4 {
		t.Errorf("overridden principal admitted %d, want 4", got)
	}
	if got := count(""); got != 2 {
		t.Errorf("anonymous callers admitted %d, want 2 (one shared bucket)", got)
	}

	// Streams: the method override admits one Watch stream across principals.
	watch := func(principal string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "x-principal", principal)
		st, err := f.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, watchMethod)
		if err != nil {
			return err
		}
		if err := st.SendMsg(&emptypb.Empty{}); err != nil {
			return err
		}
		if err := st.CloseSend(); err != nil {
			return err
		}
		for {
			if err := st.RecvMsg(&emptypb.Empty{}); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return err
			}
		}
	}
	if err := watch("s1"); err != nil {
		t.Fatalf("first stream: %v", err)
	}
	err := watch("s2")
	checkRateLimited(t, err, ratelimit.LimiterMethod, time.Second/ratelimit.DefaultMessagesPerSecond, t0)
}

func TestRateLimitHealthNeverLimited(t *testing.T) {
	cfg := ratelimit.Config{Limiters: map[string]ratelimit.Policy{
		ratelimit.LimiterPrincipal: {Limits: ratelimit.Limits{BurstLimit: 1}},
		ratelimit.LimiterMethod:    {Limits: ratelimit.Limits{BurstLimit: 1}},
	}}
	f := newFixture(t, cfg)
	hc := healthpb.NewHealthClient(f.conn)
	for i := range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err != nil {
			t.Fatalf("health check %d: %v", i, err)
		}
	}
	for _, c := range f.set.Snapshot() {
		if c.Allowed+c.Limited != 0 {
			t.Fatalf("health checks reached limiter %+v", c)
		}
	}
	if _, err := f.ping(t, "svc"); err != nil {
		t.Fatalf("first ping: %v", err)
	}
	if _, err := f.ping(t, "svc"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second ping: %v, want RESOURCE_EXHAUSTED (the limits are live)", err)
	}
}

func TestRateLimitDryRun(t *testing.T) {
	cfg := userLimits(1)
	cfg.DryRun = true
	f := newFixture(t, cfg)
	for i := range 5 {
		if _, err := f.ping(t, "svc", "u1"); err != nil {
			t.Fatalf("dry-run call %d refused: %v", i+1, err)
		}
	}
	var user ratelimit.Counters
	for _, c := range f.set.Snapshot() {
		if c.Limiter == ratelimit.LimiterUser {
			user = c
		}
	}
	if user.Allowed != 1 || user.Limited != 4 {
		t.Fatalf("dry-run counters %+v, want 1 allowed, 4 limited", user)
	}
	n := 0
	for _, a := range f.logs.attrs(slog.LevelDebug) {
		if a["key"] == "u1" && a["dryRun"] == "true" {
			n++
		}
	}
	if n != 4 {
		t.Fatalf("%d dry-run DEBUG records for u1, want 4", n)
	}
}

// With headers off, admitted calls carry no x-ratelimit-* headers, and a
// refusal still carries them with its status.
func TestRateLimitHeadersOff(t *testing.T) {
	cfg := userLimits(1)
	off := false
	cfg.Headers = &off
	f := newFixture(t, cfg)
	hdr, err := f.ping(t, "svc", "u1")
	if err != nil {
		t.Fatalf("first call refused: %v", err)
	}
	for _, k := range []string{interceptors.HeaderRateLimitLimit, interceptors.HeaderRateLimitRemaining, interceptors.HeaderRateLimitReset} {
		if v := hdr.Get(k); len(v) != 0 {
			t.Errorf("admitted call has %s = %v with headers off", k, v)
		}
	}
	hdr, err = f.ping(t, "svc", "u1")
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second call: %v, want RESOURCE_EXHAUSTED", err)
	}
	if got := hdr.Get(interceptors.HeaderRateLimitRemaining); len(got) != 1 || got[0] != "0" {
		t.Errorf("refusal's %s = %v, want [0]", interceptors.HeaderRateLimitRemaining, got)
	}
}

func TestBroadcastUserIDs(t *testing.T) {
	tests := []struct {
		name string
		req  any
		want []string
	}{
		{"SendEvent with user", &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{UserId: "u1"}}, []string{"u1"}},
		{"SendEvent without user", &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{}}, nil},
		{"SendBatch counts each event", &pushercmv1.SendBatchRequest{Events: []*pushercmv1.Event{{UserId: "a"}, {UserId: "b"}, {UserId: "a"}, {}}}, []string{"a", "b", "a", ""}},
		{"SendToUser", &pushercmv1.SendToUserRequest{UserId: "u2"}, []string{"u2"}},
		{"other request", &emptypb.Empty{}, nil},
		{"stream (nil request)", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := interceptors.BroadcastUserIDs(context.Background(), "", tc.req)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") || len(got) != len(tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// BenchmarkUnaryRateLimitRPC measures an empty unary RPC over bufconn with
// and without the rate-limit interceptor (principal + one event user
// checked, headers set); the difference is the interceptor's cost per call.
// Limits are high enough that every call is admitted.
func BenchmarkUnaryRateLimitRPC(b *testing.B) {
	cfg := ratelimit.Config{Limiters: map[string]ratelimit.Policy{
		ratelimit.LimiterUser:      {Limits: ratelimit.Limits{MessagesPerSecond: 1e8, BurstLimit: 1 << 20, MessagesPerMinute: 1 << 30}},
		ratelimit.LimiterPrincipal: {Limits: ratelimit.Limits{MessagesPerSecond: 1e8, BurstLimit: 1 << 20, MessagesPerMinute: 1 << 30}},
	}}
	for _, withLimit := range []bool{false, true} {
		name := "without"
		if withLimit {
			name = "with"
		}
		b.Run(name, func(b *testing.B) {
			set, err := ratelimit.NewSet(cfg)
			if err != nil {
				b.Fatal(err)
			}
			var opts []grpc.ServerOption
			if withLimit {
				opts = append(opts, grpc.UnaryInterceptor(interceptors.UnaryRateLimit(set,
					interceptors.WithRateLimitPrincipal(func(context.Context) string { return "svc" }),
					interceptors.WithRateLimitKeys(func(context.Context, string, any) []string { return []string{"user-1"} }),
					interceptors.WithRateLimitLogger(slog.New(slog.DiscardHandler)))))
			}
			srv := grpc.NewServer(opts...)
			srv.RegisterService(&limitedDesc, struct{}{})
			conn := serveBufconn(b, srv)
			ctx := context.Background()
			in, out := &emptypb.Empty{}, &emptypb.Empty{}
			b.ReportAllocs()
			for b.Loop() {
				if err := conn.Invoke(ctx, pingMethod, in, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnaryRateLimitInterceptor calls the interceptor directly with a
// no-op handler: its own cost without transport noise.
func BenchmarkUnaryRateLimitInterceptor(b *testing.B) {
	set, err := ratelimit.NewSet(ratelimit.Config{Limiters: map[string]ratelimit.Policy{
		ratelimit.LimiterUser:      {Limits: ratelimit.Limits{MessagesPerSecond: 1e8, BurstLimit: 1 << 20, MessagesPerMinute: 1 << 30}},
		ratelimit.LimiterPrincipal: {Limits: ratelimit.Limits{MessagesPerSecond: 1e8, BurstLimit: 1 << 20, MessagesPerMinute: 1 << 30}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	users := []string{"user-1"}
	ic := interceptors.UnaryRateLimit(set,
		interceptors.WithRateLimitPrincipal(func(context.Context) string { return "svc" }),
		interceptors.WithRateLimitKeys(func(context.Context, string, any) []string { return users }),
		interceptors.WithRateLimitLogger(slog.New(slog.DiscardHandler)))
	info := &grpc.UnaryServerInfo{FullMethod: pingMethod}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	ctx := grpc.NewContextWithServerTransportStream(context.Background(), &headerSink{})
	b.ReportAllocs()
	for b.Loop() {
		_, _ = ic(ctx, nil, info, handler)
	}
}

// headerSink is a grpc.ServerTransportStream that keeps nothing, so that
// SetHeader succeeds outside a server.
type headerSink struct{}

func (*headerSink) Method() string               { return pingMethod }
func (*headerSink) SetHeader(metadata.MD) error  { return nil }
func (*headerSink) SendHeader(metadata.MD) error { return nil }
func (*headerSink) SetTrailer(metadata.MD) error { return nil }

// TestRateLimitHeadersConcurrentCalls: admitted unary calls send their
// headers from a reused map (setUnaryHeaders), which is only right while
// grpc-go's transport copies what SetHeader gets. Over a real server, calls
// in parallel must each see their own decision: with the clock stopped, one
// principal's remaining count falls by one per call, so every call's
// x-ratelimit-remaining is different.
func TestRateLimitHeadersConcurrentCalls(t *testing.T) {
	f := newFixture(t, userLimits(10))
	const callers, calls = 8, 60
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for range callers {
		wg.Go(func() {
			for range calls {
				hdr, err := f.ping(t, "svc")
				if err != nil {
					t.Error(err)
					return
				}
				limit, remaining, reset := hdr.Get(interceptors.HeaderRateLimitLimit), hdr.Get(interceptors.HeaderRateLimitRemaining), hdr.Get(interceptors.HeaderRateLimitReset)
				if len(limit) != 1 || len(remaining) != 1 || len(reset) != 1 {
					t.Errorf("headers %v", hdr)
					return
				}
				mu.Lock()
				seen["limit="+limit[0]+" reset="+reset[0]]++
				seen[remaining[0]]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	var fixed []string
	for k, n := range seen {
		if strings.HasPrefix(k, "limit=") {
			fixed = append(fixed, k)
			if n != callers*calls {
				t.Errorf("%s on %d calls, want all %d", k, n, callers*calls)
			}
		} else if n != 1 {
			t.Errorf("x-ratelimit-remaining %s sent to %d calls", k, n)
		}
	}
	if len(fixed) != 1 || len(seen) != 1+callers*calls {
		t.Fatalf("%d distinct limit/reset pairs (%v) and %d remaining values, want 1 and %d", len(fixed), fixed, len(seen)-len(fixed), callers*calls)
	}
}
