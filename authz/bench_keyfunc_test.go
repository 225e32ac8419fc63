package authz

import (
	"context"
	"testing"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkJWKSKeyfunc measures keyfunc/v3 on the verify hot path over the
// same JWKS URL as BenchmarkVerifyJWKS: "verify" is the same parse, signature
// check and principal, with keyfunc's Keyfunc over jwkset's storage picking
// the key; the lookup cases time only picking the key for a parsed token,
// with our key-set snapshot and with keyfunc. It is why the snapshot stays
// (doc.go).
func BenchmarkJWKSKeyfunc(b *testing.B) {
	url, tok := benchJWKSServer(b)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	v, err := NewVerifier(VerifierConfig{JWKSURL: url, CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = v.Close() })
	kf, err := keyfunc.NewDefaultCtx(ctx, []string{url})
	if err != nil {
		b.Fatal(err)
	}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired(),
		jwt.WithJSONNumber(), jwt.WithIssuedAt())
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		b.Fatal(err)
	}

	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			claims := jwt.MapClaims{}
			if _, err := parser.ParseWithClaims(tok, claims, kf.Keyfunc); err != nil {
				b.Fatal(err)
			}
			_ = NewPrincipal(claims, DefaultClaimNames)
		}
	})
	b.Run("lookup/verifier", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.keyFor(ctx, parsed); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lookup/keyfunc", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := kf.Keyfunc(parsed); err != nil {
				b.Fatal(err)
			}
		}
	})
}
