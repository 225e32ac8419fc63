package authz

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// FuzzVerify: arbitrary token strings never panic the verifier, and nothing
// derived from the seed token verifies with different claims.
func FuzzVerify(f *testing.F) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tok, err := Mint(testSecret, MintOptions{Subject: "u1", Teams: []string{"t"}, TTL: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	v, err := NewVerifier(VerifierConfig{Secret: testSecret, Now: func() time.Time { return now }, CacheSize: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := v.Verify(context.Background(), s)
		if err != nil {
			return
		}
		if p.Subject != "u1" || len(p.Teams) != 1 || p.Teams[0] != "t" {
			t.Fatalf("forged token verified: %+v", p)
		}
	})
}

// FuzzParseRules: any YAML either fails to load with an error or yields a
// rule set whose decisions do not panic.
func FuzzParseRules(f *testing.F) {
	f.Add([]byte(testRulesYAML))
	f.Add([]byte("rules:\n  - name: a\n    pattern: private-{x}-*\n    expression: segments.x == 'y'\n"))
	f.Add([]byte("builtins: false\n"))
	p := testPrincipal(map[string]any{"sub": "u1", "teams": []any{"t1"}, "roles": []any{"admin"}})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseRules(data)
		if err != nil {
			return
		}
		r, err := NewRules(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			return
		}
		for _, ch := range []string{"private-user-u1", "presence-team-t1", "private-a-b", "private-vip-gold"} {
			r.decideRules(p, ch, []byte(`{"color":"blue"}`), nil)
		}
	})
}

// FuzzParseJWKS: key set documents never panic the parser.
func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"k"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, _, err := parseJWKS(data, "fuzz")
		if err == nil && len(keys) == 0 {
			t.Fatal("no error and no keys")
		}
		for _, k := range keys {
			if _, sym := k.key.([]byte); sym {
				t.Fatal("symmetric key accepted from a JWKS")
			}
		}
	})
}
