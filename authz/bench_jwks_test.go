package authz

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// benchJWKSServer serves a four-key set (two RSA, two EC) whose last key,
// "k4", signs the benchmarked RS256 token, so the lookup walks the set.
func benchJWKSServer(b *testing.B) (url, token string) {
	b.Helper()
	k := keys(b)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{KeyID: "k1", Key: &k.ec256.PublicKey, Use: "sig"},
		{KeyID: "k2", Key: &k.ec384.PublicKey, Use: "sig"},
		{KeyID: "k3", Key: &k.rsa2.PublicKey, Use: "sig"},
		{KeyID: "k4", Key: &k.rsa.PublicKey, Use: "sig", Algorithm: "RS256"},
	}}
	body, err := json.Marshal(set)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	b.Cleanup(srv.Close)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"sub": "user-1234", "teams": []string{"t1", "t2"}, "roles": []string{"editor"},
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}, func(t *jwt.Token) { t.Header["kid"] = "k4" }).SignedString(k.rsa)
	if err != nil {
		b.Fatal(err)
	}
	return srv.URL, tok
}

// BenchmarkVerifyJWKS measures Verify of an RS256 token whose key came from a
// JWKS URL, with the token cache off so every iteration looks the key up and
// checks the signature.
func BenchmarkVerifyJWKS(b *testing.B) {
	url, tok := benchJWKSServer(b)
	v, err := NewVerifier(VerifierConfig{JWKSURL: url, CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = v.Close() })
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
