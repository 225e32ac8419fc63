package authsvc_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/authz/authsvc"
)

var secret = []byte("authsvc-test-secret-0123456789-abcdef")

type fixture struct {
	svc   *authsvc.Service
	spans *tracetest.SpanRecorder
	rd    *sdkmetric.ManualReader
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	v, err := authz.NewVerifier(authz.VerifierConfig{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	rules, err := authz.NewRules(authz.RulesConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	az, err := authz.NewAuthorizer(authz.AuthorizerConfig{AppKey: "key", AppSecret: "app-secret"}, rules)
	if err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewSpanRecorder()
	rd := sdkmetric.NewManualReader()
	svc, err := authsvc.New(authsvc.Config{
		Verifier: v, Authorizer: az,
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)),
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{svc: svc, spans: spans, rd: rd}
}

func token(t *testing.T, o authz.MintOptions) string {
	t.Helper()
	o.TTL = time.Hour
	tok, err := authz.Mint(secret, o)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestDecisionTelemetry: every decision has one span and one count with
// the kind, rule and outcome, and the token appears in neither.
func TestDecisionTelemetry(t *testing.T) {
	f := newFixture(t)
	user := token(t, authz.MintOptions{Subject: "u1", Teams: []string{"t1"}})
	tests := []struct {
		name, token, channel string
		wantErr              error
		kind, rule, outcome  string
	}{
		{"allowed", user, "private-user-u1", nil, "private", "user-channel", authsvc.OutcomeAllowed},
		{"rule denies", user, "private-user-u2", authz.ErrRuleDenied, "private", "user-channel", authsvc.OutcomeDenied},
		{"default deny", user, "presence-nothing", authz.ErrRuleDenied, "presence", authsvc.RuleDefault, authsvc.OutcomeDenied},
		{"public", "", "news", nil, "public", authsvc.RulePublic, authsvc.OutcomeAllowed},
		{"no master key", user, "private-encrypted-x", authz.ErrEncryptionUnavailable, "private-encrypted", authsvc.RuleEncryption, authsvc.OutcomeDenied},
		{"bad token", user + "x", "private-user-u1", authz.ErrUnauthenticated, "private", authsvc.RuleNone, authsvc.OutcomeUnauthenticated},
		{"no token", "", "private-user-u1", authz.ErrTokenMissing, "private", authsvc.RuleNone, authsvc.OutcomeUnauthenticated},
		{"bad channel", user, "private-€", authz.ErrInvalidArgument, "invalid", authsvc.RuleNone, authsvc.OutcomeInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.spans.Reset()
			_, err := f.svc.AuthorizeChannel(context.Background(), authsvc.TransportHTTP, tc.token, authz.ChannelRequest{SocketID: "1.2", Channel: tc.channel})
			if (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			ended := f.spans.Ended()
			if len(ended) != 1 || ended[0].Name() != "authz.AuthorizeChannel" {
				t.Fatalf("spans %d, want one authz.AuthorizeChannel", len(ended))
			}
			got := map[attribute.Key]string{}
			for _, kv := range ended[0].Attributes() {
				got[kv.Key] = kv.Value.String()
				if tc.token != "" && strings.Contains(kv.Value.String(), tc.token) {
					t.Errorf("span attribute %s carries the token", kv.Key)
				}
			}
			want := map[attribute.Key]string{
				"pushercm.channel.kind": tc.kind, "pushercm.auth.rule": tc.rule,
				"pushercm.auth.outcome": tc.outcome, "pushercm.auth.transport": authsvc.TransportHTTP,
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("span %s = %q, want %q", k, got[k], v)
				}
			}
			if n := count(t, f.rd, tc.kind, tc.rule, tc.outcome); n < 1 {
				t.Errorf("decisions{kind=%s,rule=%s,outcome=%s} = %d, want >= 1", tc.kind, tc.rule, tc.outcome, n)
			}
		})
	}
}

func TestAuthenticateUser(t *testing.T) {
	f := newFixture(t)
	user := token(t, authz.MintOptions{Subject: "u1", Name: "Ann"})
	out, err := f.svc.AuthenticateUser(context.Background(), authsvc.TransportGRPC, user, authz.UserRequest{SocketID: "1.2"})
	if err != nil {
		t.Fatal(err)
	}
	if out.UserID != "u1" || out.UserData != `{"id":"u1","user_info":{"name":"Ann"}}` || !strings.HasPrefix(out.Auth, "key:") {
		t.Errorf("got %+v", out)
	}
	if _, err := f.svc.AuthenticateUser(context.Background(), authsvc.TransportGRPC, "", authz.UserRequest{SocketID: "1.2"}); !errors.Is(err, authz.ErrTokenMissing) {
		t.Errorf("no token: %v, want ErrTokenMissing", err)
	}
	if n := count(t, f.rd, "user", authsvc.RuleNone, authsvc.OutcomeUnauthenticated); n != 1 {
		t.Errorf("unauthenticated sign-ins counted %d, want 1", n)
	}
}

// count reads the decisions counter for one label combination.
func count(t *testing.T, rd *sdkmetric.ManualReader, kind, rule, outcome string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != authsvc.MetricName {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				k, _ := dp.Attributes.Value("kind")
				r, _ := dp.Attributes.Value("rule")
				o, _ := dp.Attributes.Value("outcome")
				if k.AsString() == kind && r.AsString() == rule && o.AsString() == outcome {
					n += dp.Value
				}
			}
		}
	}
	return n
}

// TestAnnotateParentSpan: inside a caller's span (otelgrpc's RPC span) the
// decision is recorded on that span, not on a child.
func TestAnnotateParentSpan(t *testing.T) {
	v, err := authz.NewVerifier(authz.VerifierConfig{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	rules, _ := authz.NewRules(authz.RulesConfig{}, nil)
	az, _ := authz.NewAuthorizer(authz.AuthorizerConfig{AppKey: "key", AppSecret: "app-secret"}, rules)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	svc, err := authsvc.New(authsvc.Config{Verifier: v, Authorizer: az, TracerProvider: tp, AnnotateParentSpan: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, parent := tp.Tracer("test").Start(context.Background(), "rpc")
	if _, err := svc.AuthorizeChannel(ctx, authsvc.TransportGRPC, token(t, authz.MintOptions{Subject: "u1"}), authz.ChannelRequest{SocketID: "1.2", Channel: "private-user-u1"}); err != nil {
		t.Fatal(err)
	}
	parent.End()
	ended := spans.Ended()
	if len(ended) != 1 || ended[0].Name() != "rpc" {
		t.Fatalf("got %d spans, want only the parent", len(ended))
	}
	found := false
	for _, kv := range ended[0].Attributes() {
		if kv.Key == "pushercm.auth.rule" && kv.Value.AsString() == "user-channel" {
			found = true
		}
	}
	if !found {
		t.Errorf("parent span lacks pushercm.auth.rule: %v", ended[0].Attributes())
	}
}
