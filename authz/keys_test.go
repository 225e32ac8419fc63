package authz

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// TestParseJWKS covers what jwkset decodes for us and the policy we keep on
// top: each odd key is skipped with a reason while the good key survives.
func TestParseJWKS(t *testing.T) {
	k := keys(t)
	good := jose.JSONWebKey{KeyID: "k1", Key: &k.ec256.PublicKey, Use: "sig"}
	goodJSON, err := good.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	x25519 := base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	tests := []struct {
		name string
		odd  string
	}{
		{"malformed modulus", `{"kty":"RSA","kid":"bad","n":"!!","e":"AQAB"}`},
		{"missing parameters", `{"kty":"EC","kid":"bad","crv":"P-256"}`},
		{"unknown kty", `{"kty":"weird","kid":"w"}`},
		{"kid of the wrong type", `{"kty":"EC","kid":5}`},
		{"encryption key", `{"kty":"OKP","crv":"Ed25519","use":"enc","kid":"e","x":"` + x25519 + `"}`},
		{"X25519", `{"kty":"OKP","crv":"X25519","kid":"x","x":"` + x25519 + `"}`},
		{"symmetric", `{"kty":"oct","k":"c2VjcmV0","kid":"s"}`},
		{"alg does not fit", `{"kty":"OKP","crv":"Ed25519","alg":"RS256","kid":"a","x":"` + x25519 + `"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := `{"keys":[` + tc.odd + `,` + string(goodJSON) + `]}`
			got, skipped, err := parseJWKS([]byte(doc), "test")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].kid != "k1" || len(skipped) != 1 {
				t.Fatalf("keys %v, skipped %q; want k1 kept and one key skipped", got, skipped)
			}
		})
	}

	t.Run("private JWK keeps only the public half", func(t *testing.T) {
		priv, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{KeyID: "p", Key: k.rsa, Use: "sig"}}})
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := parseJWKS(priv, "test")
		if err != nil {
			t.Fatal(err)
		}
		pub, ok := got[0].key.(*rsa.PublicKey)
		if !ok || !pub.Equal(&k.rsa.PublicKey) {
			t.Fatalf("key %T, want the RSA public key", got[0].key)
		}
	})
	t.Run("no usable key", func(t *testing.T) {
		if _, _, err := parseJWKS([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`), "test"); err == nil {
			t.Fatal("a set of only a symmetric key parsed")
		}
	})
}
