package authz

import (
	"context"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
)

// ClaimNames says which JWT claims carry the identity, so tokens from other
// identity providers work. Empty fields take the defaults of DefaultClaimNames.
type ClaimNames struct {
	UserID string `yaml:"userId"` // default "sub"
	Teams  string `yaml:"teams"`  // default "teams"; array of strings, or one string split on spaces/commas
	Roles  string `yaml:"roles"`  // default "roles"; same shapes as Teams
	Name   string `yaml:"name"`   // default "name"; default presence/user info
	Scope  string `yaml:"scope"`  // default "scope"; one space-separated string (RFC 8693 / OAuth), nothing else
}

// DefaultClaimNames are the claim names of DESIGN.md §2.
var DefaultClaimNames = ClaimNames{UserID: "sub", Teams: "teams", Roles: "roles", Name: "name", Scope: "scope"}

func (c ClaimNames) withDefaults() ClaimNames {
	d := DefaultClaimNames
	if c.UserID != "" {
		d.UserID = c.UserID
	}
	if c.Teams != "" {
		d.Teams = c.Teams
	}
	if c.Roles != "" {
		d.Roles = c.Roles
	}
	if c.Name != "" {
		d.Name = c.Name
	}
	if c.Scope != "" {
		d.Scope = c.Scope
	}
	return d
}

// Principal is who a verified token speaks for. It is immutable once made;
// share it freely between goroutines.
type Principal struct {
	Subject   string    // user id (or service client id)
	Teams     []string  // team ids
	Roles     []string  // role names
	Name      string    // display name, default presence info
	Scopes    []string  // service scopes
	ExpiresAt time.Time // zero only for principals built by hand
	// Claims holds every claim with JSON numbers normalised (integers as
	// int64, others float64), arrays as []any and objects as map[string]any.
	// Read only.
	Claims map[string]any

	cel *celPrincipal // CEL view, built once per principal (see cel.go)
}

// HasScope reports whether the principal carries scope s. Nil-safe.
func (p *Principal) HasScope(s string) bool {
	return p != nil && contains(p.Scopes, s)
}

// HasRole reports whether the principal has role r. Nil-safe.
func (p *Principal) HasRole(r string) bool {
	return p != nil && contains(p.Roles, r)
}

// InTeam reports whether the principal is a member of team t. Nil-safe.
func (p *Principal) InTeam(t string) bool {
	return p != nil && contains(p.Teams, t)
}

// HasScope reports whether p carries scope; false for a nil principal, so a
// missing principal never passes a scope check.
func HasScope(p *Principal, scope string) bool { return p.HasScope(scope) }

// requireScope returns nil when p carries scope, ErrTokenMissing when p is nil
// and a *DeniedError (ErrScopeMissing) otherwise.
func requireScope(p *Principal, scope string) error {
	if p == nil {
		return &TokenError{Kind: ErrTokenMissing}
	}
	if p.HasScope(scope) {
		return nil
	}
	return &DeniedError{Kind: ErrScopeMissing, Reason: "token lacks scope " + scope}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal stored by NewContext, or nil.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// NewPrincipal builds a principal from a claims map as a verified token would
// carry it (the verifier calls this after checking the signature). Claims are
// normalised in place.
func NewPrincipal(claims map[string]any, names ClaimNames) *Principal {
	names = names.withDefaults()
	for k, v := range claims {
		claims[k] = normalise(v)
	}
	p := &Principal{
		Subject: claimString(claims[names.UserID]),
		Teams:   claimList(claims[names.Teams]),
		Roles:   claimList(claims[names.Roles]),
		Name:    claimString(claims[names.Name]),
		Scopes:  scopeList(claims[names.Scope]),
		Claims:  claims,
	}
	switch exp := claims["exp"].(type) {
	case int64:
		p.ExpiresAt = time.Unix(exp, 0)
	case float64:
		sec, frac := math.Modf(exp)
		p.ExpiresAt = time.Unix(int64(sec), int64(frac*1e9))
	}
	p.cel = newCELPrincipal(p)
	return p
}

// normalise turns decoded JSON (with json.Number) into the plain types CEL
// and callers expect.
func normalise(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case float64:
		if t == math.Trunc(t) && math.Abs(t) < 1<<53 {
			return int64(t)
		}
		return t
	case []any:
		for i := range t {
			t[i] = normalise(t[i])
		}
		return t
	case []string:
		out := make([]any, len(t))
		for i, s := range t {
			out[i] = s
		}
		return out
	case map[string]any:
		for k := range t {
			t[k] = normalise(t[k])
		}
		return t
	default:
		return v
	}
}

// claimString accepts strings and numbers (some providers use numeric ids).
func claimString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case int64:
		return strconv.FormatInt(t, 10)
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	}
	return ""
}

// scopeList reads the OAuth scope claim: one string of scopes separated by
// spaces (RFC 8693 §4.2, RFC 6749 §3.3). Other shapes (arrays, numbers)
// carry no scope, and a comma is part of a scope name, so "a,events:publish"
// is one unknown scope rather than two.
func scopeList(v any) []string {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' })
}

// claimList accepts an array of strings/numbers or one string of items
// separated by spaces or commas (teams and roles).
func claimList(v any) []string {
	switch t := v.(type) {
	case string:
		return strings.FieldsFunc(t, func(r rune) bool { return r == ' ' || r == ',' })
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			if s := claimString(e); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
