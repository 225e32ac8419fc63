package authz

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

// FuzzParseBearer: an accepted Authorization value is "Bearer" (any case), a space and
// a token; the token is non-empty, trimmed, part of the header, and parses back to
// itself. Anything else is ErrTokenMissing or ErrTokenInvalid.
//
//	go test -fuzz=FuzzParseBearer ./authz
func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc.def.ghi", "bearer abc", "", "Bearer ", "Basic dXNlcjpwYXNz", " BEARER  x \t", "Bearer\tx", "Bearer a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, err := ParseBearer(header)
		if err != nil {
			if tok != "" || !errors.Is(err, ErrTokenMissing) && !errors.Is(err, ErrTokenInvalid) {
				t.Fatalf("%q: %q, %v", header, tok, err)
			}
			return
		}
		if tok == "" || tok != strings.TrimSpace(tok) || !strings.Contains(header, tok) {
			t.Fatalf("%q gave token %q", header, tok)
		}
		if scheme, _, _ := strings.Cut(strings.TrimSpace(header), " "); !strings.EqualFold(scheme, "Bearer") {
			t.Fatalf("%q accepted with scheme %q", header, scheme)
		}
		if again, err := ParseBearer("Bearer " + tok); err != nil || again != tok {
			t.Fatalf("round trip of %q: %q %v", tok, again, err)
		}
	})
}

// FuzzParsePEMKeys: a PEM bundle with a private key is always refused; an accepted one
// gives one supported public key per public key or certificate block (RSA of at least
// minRSABits, P-256/384/521, Ed25519), each of which survives re-encoding.
//
//	go test -fuzz=FuzzParsePEMKeys ./authz
func FuzzParsePEMKeys(f *testing.F) {
	k := keys(f)
	f.Add(pemPublic(f, &k.rsa.PublicKey))
	f.Add(append(append(pemPublic(f, &k.rsa.PublicKey), pemPublic(f, &k.ec256.PublicKey)...), pemPublic(f, k.ed.Public())...))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)}))
	f.Add(selfSignedCertPEM(f, k.ec384))
	if der, err := x509.MarshalPKCS8PrivateKey(k.ec256); err == nil {
		f.Add(append(pemPublic(f, &k.ec256.PublicKey), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...))
	}
	f.Add([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"))
	f.Add([]byte("hello"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parsePEMKeys(data, "fuzz")
		var private bool
		var blocks int
		for rest := data; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			switch {
			case strings.Contains(b.Type, "PRIVATE KEY"):
				private = true
			case b.Type == "PUBLIC KEY", b.Type == "RSA PUBLIC KEY", b.Type == "CERTIFICATE":
				blocks++
			}
		}
		if err != nil {
			if got != nil {
				t.Fatalf("keys %v with error %v", got, err)
			}
			return
		}
		if private {
			t.Fatal("accepted a bundle holding a private key")
		}
		if len(got) == 0 || len(got) != blocks {
			t.Fatalf("%d keys from %d key blocks", len(got), blocks)
		}
		for _, vk := range got {
			if vk.source != "fuzz" {
				t.Fatalf("source %q", vk.source)
			}
			switch key := vk.key.(type) {
			case *rsa.PublicKey:
				if key.N.BitLen() < minRSABits {
					t.Fatalf("accepted a %d-bit RSA key", key.N.BitLen())
				}
			case *ecdsa.PublicKey:
				if key.Curve != elliptic.P256() && key.Curve != elliptic.P384() && key.Curve != elliptic.P521() {
					t.Fatalf("accepted curve %v", key.Curve.Params().Name)
				}
			case ed25519.PublicKey:
				if len(key) != ed25519.PublicKeySize {
					t.Fatalf("Ed25519 key of %d bytes", len(key))
				}
			default:
				t.Fatalf("accepted key type %T", vk.key)
			}
			der, err := x509.MarshalPKIXPublicKey(vk.key)
			if err != nil {
				t.Fatalf("accepted key does not re-encode: %v", err)
			}
			again, err := parsePEMKeys(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), "again")
			if err != nil || len(again) != 1 || !again[0].key.(interface{ Equal(crypto.PublicKey) bool }).Equal(vk.key) {
				t.Fatalf("re-encoded key: %v %v", again, err)
			}
		}
	})
}
