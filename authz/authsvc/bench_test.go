package authsvc_test

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/authz/authsvc"
)

// BenchmarkAuthorizeChannel measures what the service adds around the
// Authorizer on the gRPC path: a cached token verification, the decision and
// signature (presence: channel_data too), the attributes on the caller's
// recording span and the decisions counter. "authorizer-only" is the
// Authorizer alone with the principal already verified, for comparison.
func BenchmarkAuthorizeChannel(b *testing.B) {
	v, err := authz.NewVerifier(authz.VerifierConfig{Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = v.Close() }()
	rules, _ := authz.NewRules(authz.RulesConfig{}, nil)
	az, _ := authz.NewAuthorizer(authz.AuthorizerConfig{AppKey: "key", AppSecret: "app-secret"}, rules)
	tp := sdktrace.NewTracerProvider()
	svc, err := authsvc.New(authsvc.Config{
		Verifier: v, Authorizer: az, TracerProvider: tp,
		MeterProvider:      sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
		AnnotateParentSpan: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	tok, _ := authz.Mint(secret, authz.MintOptions{Subject: "u1", Teams: []string{"t1"}, Name: "Ann", TTL: time.Hour})
	req := authz.ChannelRequest{SocketID: "1234.5678", Channel: "presence-team-t1"}
	ctx, span := tp.Tracer("bench").Start(context.Background(), "rpc")
	defer span.End()

	b.Run("service", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := svc.AuthorizeChannel(ctx, authsvc.TransportGRPC, tok, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	// As deployed without a trace exporter (telemetry.Setup samples
	// nothing): otelgrpc's span is not recording, so the service starts a
	// (non-recording) child of its own.
	b.Run("service-unsampled", func(b *testing.B) {
		ntp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
		nsvc, err := authsvc.New(authsvc.Config{
			Verifier: v, Authorizer: az, TracerProvider: ntp,
			MeterProvider:      sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
			AnnotateParentSpan: true,
		})
		if err != nil {
			b.Fatal(err)
		}
		nctx, nspan := ntp.Tracer("bench").Start(context.Background(), "rpc")
		defer nspan.End()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := nsvc.AuthorizeChannel(nctx, authsvc.TransportGRPC, tok, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("authorizer-only", func(b *testing.B) {
		p, err := v.Verify(ctx, tok)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := az.AuthorizeChannel(ctx, p, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
