package interceptors_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/milequest/pushercm/authz"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/interceptors"
)

const (
	secret   = "chain-test-secret-0123456789abcdef"
	issuer   = "https://id.milequest.test"
	audience = "pushercm"
)

// broadcast answers SendEvent, and panics for the event name "panic".
type broadcast struct {
	pushercmv1.UnimplementedBroadcastServiceServer
}

func (broadcast) SendEvent(ctx context.Context, req *pushercmv1.SendEventRequest) (*pushercmv1.SendEventResponse, error) {
	if req.GetEvent().GetName() == "panic" {
		panic("handler exploded: secret-internal-detail")
	}
	if authz.FromContext(ctx) == nil {
		return nil, status.Error(codes.Internal, "no principal in context")
	}
	if ctx.Value(trackedKey{}) == nil {
		return nil, status.Error(codes.Internal, "the tracker's context did not reach the handler")
	}
	return &pushercmv1.SendEventResponse{EventId: "e1"}, nil
}

// trackedKey marks the contexts the tracker began.
type trackedKey struct{}

// tracker records every call's end as "method code reason".
type tracker struct {
	mu   sync.Mutex
	ends []string
}

func (*tracker) Begin(ctx context.Context, _ string) context.Context {
	return context.WithValue(ctx, trackedKey{}, true)
}

func (tr *tracker) End(ctx context.Context, method string, begin time.Time, err error) {
	reason := ""
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.Reason
		}
	}
	if ctx.Value(trackedKey{}) == nil || time.Since(begin) < 0 {
		reason += " (not the context Begin returned)"
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.ends = append(tr.ends, strings.TrimSpace(method+" "+status.Code(err).String()+" "+reason))
}

func (tr *tracker) Ends() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.ends...)
}

type chainFixture struct {
	track  *tracker
	conn   *grpc.ClientConn
	rsaKey *rsa.PrivateKey
	pubPEM []byte
}

func newChainFixture(t *testing.T) *chainFixture {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	pemFile := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(pemFile, pubPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := authz.NewVerifier(authz.VerifierConfig{
		Secret: []byte(secret), PublicKeyFile: pemFile, Issuer: issuer, Audience: []string{audience},
		Algorithms: []string{"HS256", "RS256"}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	track := &tracker{}
	chain := &interceptors.Chain{Track: track, Log: log, Errors: &interceptors.ErrorMapper{Log: log}, Auth: &interceptors.Auth{Verifier: v}}
	srv := grpc.NewServer(chain.ServerOptions()...)
	pushercmv1.RegisterBroadcastServiceServer(srv, broadcast{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	reflection.Register(srv)

	conn := serveBufconn(t, srv)
	return &chainFixture{track: track, conn: conn, rsaKey: key, pubPEM: pubPEM}
}

func claims(mod func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"sub": "svc-activity", "iss": issuer, "aud": audience, "scope": "events:publish",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func hs256(t *testing.T, key []byte, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// algNone builds an unsigned token by hand: the library refuses to.
func algNone(c jwt.MapClaims) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, c)
	s, _ := tok.SigningString()
	return s + "."
}

func TestChainAuth(t *testing.T) {
	f := newChainFixture(t)
	client := pushercmv1.NewBroadcastServiceClient(f.conn)
	rs256, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims(nil)).SignedString(f.rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	good := hs256(t, []byte(secret), claims(nil))
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin","scope":"events:publish","iss":"`+issuer+`","aud":"`+audience+`","exp":9999999999}`)) + "." + parts[2]

	tests := []struct {
		name       string
		authHeader string // "" sends no header
		wantCode   codes.Code
		wantReason string
	}{
		{name: "valid HS256", authHeader: "Bearer " + good, wantCode: codes.OK},
		{name: "valid RS256", authHeader: "Bearer " + rs256, wantCode: codes.OK},
		{name: "no token", wantCode: codes.Unauthenticated, wantReason: interceptors.ReasonAuthenticationFailed},
		{name: "not bearer", authHeader: "Basic dXNlcjpwYXNz", wantCode: codes.Unauthenticated, wantReason: interceptors.ReasonAuthenticationFailed},
		{name: "malformed token", authHeader: "Bearer not.a.jwt", wantCode: codes.Unauthenticated, wantReason: interceptors.ReasonAuthenticationFailed},
		{name: "expired", authHeader: "Bearer " + hs256(t, []byte(secret), claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })),
			wantCode: codes.Unauthenticated, wantReason: interceptors.ReasonAuthenticationFailed},
		{name: "no exp", authHeader: "Bearer " + hs256(t, []byte(secret), claims(func(c jwt.MapClaims) { delete(c, "exp") })),
			wantCode: codes.Unauthenticated, wantReason: interceptors.ReasonAuthenticationFailed},
		{name: "wrong issuer", authHeader: "Bearer " + hs256(t, []byte(secret), claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })),
			wantCode: codes.Unauthenticated, wantReason: interceptors.ReasonAuthenticationFailed},
		{name: "wrong audience", authHeader: "Bearer " + hs256(t, []byte(secret), claims(func(c jwt.MapClaims) { c["aud"] = "someone-else" })),
			wantCode: codes.Unauthenticated, wantReason: interceptors.ReasonAuthenticationFailed},
		{name: "alg none", authHeader: "Bearer " + algNone(claims(nil)), wantCode: codes.Unauthenticated, wantReason: interceptors.ReasonAuthenticationFailed},
		{name: "HS256 signed with the RSA public key", authHeader: "Bearer " + hs256(t, f.pubPEM, claims(nil)),
			wantCode: codes.Unauthenticated, wantReason: interceptors.ReasonAuthenticationFailed},
		{name: "tampered payload", authHeader: "Bearer " + tampered, wantCode: codes.Unauthenticated, wantReason: interceptors.ReasonAuthenticationFailed},
		{name: "wrong secret", authHeader: "Bearer " + hs256(t, []byte("another-secret-0123456789abcdefgh"), claims(nil)),
			wantCode: codes.Unauthenticated, wantReason: interceptors.ReasonAuthenticationFailed},
		// Only the space-separated string form of scope counts (RFC 8693).
		{name: "comma separated scope", authHeader: "Bearer " + hs256(t, []byte(secret), claims(func(c jwt.MapClaims) { c["scope"] = "x,events:publish" })),
			wantCode: codes.PermissionDenied, wantReason: interceptors.ReasonAuthorizationFailed},
		{name: "array scope", authHeader: "Bearer " + hs256(t, []byte(secret), claims(func(c jwt.MapClaims) { c["scope"] = []string{"events:publish"} })),
			wantCode: codes.PermissionDenied, wantReason: interceptors.ReasonAuthorizationFailed},
		{name: "space separated scope", authHeader: "Bearer " + hs256(t, []byte(secret), claims(func(c jwt.MapClaims) { c["scope"] = "connections:read events:publish" })),
			wantCode: codes.OK},
		{name: "missing scope", authHeader: "Bearer " + hs256(t, []byte(secret), claims(func(c jwt.MapClaims) { c["scope"] = "connections:read" })),
			wantCode: codes.PermissionDenied, wantReason: interceptors.ReasonAuthorizationFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tt.authHeader != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tt.authHeader)
			}
			_, err := client.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{Name: "e", Channels: []string{"c"}}})
			st := status.Convert(err)
			if st.Code() != tt.wantCode {
				t.Fatalf("code %v (%s), want %v", st.Code(), st.Message(), tt.wantCode)
			}
			if tt.wantCode == codes.OK {
				return
			}
			if got := reason(st); got != tt.wantReason {
				t.Fatalf("reason %q, want %q", got, tt.wantReason)
			}
		})
	}
}

func reason(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.Domain != interceptors.Domain {
				return "wrong domain " + info.Domain
			}
			return info.Reason
		}
	}
	return ""
}

func TestHealthAndReflectionNeedNoToken(t *testing.T) {
	f := newChainFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(f.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", resp, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(f.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection without a token: %v", err)
	}
	var names []string
	for _, s := range r.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	if !strings.Contains(strings.Join(names, ","), "pushercm.v1.BroadcastService") {
		t.Fatalf("reflection lists %v", names)
	}
}

func TestPanicBecomesInternal(t *testing.T) {
	f := newChainFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+hs256(t, []byte(secret), claims(nil)))
	_, err := pushercmv1.NewBroadcastServiceClient(f.conn).SendEvent(ctx,
		&pushercmv1.SendEventRequest{Event: &pushercmv1.Event{Name: "panic", Channels: []string{"c"}}})
	st := status.Convert(err)
	if st.Code() != codes.Internal {
		t.Fatalf("code %v, want Internal", st.Code())
	}
	for _, leak := range []string{"exploded", "secret-internal-detail", "goroutine", ".go:"} {
		if strings.Contains(st.Message(), leak) {
			t.Fatalf("panic detail leaked to the client: %q", st.Message())
		}
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if d, ok := d.(*errdetails.ErrorInfo); ok {
			info = d
		}
	}
	if info == nil || info.Reason != interceptors.ReasonInternal || info.Domain != interceptors.Domain {
		t.Fatalf("ErrorInfo %v, want reason INTERNAL in domain pushercm", info)
	}
}

// TestChainTracksEveryCall: Chain.Track sees each unary and streaming call
// once, with the status the client got (the mapped one, its ErrorInfo
// reason included), and its Begin context reaches the handler.
func TestChainTracksEveryCall(t *testing.T) {
	f := newChainFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bc := pushercmv1.NewBroadcastServiceClient(f.conn)
	if _, err := bc.SendEvent(ctx, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{Name: "e", Channels: []string{"c"}}}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+hs256(t, []byte(secret), claims(nil)))
	if _, err := bc.SendEvent(authed, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{Name: "e", Channels: []string{"c"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := bc.SendEvent(authed, &pushercmv1.SendEventRequest{Event: &pushercmv1.Event{Name: "panic", Channels: []string{"c"}}}); status.Code(err) != codes.Internal {
		t.Fatalf("panic: %v", err)
	}
	w, err := healthpb.NewHealthClient(f.conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	want := []string{
		"/pushercm.v1.BroadcastService/SendEvent Unauthenticated AUTHENTICATION_FAILED",
		"/pushercm.v1.BroadcastService/SendEvent OK",
		"/pushercm.v1.BroadcastService/SendEvent Internal INTERNAL",
		"/grpc.health.v1.Health/Watch Canceled",
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(f.track.Ends()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := f.track.Ends(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("tracked:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
