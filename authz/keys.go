package authz

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/MicahParks/jwkset"
)

// minRSABits is the smallest RSA modulus accepted for verification keys.
const minRSABits = 2048

// verifyKey is one verification key with where it came from. kid and alg are
// empty when the source does not say (PEM files, JWKs without "alg").
type verifyKey struct {
	kid    string
	alg    string
	key    any // []byte | *rsa.PublicKey | *ecdsa.PublicKey | ed25519.PublicKey
	source string
}

// algFamily groups algorithms by the key type they verify with. Checking the
// family in the key function is what defeats HS/RS key confusion: an HS*
// token is only ever checked against the configured secret, never against
// bytes of a public key.
func keyFitsAlg(k any, alg string) bool {
	switch alg {
	case "HS256", "HS384", "HS512":
		_, ok := k.([]byte)
		return ok
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		_, ok := k.(*rsa.PublicKey)
		return ok
	case "ES256", "ES384", "ES512":
		ek, ok := k.(*ecdsa.PublicKey)
		return ok && ek.Curve == curveFor(alg)
	case "EdDSA":
		_, ok := k.(ed25519.PublicKey)
		return ok
	}
	return false
}

func curveFor(alg string) elliptic.Curve {
	switch alg {
	case "ES256":
		return elliptic.P256()
	case "ES384":
		return elliptic.P384()
	case "ES512":
		return elliptic.P521()
	}
	return nil
}

// SupportedAlgorithms lists every algorithm the verifier can be configured
// with. "none" is not and never will be among them.
var SupportedAlgorithms = []string{
	"HS256", "HS384", "HS512",
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// defaultAlgs is what a key verifies when the configuration names no
// algorithms: HS256 for a secret (DESIGN.md §2), every RSA algorithm for RSA
// keys, the curve's algorithm for EC keys, EdDSA for Ed25519.
func defaultAlgs(k verifyKey) []string {
	if k.alg != "" {
		return []string{k.alg}
	}
	switch key := k.key.(type) {
	case []byte:
		return []string{"HS256"}
	case *rsa.PublicKey:
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		switch key.Curve {
		case elliptic.P256():
			return []string{"ES256"}
		case elliptic.P384():
			return []string{"ES384"}
		case elliptic.P521():
			return []string{"ES512"}
		}
	case ed25519.PublicKey:
		return []string{"EdDSA"}
	}
	return nil
}

// checkPublicKey accepts the key types the verifier supports.
func checkPublicKey(k any) (any, error) {
	switch key := k.(type) {
	case *rsa.PublicKey:
		if key.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is too small (minimum %d)", key.N.BitLen(), minRSABits)
		}
		return key, nil
	case *ecdsa.PublicKey:
		switch key.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return key, nil
		}
		return nil, errors.New("unsupported EC curve")
	case ed25519.PublicKey:
		return key, nil
	case *ed25519.PublicKey:
		return *key, nil
	}
	return nil, fmt.Errorf("unsupported public key type %T", k)
}

// parsePEMKeys reads every public key or certificate in a PEM bundle.
// Private keys are refused: a verifier must never be handed signing keys.
func parsePEMKeys(data []byte, source string) ([]verifyKey, error) {
	var keys []verifyKey
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var pub any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			cert, err = x509.ParseCertificate(block.Bytes)
			if err == nil {
				pub = cert.PublicKey
			}
		default:
			if strings.Contains(block.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("%s: contains a private key; give the verifier public keys or certificates only", source)
			}
			continue // e.g. EC PARAMETERS
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s block: %w", source, block.Type, err)
		}
		pub, err = checkPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		keys = append(keys, verifyKey{key: pub, source: source})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no PEM public key or certificate found", source)
	}
	return keys, nil
}

// parseJWKS reads a JSON Web Key Set. jwkset decodes and validates each JWK;
// which keys a verifier may trust stays ours. Keys that cannot be used
// (symmetric "oct" keys, unknown types, malformed or encryption-only keys,
// weak RSA) are skipped and reported in skipped, so one odd key does not take
// the whole set down. A set with no usable key is an error.
func parseJWKS(data []byte, source string) (keys []verifyKey, skipped []string, err error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, nil, fmt.Errorf("%s: not a JWKS document: %w", source, err)
	}
	for i, rk := range raw.Keys {
		var m jwkset.JWKMarshal
		if err := json.Unmarshal(rk, &m); err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		if m.USE != "" && m.USE != jwkset.UseSig {
			skipped = append(skipped, fmt.Sprintf("key %q: use %q", m.KID, m.USE))
			continue
		}
		if m.KTY == jwkset.KtyOct {
			// A shared secret published in a key set would let anyone who can
			// read the set mint tokens; refuse rather than trust it.
			skipped = append(skipped, fmt.Sprintf("key %q: symmetric keys are not accepted from a JWKS", m.KID))
			continue
		}
		// Without the Private option jwkset reads only the public half of a
		// private JWK: a verifier never holds signing material.
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("key %q: %v", m.KID, err))
			continue
		}
		pub, err := checkPublicKey(jwk.Key())
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("key %q: %v", m.KID, err))
			continue
		}
		k := verifyKey{kid: m.KID, key: pub, source: source}
		if alg := string(m.ALG); alg != "" {
			if !keyFitsAlg(pub, alg) {
				skipped = append(skipped, fmt.Sprintf("key %q: alg %q does not fit the key", m.KID, alg))
				continue
			}
			k.alg = alg
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, skipped, fmt.Errorf("%s: no usable signing key in JWKS (%s)", source, strings.Join(skipped, "; "))
	}
	return keys, skipped, nil
}
