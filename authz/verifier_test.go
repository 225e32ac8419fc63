package authz

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testKeys are generated once per test binary; RSA generation is slow on a
// loaded machine.
type testKeyPair struct {
	rsa, rsa2 *rsa.PrivateKey
	ec256     *ecdsa.PrivateKey
	ec384     *ecdsa.PrivateKey
	ed        ed25519.PrivateKey
}

var (
	keysOnce sync.Once
	tk       testKeyPair
)

func keys(t testing.TB) *testKeyPair {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if tk.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if tk.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if tk.ec256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if tk.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
		if _, tk.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
	return &tk
}

func pemPublic(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

var testSecret = []byte("test-jwt-secret-0123456789abcdef")

func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func baseClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"sub":   "u1",
		"teams": []string{"t1", "t2"},
		"roles": []string{"member"},
		"name":  "Ada",
		"scope": "events:publish channels:authorize",
		"exp":   now.Add(time.Hour).Unix(),
		"iat":   now.Unix(),
		"iss":   "https://idp.example",
		"aud":   "pushercm",
	}
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func TestVerifierHMAC(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	v, err := NewVerifier(VerifierConfig{
		Secret: testSecret, Issuer: "https://idp.example", Audience: []string{"pushercm"},
		Leeway: 30 * time.Second, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = v.Close() }()
	good := baseClaims(now)
	tests := []struct {
		name  string
		token string
		want  error // nil: valid
	}{
		{"valid", sign(t, jwt.SigningMethodHS256, testSecret, good, nil), nil},
		{"missing", "", ErrTokenMissing},
		{"malformed", "not.a.jwt", ErrTokenInvalid},
		{"garbage", "abc", ErrTokenInvalid},
		{"expired", sign(t, jwt.SigningMethodHS256, testSecret, with(good, "exp", now.Add(-time.Minute).Unix()), nil), ErrTokenExpired},
		{"expired within leeway", sign(t, jwt.SigningMethodHS256, testSecret, with(good, "exp", now.Add(-10*time.Second).Unix()), nil), nil},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, testSecret, with(good, "nbf", now.Add(time.Minute).Unix()), nil), ErrTokenNotYetValid},
		{"nbf within leeway", sign(t, jwt.SigningMethodHS256, testSecret, with(good, "nbf", now.Add(10*time.Second).Unix()), nil), nil},
		{"issued in the future", sign(t, jwt.SigningMethodHS256, testSecret, with(good, "iat", now.Add(time.Hour).Unix()), nil), ErrTokenNotYetValid},
		{"no exp", sign(t, jwt.SigningMethodHS256, testSecret, with(good, "exp", nil), nil), ErrTokenInvalid},
		{"wrong issuer", sign(t, jwt.SigningMethodHS256, testSecret, with(good, "iss", "https://evil.example"), nil), ErrTokenIssuer},
		{"no issuer", sign(t, jwt.SigningMethodHS256, testSecret, with(good, "iss", nil), nil), ErrTokenIssuer},
		{"wrong audience", sign(t, jwt.SigningMethodHS256, testSecret, with(good, "aud", "other"), nil), ErrTokenAudience},
		{"no audience", sign(t, jwt.SigningMethodHS256, testSecret, with(good, "aud", nil), nil), ErrTokenAudience},
		{"audience list", sign(t, jwt.SigningMethodHS256, testSecret, with(good, "aud", []string{"x", "pushercm"}), nil), nil},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdef!"), good, nil), ErrTokenSignature},
		{"HS384 not configured", sign(t, jwt.SigningMethodHS384, testSecret, good, nil), ErrTokenAlgorithm},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good, nil), ErrTokenAlgorithm},
		{"RS256 with no RSA key", sign(t, jwt.SigningMethodRS256, keys(t).rsa, good, nil), ErrTokenAlgorithm},
		{"tampered payload", tamper(t, sign(t, jwt.SigningMethodHS256, testSecret, good, nil), "sub", "admin"), ErrTokenSignature},
		{"unknown alg header", forgeHeader(t, `{"alg":"XS256","typ":"JWT"}`, good), ErrTokenAlgorithm},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tc.token)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if p.Subject != "u1" || !p.InTeam("t2") || !p.HasRole("member") || p.Name != "Ada" {
					t.Fatalf("principal = %+v", p)
				}
				if !p.HasScope("channels:authorize") || p.HasScope("connections:read") {
					t.Fatalf("scopes = %q", p.Scopes)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("Verify error = %v, want %v (and ErrUnauthenticated)", err, tc.want)
			}
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("error %T is not a *TokenError", err)
			}
		})
	}
}

// tamper re-encodes the payload with one claim changed, keeping the
// original signature.
func tamper(t testing.TB, tok, claim string, value any) string {
	t.Helper()
	parts := splitJWT(t, tok)
	raw, err := jwt.NewParser().DecodeSegment(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m[claim] = value
	b, _ := json.Marshal(m)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
}

func forgeHeader(t testing.TB, header string, claims jwt.MapClaims) string {
	t.Helper()
	b, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}

func splitJWT(t testing.TB, tok string) [3]string {
	t.Helper()
	var out [3]string
	i := 0
	start := 0
	for j := 0; j < len(tok); j++ {
		if tok[j] == '.' {
			out[i] = tok[start:j]
			i++
			start = j + 1
		}
	}
	out[i] = tok[start:]
	return out
}

func TestVerifierKeyConfusion(t *testing.T) {
	k := keys(t)
	pubPEM := pemPublic(t, &k.rsa.PublicKey)
	path := writeFile(t, "rsa.pem", pubPEM)
	now := time.Now()
	claims := baseClaims(now)
	forged := sign(t, jwt.SigningMethodHS256, pubPEM, claims, nil)

	t.Run("PEM only: HS256 not accepted", func(t *testing.T) {
		v, err := NewVerifier(VerifierConfig{PublicKeyFile: path})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), forged); !errors.Is(err, ErrTokenAlgorithm) {
			t.Fatalf("err = %v, want ErrTokenAlgorithm", err)
		}
		if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, k.rsa, claims, nil)); err != nil {
			t.Fatalf("RS256: %v", err)
		}
	})
	t.Run("PEM and secret, HS256 allowed: PEM bytes are not an HMAC key", func(t *testing.T) {
		v, err := NewVerifier(VerifierConfig{PublicKeyFile: path, Secret: testSecret, Algorithms: []string{"HS256", "RS256"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), forged); !errors.Is(err, ErrTokenSignature) {
			t.Fatalf("err = %v, want ErrTokenSignature", err)
		}
	})
	t.Run("RS256 token signed by another key", func(t *testing.T) {
		v, err := NewVerifier(VerifierConfig{PublicKeyFile: path})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, k.rsa2, claims, nil)); !errors.Is(err, ErrTokenSignature) {
			t.Fatalf("err = %v, want ErrTokenSignature", err)
		}
	})
}

func TestVerifierAsymmetric(t *testing.T) {
	k := keys(t)
	now := time.Now()
	claims := baseClaims(now)
	bundle := append(append(pemPublic(t, &k.rsa.PublicKey), pemPublic(t, &k.ec256.PublicKey)...), pemPublic(t, k.ed.Public())...)
	v, err := NewVerifier(VerifierConfig{PublicKeyFile: writeFile(t, "bundle.pem", bundle)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		method jwt.SigningMethod
		key    any
		want   error
	}{
		{"RS256", jwt.SigningMethodRS256, k.rsa, nil},
		{"RS512", jwt.SigningMethodRS512, k.rsa, nil},
		{"PS256", jwt.SigningMethodPS256, k.rsa, nil},
		{"ES256", jwt.SigningMethodES256, k.ec256, nil},
		{"EdDSA", jwt.SigningMethodEdDSA, k.ed, nil},
		{"ES384 (no P-384 key configured)", jwt.SigningMethodES384, k.ec384, ErrTokenAlgorithm},
		{"HS256 (no secret)", jwt.SigningMethodHS256, testSecret, ErrTokenAlgorithm},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), sign(t, tc.method, tc.key, claims, nil))
			if tc.want == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifierConfigErrors(t *testing.T) {
	k := keys(t)
	privDER, _ := x509.MarshalPKCS8PrivateKey(k.ec256)
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	tests := []struct {
		name string
		cfg  VerifierConfig
	}{
		{"no source", VerifierConfig{}},
		{"alg none", VerifierConfig{Secret: testSecret, Algorithms: []string{"none"}}},
		{"HS without secret", VerifierConfig{PublicKeyFile: writeFile(t, "k.pem", pemPublic(t, &k.rsa.PublicKey)), Algorithms: []string{"HS256"}}},
		{"missing file", VerifierConfig{PublicKeyFile: filepath.Join(t.TempDir(), "nope.pem")}},
		{"private key in PEM", VerifierConfig{PublicKeyFile: writeFile(t, "p.pem", privPEM)}},
		{"not PEM", VerifierConfig{PublicKeyFile: writeFile(t, "x.pem", []byte("hello"))}},
		{"JWKS URL over plain http", VerifierConfig{JWKSURL: "http://idp.example/.well-known/jwks.json"}},
		{"JWKS URL odd scheme", VerifierConfig{JWKSURL: "file:///etc/jwks.json"}},
		{"JWKS URL unreachable", VerifierConfig{JWKSURL: "http://127.0.0.1:1/jwks"}},
		{"JWKS with only a secret", VerifierConfig{JWKSFile: writeFile(t, "s.json", []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}`))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewVerifier(tc.cfg); err == nil {
				t.Fatal("NewVerifier succeeded, want error")
			}
		})
	}
}

func jwks(t testing.TB, pairs ...any) []byte {
	t.Helper()
	var set jose.JSONWebKeySet
	for i := 0; i < len(pairs); i += 2 {
		set.Keys = append(set.Keys, jose.JSONWebKey{KeyID: pairs[i].(string), Key: pairs[i+1], Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jwksServer serves a replaceable key set and counts fetches.
type jwksServer struct {
	*httptest.Server
	body  atomic.Pointer[[]byte]
	count atomic.Int32
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{}
	s.body.Store(&body)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.count.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func TestVerifierJWKSUnknownKidRefetchLimited(t *testing.T) {
	k := keys(t)
	clk := newClock()
	srv := newJWKSServer(t, jwks(t, "k1", &k.rsa.PublicKey))
	v, err := NewVerifier(VerifierConfig{JWKSURL: srv.URL, Now: clk.Now, JWKSRefresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = v.Close() }()
	if got := srv.count.Load(); got != 1 {
		t.Fatalf("initial fetches = %d, want 1", got)
	}
	claims := baseClaims(clk.Now())
	ctx := context.Background()

	if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodRS256, k.rsa, claims, map[string]any{"kid": "k1"})); err != nil {
		t.Fatalf("k1: %v", err)
	}
	if got := srv.count.Load(); got != 1 {
		t.Fatalf("known kid caused a fetch: %d", got)
	}

	// Unknown kid inside the first minute after the initial fetch: no refetch.
	k2tok := sign(t, jwt.SigningMethodRS256, k.rsa2, claims, map[string]any{"kid": "k2"})
	for i := 0; i < 5; i++ {
		if _, err := v.Verify(ctx, k2tok); !errors.Is(err, ErrTokenUnknownKey) {
			t.Fatalf("k2 before rotation: %v, want ErrTokenUnknownKey", err)
		}
	}
	if got := srv.count.Load(); got != 1 {
		t.Fatalf("fetches after unknown kids within a minute = %d, want 1", got)
	}

	// The identity provider rotates; a minute later one unknown-kid token
	// triggers exactly one refetch and then verifies.
	body := jwks(t, "k1", &k.rsa.PublicKey, "k2", &k.rsa2.PublicKey)
	srv.body.Store(&body)
	clk.Advance(61 * time.Second)
	claims = baseClaims(clk.Now())
	k2tok = sign(t, jwt.SigningMethodRS256, k.rsa2, claims, map[string]any{"kid": "k2"})
	if _, err := v.Verify(ctx, k2tok); err != nil {
		t.Fatalf("k2 after rotation: %v", err)
	}
	if got := srv.count.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2", got)
	}

	// A flood of other unknown kids right after: still no new fetch.
	k3tok := sign(t, jwt.SigningMethodRS256, k.rsa2, claims, map[string]any{"kid": "k3"})
	for i := 0; i < 20; i++ {
		if _, err := v.Verify(ctx, k3tok); !errors.Is(err, ErrTokenUnknownKey) {
			t.Fatalf("k3: %v, want ErrTokenUnknownKey", err)
		}
	}
	if got := srv.count.Load(); got != 2 {
		t.Fatalf("fetches after k3 flood = %d, want 2", got)
	}
}

func TestVerifierJWKSBackgroundRefresh(t *testing.T) {
	k := keys(t)
	clk := newClock()
	srv := newJWKSServer(t, jwks(t, "k1", &k.ec256.PublicKey))
	v, err := NewVerifier(VerifierConfig{JWKSURL: srv.URL, Now: clk.Now, JWKSRefresh: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	body := jwks(t, "k1", &k.ec256.PublicKey, "k2", &k.rsa.PublicKey)
	srv.body.Store(&body)
	clk.Advance(11 * time.Minute)
	claims := baseClaims(clk.Now())
	// A verification after the refresh period starts a background fetch.
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodES256, k.ec256, claims, map[string]any{"kid": "k1"})); err != nil {
		t.Fatal(err)
	}
	_ = v.Close() // waits for the background fetch
	if got := srv.count.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2", got)
	}
	if !contains(v.Algorithms(), "RS256") {
		t.Fatalf("refreshed set lacks RS256: %v", v.Algorithms())
	}
}

func TestVerifierJWKSFileAndReload(t *testing.T) {
	k := keys(t)
	path := writeFile(t, "jwks.json", jwks(t, "k1", &k.rsa.PublicKey))
	v, err := NewVerifier(VerifierConfig{JWKSFile: path})
	if err != nil {
		t.Fatal(err)
	}
	claims := baseClaims(time.Now())
	tok1 := sign(t, jwt.SigningMethodRS256, k.rsa, claims, map[string]any{"kid": "k1"})
	tok2 := sign(t, jwt.SigningMethodEdDSA, k.ed, claims, map[string]any{"kid": "k2"})
	if _, err := v.Verify(context.Background(), tok1); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), tok2); !errors.Is(err, ErrTokenUnauthenticatedKind()) {
		t.Fatalf("tok2 before reload: %v", err)
	}
	// A broken file keeps the old keys.
	if err := os.WriteFile(path, []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.Reload(context.Background()); err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	if _, err := v.Verify(context.Background(), tok1); err != nil {
		t.Fatalf("old keys lost after failed reload: %v", err)
	}
	// A good file replaces them.
	if err := os.WriteFile(path, jwks(t, "k2", k.ed.Public()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), tok2); err != nil {
		t.Fatalf("tok2 after reload: %v", err)
	}
	if _, err := v.Verify(context.Background(), tok1); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("tok1 after reload: %v", err)
	}
}

// ErrTokenUnauthenticatedKind exists so the table above reads naturally.
func ErrTokenUnauthenticatedKind() error { return ErrUnauthenticated }

func TestParseBearer(t *testing.T) {
	tests := []struct {
		name, header, want string
		err                error
	}{
		{"ok", "Bearer abc.def.ghi", "abc.def.ghi", nil},
		{"lower case", "bearer abc", "abc", nil},
		{"empty", "", "", ErrTokenMissing},
		{"scheme only", "Bearer ", "", ErrTokenMissing},
		{"basic", "Basic dXNlcjpwYXNz", "", ErrTokenInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBearer(tc.header)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseBearer = %q, %v", got, err)
			}
		})
	}
}

func TestMintVerifyRoundTrip(t *testing.T) {
	tok, err := Mint(testSecret, MintOptions{
		Subject: "u9", Teams: []string{"a", "b"}, Roles: []string{"admin"},
		Scopes: []string{"events:publish", "connections:read"}, Name: "Grace", TTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(VerifierConfig{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "u9" || !p.InTeam("b") || !p.HasRole("admin") || !HasScope(p, "connections:read") || p.Name != "Grace" {
		t.Fatalf("principal = %+v", p)
	}
	if p.ExpiresAt.IsZero() {
		t.Fatal("ExpiresAt not set")
	}
	if _, err := Mint(testSecret, MintOptions{Subject: "x"}); err == nil {
		t.Fatal("Mint without TTL succeeded")
	}
	if _, err := Mint(testSecret, MintOptions{Subject: "x", TTL: time.Hour, Algorithm: "RS256"}); err == nil {
		t.Fatal("Mint RS256 succeeded")
	}
}

func TestCustomClaimNames(t *testing.T) {
	names := ClaimNames{UserID: "uid", Teams: "groups", Roles: "realm_roles", Name: "preferred_username", Scope: "scp"}
	tok, err := Mint(testSecret, MintOptions{Subject: "42", Teams: []string{"g1"}, Roles: []string{"admin"}, Name: "n", Scopes: []string{"s"}, TTL: time.Hour, Claims: names})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(VerifierConfig{Secret: testSecret, Claims: names})
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "42" || !p.InTeam("g1") || !p.HasRole("admin") || p.Name != "n" || !p.HasScope("s") {
		t.Fatalf("principal = %+v", p)
	}
}

func TestRequireScope(t *testing.T) {
	p := &Principal{Scopes: []string{"events:publish"}}
	if err := requireScope(p, "events:publish"); err != nil {
		t.Fatal(err)
	}
	if err := requireScope(p, "connections:write"); !errors.Is(err, ErrScopeMissing) || !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("err = %v", err)
	}
	if err := requireScope(nil, "events:publish"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("nil principal: %v", err)
	}
	if HasScope(nil, "x") {
		t.Fatal("nil principal has a scope")
	}
}

func TestVerifierCacheHonoursExpiry(t *testing.T) {
	clk := newClock()
	v, err := NewVerifier(VerifierConfig{Secret: testSecret, Now: clk.Now, Leeway: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwt.SigningMethodHS256, testSecret, with(baseClaims(clk.Now()), "exp", clk.Now().Add(time.Minute).Unix()), nil)
	for i := 0; i < 3; i++ { // first verifies, then cache hits
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Minute + 4*time.Second) // inside leeway
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("inside leeway: %v", err)
	}
	clk.Advance(2 * time.Second)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("cached token past exp: %v, want ErrTokenExpired", err)
	}
	// A tampered copy never hits the cache entry of the original.
	if _, err := v.Verify(context.Background(), tamper(t, tok, "sub", "someone-else")); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("tampered: %v", err)
	}
}

func TestVerifierCacheEviction(t *testing.T) {
	v, err := NewVerifier(VerifierConfig{Secret: testSecret, CacheSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		tok, err := Mint(testSecret, MintOptions{Subject: "u" + string(rune('0'+i)), TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		p, err := v.Verify(context.Background(), tok)
		if err != nil || p.Subject != "u"+string(rune('0'+i)) {
			t.Fatalf("verify %d: %v %v", i, p, err)
		}
	}
	if n := len(v.current.Load().cache.entries); n > 2 {
		t.Fatalf("cache holds %d entries, max 2", n)
	}
}

func selfSignedCertPEM(t testing.TB, priv crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "idp.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestVerifierKeyFormats(t *testing.T) {
	k := keys(t)
	claims := baseClaims(time.Now())
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})

	t.Run("certificate", func(t *testing.T) {
		v, err := NewVerifier(VerifierConfig{PublicKeyFile: writeFile(t, "cert.pem", selfSignedCertPEM(t, k.ec256))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodES256, k.ec256, claims, nil)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("PKCS#1 RSA public key", func(t *testing.T) {
		v, err := NewVerifier(VerifierConfig{PublicKeyFile: writeFile(t, "pkcs1.pem", pkcs1)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, k.rsa, claims, nil)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("weak RSA refused", func(t *testing.T) {
		if _, err := NewVerifier(VerifierConfig{PublicKeyFile: writeFile(t, "weak.pem", pemPublic(t, &weak.PublicKey))}); err == nil {
			t.Fatal("1024-bit RSA key accepted")
		}
	})
	t.Run("JWK alg pins the algorithm", func(t *testing.T) {
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{KeyID: "k1", Key: &k.rsa.PublicKey, Algorithm: "PS256", Use: "sig"}}}
		b, _ := json.Marshal(set)
		v, err := NewVerifier(VerifierConfig{JWKSFile: writeFile(t, "pinned.json", b)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodPS256, k.rsa, claims, map[string]any{"kid": "k1"})); err != nil {
			t.Fatalf("PS256: %v", err)
		}
		if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, k.rsa, claims, map[string]any{"kid": "k1"})); !errors.Is(err, ErrTokenAlgorithm) {
			t.Fatalf("RS256 against a PS256 key: %v, want ErrTokenAlgorithm", err)
		}
	})
	t.Run("JWKS skips odd keys but keeps good ones", func(t *testing.T) {
		good := jwks(t, "k1", &k.ec256.PublicKey)
		doc := `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"},{"kty":"weird","kid":"w"},` + string(good[len(`{"keys":[`):])
		v, err := NewVerifier(VerifierConfig{JWKSFile: writeFile(t, "mixed.json", []byte(doc)), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodES256, k.ec256, claims, map[string]any{"kid": "k1"})); err != nil {
			t.Fatal(err)
		}
		// The symmetric key "s" must not verify an HS256 token.
		if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, []byte("secret"), claims, map[string]any{"kid": "s"})); !errors.Is(err, ErrTokenAlgorithm) {
			t.Fatalf("HS256 with JWKS oct key: %v", err)
		}
	})
}

func TestVerifierJWKSRefreshFailureKeepsKeysAndBacksOff(t *testing.T) {
	k := keys(t)
	clk := newClock()
	var failing atomic.Bool
	var count atomic.Int32
	body := jwks(t, "k1", &k.ec256.PublicKey)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		if failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	v, err := NewVerifier(VerifierConfig{JWKSURL: srv.URL, Now: clk.Now, JWKSRefresh: 10 * time.Minute, Logger: slog.New(slog.DiscardHandler), CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	clk.Advance(11 * time.Minute)
	tok := sign(t, jwt.SigningMethodES256, k.ec256, baseClaims(clk.Now()), map[string]any{"kid": "k1"})
	for i := 0; i < 50; i++ {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("verify during IdP outage: %v", err)
		}
	}
	_ = v.Close()
	if got := count.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2 (initial + one failed refresh)", got)
	}
}

// TestVerifierJWKSRotation: after the refresh period the URL's new set (k1
// revoked, k2 added), decoded by jwkset like the file, replaces the old one.
// Whichever runs first, the background refresh or the unknown-kid refetch,
// fetches; the other finds the set fresh.
func TestVerifierJWKSRotation(t *testing.T) {
	k := keys(t)
	clk := newClock()
	srv := newJWKSServer(t, jwks(t, "k1", &k.rsa.PublicKey))
	v, err := NewVerifier(VerifierConfig{JWKSURL: srv.URL, Now: clk.Now, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = v.Close() }()
	ctx := context.Background()
	if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodRS256, k.rsa, baseClaims(clk.Now()), map[string]any{"kid": "k1"})); err != nil {
		t.Fatalf("k1: %v", err)
	}
	body := jwks(t, "k2", &k.rsa2.PublicKey)
	srv.body.Store(&body)
	clk.Advance(11 * time.Minute)
	claims := baseClaims(clk.Now())
	if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodRS256, k.rsa2, claims, map[string]any{"kid": "k2"})); err != nil {
		t.Fatalf("k2 after rotation: %v", err)
	}
	_ = v.Close() // waits for a background fetch
	if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodRS256, k.rsa, claims, map[string]any{"kid": "k1"})); !errors.Is(err, ErrTokenUnknownKey) {
		t.Fatalf("revoked k1: %v, want ErrTokenUnknownKey", err)
	}
	if got := srv.count.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2", got)
	}
}
