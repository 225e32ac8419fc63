package authz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestRulesLoadErrors(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		mentions string // the rule the error must name
	}{
		{"bad expression syntax", "rules:\n  - name: broken-cel\n    pattern: private-x-*\n    expression: 'claims.sub =='\n", "broken-cel"},
		{"expression not bool", "rules:\n  - name: not-bool\n    pattern: private-x-*\n    expression: 'channel + \"x\"'\n", "not-bool"},
		{"unknown variable", "rules:\n  - name: unknown-var\n    pattern: private-x-*\n    expression: 'token.sub == \"x\"'\n", "unknown-var"},
		{"bad pattern", "rules:\n  - name: bad-pattern\n    pattern: 'private-{a}{b}'\n", "bad-pattern"},
		{"unknown team capture", "rules:\n  - name: no-capture\n    pattern: private-team-*\n    requiredTeamMembership: true\n", "no-capture"},
		{"unknown user capture", "rules:\n  - name: no-user\n    pattern: private-u-{id}\n    requiredUserId: userId\n", "no-user"},
		{"bad roles mode", "rules:\n  - name: bad-mode\n    pattern: private-x-*\n    requiredRoles: [a]\n    requiredRolesMode: some\n", "bad-mode"},
		{"bad permission", "rules:\n  - name: bad-perm\n    pattern: private-x-*\n    permissions: ['Subscribe Now']\n", "bad-perm"},
		{"duplicate name", "rules:\n  - name: dup\n    pattern: private-x-*\n  - name: dup\n    pattern: private-y-*\n", "dup"},
		{"missing name", "rules:\n  - pattern: private-x-*\n", "#1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseRules([]byte(tc.yaml))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			_, err = NewRules(cfg, nil)
			if err == nil {
				t.Fatal("NewRules succeeded, want error")
			}
			if !strings.Contains(err.Error(), tc.mentions) {
				t.Fatalf("error %q does not name %q", err, tc.mentions)
			}
		})
	}
}

func TestParseRulesUnknownKey(t *testing.T) {
	_, err := parseRules([]byte("rules:\n  - name: x\n    pattern: private-x\n    requiredRole: admin\n"))
	if err == nil || !strings.Contains(err.Error(), "requiredRole") {
		t.Fatalf("err = %v, want one naming requiredRole", err)
	}
	cfg, err := parseRules(nil)
	if err != nil || len(cfg.Rules) != 0 {
		t.Fatalf("empty document: %+v, %v", cfg, err)
	}
}

func TestBuiltinsReplaceAndDisable(t *testing.T) {
	off := false
	tests := []struct {
		name string
		cfg  RulesConfig
		want []string
	}{
		{"defaults", RulesConfig{}, []string{"user-channel", "team-channel", "team-presence", "admin-channel"}},
		{"configured first", RulesConfig{Rules: []Rule{{Name: "mine", Pattern: "private-mine"}}}, []string{"mine", "user-channel", "team-channel", "team-presence", "admin-channel"}},
		{"replace by name", RulesConfig{Rules: []Rule{{Name: "admin-channel", Pattern: "private-admin-*", RequiredRoles: []string{"root"}}}}, []string{"admin-channel", "user-channel", "team-channel", "team-presence"}},
		{"disabled", RulesConfig{Builtins: &off, Rules: []Rule{{Name: "mine", Pattern: "private-mine"}}}, []string{"mine"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRules(tc.cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Names(); !slices.Equal(got, tc.want) {
				t.Fatalf("rules = %q, want %q", got, tc.want)
			}
		})
	}
	// The replaced admin rule is the one in force.
	r, _ := NewRules(tests[2].cfg, nil)
	admin := testPrincipal(map[string]any{"sub": "a", "roles": []any{"admin"}})
	if d := r.decideRules(admin, "private-admin-x", nil, nil); d.Allowed || d.Rule != "admin-channel" || d.Reason != ReasonMissingRole {
		t.Fatalf("decision = %+v", d)
	}
}

func TestRulesReloadKeepsOldOnError(t *testing.T) {
	r, err := NewRules(RulesConfig{Rules: []Rule{{Name: "one", Pattern: "private-one"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := RulesConfig{Rules: []Rule{{Name: "two", Pattern: "private-two", Expression: "nope("}}}
	if err := r.Load(bad); err == nil {
		t.Fatal("bad set loaded")
	}
	if r.Names()[0] != "one" {
		t.Fatalf("rules after failed load = %q", r.Names())
	}
	if err := r.Load(RulesConfig{Rules: []Rule{{Name: "two", Pattern: "private-two"}}}); err != nil {
		t.Fatal(err)
	}
	if r.Names()[0] != "two" {
		t.Fatalf("rules after load = %q", r.Names())
	}
}

func TestRulesReloadConcurrentWithDecisions(t *testing.T) {
	// Decisions during reloads always see one whole set (run with -race).
	r, err := NewRules(RulesConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := testPrincipal(map[string]any{"sub": "u1"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bad atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if d := r.decideRules(p, "private-user-u1", nil, nil); !d.Allowed {
				bad.Add(1)
			}
		}
	}()
	for i := 0; i < 50; i++ {
		cfg := RulesConfig{Rules: []Rule{{Name: "extra", Pattern: "private-extra-*"}}}
		if i%2 == 0 {
			cfg = RulesConfig{}
		}
		if err := r.Load(cfg); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-done
	if bad.Load() != 0 {
		t.Fatalf("%d decisions went wrong during reloads", bad.Load())
	}
}

func TestYAMLBoolCaptureFields(t *testing.T) {
	cfg, err := parseRules([]byte("builtins: false\nrules:\n  - name: t\n    pattern: private-t-{teamId}\n    requiredTeamMembership: true\n  - name: u\n    pattern: private-u-{userId}\n    requiredUserId: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRules(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := testPrincipal(map[string]any{"sub": "u1", "teams": []any{"x"}})
	if d := r.decideRules(p, "private-t-x", nil, nil); !d.Allowed {
		t.Errorf("team x: %+v", d)
	}
	if d := r.decideRules(p, "private-t-y", nil, nil); d.Allowed {
		t.Errorf("team y allowed")
	}
	if d := r.decideRules(p, "private-u-u1", nil, nil); !d.Allowed {
		t.Errorf("own user: %+v", d)
	}
	if d := r.decideRules(p, "private-u-u2", nil, nil); d.Allowed {
		t.Errorf("other user allowed")
	}
}

func TestCheckExplains(t *testing.T) {
	a := newTestAuthorizer(t, nil, nil)
	v, err := NewVerifier(VerifierConfig{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Mint(testSecret, MintOptions{Subject: "u1", Teams: []string{"t1"}, Name: "Ada", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		token   string
		channel string
		allowed bool
		rule    string
		errKind error
	}{
		{"allowed", tok, "presence-team-t1", true, "team-presence", nil},
		{"denied by rule", tok, "private-team-t9", false, "team-channel", ErrRuleDenied},
		{"default deny", tok, "private-nothing", false, "", ErrRuleDenied},
		{"public", "", "lobby", true, "", nil},
		{"no token", "", "private-team-t1", false, "", ErrTokenMissing},
		{"bad token", tok + "x", "private-team-t1", false, "", ErrUnauthenticated},
		{"encrypted without key", tok, "private-encrypted-team-t1", false, "", ErrEncryptionUnavailable},
		{"invalid channel", tok, "bad channel", false, "", ErrInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := a.Check(context.Background(), v, tc.token, tc.channel, nil)
			if e.Allowed != tc.allowed || e.Rule != tc.rule {
				t.Fatalf("explanation = %+v", e)
			}
			if tc.errKind != nil && !errors.Is(e.Err, tc.errKind) {
				t.Fatalf("err = %v, want %v", e.Err, tc.errKind)
			}
			s := e.String()
			if s == "" || strings.Contains(s, tc.token) && tc.token != "" {
				t.Fatalf("output empty or leaks the token: %q", s)
			}
			if e.Reason == "" {
				t.Fatal("no reason given")
			}
		})
	}
}

func TestDecideRules(t *testing.T) {
	r, err := NewRules(RulesConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := testPrincipal(map[string]any{"sub": "u1", "teams": []any{"t1"}})
	tests := []struct {
		name    string
		p       *Principal
		channel string
		allowed bool
		rule    string
		reason  string
	}{
		{"allowed", p, "private-team-t1", true, "team-channel", ReasonAllowed},
		{"denied", p, "private-team-t2", false, "team-channel", ReasonNotTeamMember},
		{"encrypted twin allowed", p, "private-encrypted-team-t1", true, "team-channel", ReasonAllowed},
		{"encrypted twin denied", p, "private-encrypted-team-t2", false, "team-channel", ReasonNotTeamMember},
		{"encrypted user twin", p, "private-encrypted-user-u1", true, "user-channel", ReasonAllowed},
		{"no twin for presence", p, "private-encrypted-presence-team-t1", false, "", ReasonNoRule},
		{"no rule", p, "private-nobody", false, "", ReasonNoRule},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := r.decideRules(tc.p, tc.channel, nil, nil)
			if d.Allowed != tc.allowed || d.Rule != tc.rule || d.Reason != tc.reason {
				t.Fatalf("decideRules = %+v", d)
			}
			if d.Allowed && !contains(d.Permissions, PermSubscribe) {
				t.Fatalf("permissions = %q", d.Permissions)
			}
		})
	}
}

func TestExampleRulesFile(t *testing.T) {
	r, err := NewRules(RulesConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("testdata/rules.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseRules(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Load(cfg); err != nil {
		t.Fatal(err)
	}
	p := testPrincipal(map[string]any{"sub": "u1", "teams": []any{"t1"}, "roles": []any{"staff"}, "plan": "pro"})
	tests := []struct {
		channel string
		allowed bool
		rule    string
	}{
		{"presence-team-t1-chat", true, "team-chat"},
		{"presence-team-t2-chat", false, "team-chat"},
		{"private-encrypted-user-u1", true, "user-inbox"},
		{"private-challenge-c9-team-t7", true, "challenge"},
		{"private-ops-db", false, "ops"},
		{"private-premium-tips", true, "premium"},
		{"private-team-t1", true, "team-channel"},
	}
	for _, tc := range tests {
		if d := r.decideRules(p, tc.channel, nil, nil); d.Allowed != tc.allowed || d.Rule != tc.rule {
			t.Errorf("%s: %+v, want allowed=%v rule=%s", tc.channel, d, tc.allowed, tc.rule)
		}
	}
}

// parseRules decodes a YAML rules document (the RulesConfig shape) as a
// config file's channelRules section would. Unknown keys are an error
// naming the key; an empty document means builtins only.
func parseRules(data []byte) (RulesConfig, error) {
	var cfg RulesConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return RulesConfig{}, fmt.Errorf("rules: %w", err)
	}
	return cfg, nil
}
