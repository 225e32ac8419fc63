package authz

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MintOptions describe a development token (`pushercm token`).
type MintOptions struct {
	Subject  string
	Teams    []string
	Roles    []string
	Scopes   []string // written as one space-separated "scope" claim
	Name     string
	TTL      time.Duration // required, > 0: exp is always set
	Issuer   string        // optional iss
	Audience []string      // optional aud
	// Algorithm is HS256 (default), HS384 or HS512.
	Algorithm string
	// Claims names the identity claims; zero fields take DefaultClaimNames.
	Claims ClaimNames
	// Extra claims, e.g. for CEL rules. They cannot override the ones above.
	Extra map[string]any
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Mint signs a token with secret. It only makes HMAC tokens: asymmetric
// signing keys never live in pushercm.
func Mint(secret []byte, o MintOptions) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("mint: secret is empty")
	}
	if o.TTL <= 0 {
		return "", errors.New("mint: ttl must be positive (tokens always expire)")
	}
	var method jwt.SigningMethod
	switch o.Algorithm {
	case "", "HS256":
		method = jwt.SigningMethodHS256
	case "HS384":
		method = jwt.SigningMethodHS384
	case "HS512":
		method = jwt.SigningMethodHS512
	default:
		return "", fmt.Errorf("mint: algorithm %q: only HS256, HS384 and HS512 can be minted", o.Algorithm)
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	names := o.Claims.withDefaults()
	t := now()
	claims := jwt.MapClaims{}
	for k, v := range o.Extra {
		claims[k] = v
	}
	claims["iat"] = t.Unix()
	claims["exp"] = t.Add(o.TTL).Unix()
	if o.Subject != "" {
		claims[names.UserID] = o.Subject
	}
	if len(o.Teams) > 0 {
		claims[names.Teams] = o.Teams
	}
	if len(o.Roles) > 0 {
		claims[names.Roles] = o.Roles
	}
	if o.Name != "" {
		claims[names.Name] = o.Name
	}
	if len(o.Scopes) > 0 {
		claims[names.Scope] = strings.Join(o.Scopes, " ")
	}
	if o.Issuer != "" {
		claims["iss"] = o.Issuer
	}
	switch len(o.Audience) {
	case 0:
	case 1:
		claims["aud"] = o.Audience[0]
	default:
		claims["aud"] = o.Audience
	}
	return jwt.NewWithClaims(method, claims).SignedString(secret)
}
