package authz

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// benchRules is a 50-rule set: 46 configured rules (a third with CEL) that
// the benchmarked channels do not match, one CEL rule that they do, then the
// 4 built-ins behind them. Every decision therefore walks ~47 patterns
// before evaluating CEL — close to the worst case for a first-match list.
func benchRules(tb testing.TB) *Rules {
	tb.Helper()
	var rules []Rule
	for i := 0; i < 46; i++ {
		r := Rule{Name: fmt.Sprintf("r%02d", i)}
		switch i % 3 {
		case 0:
			r.Pattern = fmt.Sprintf("private-area%02d-{teamId}", i)
			r.RequiredTeamMembership = "teamId"
		case 1:
			r.Pattern = fmt.Sprintf("presence-zone%02d-{id}-live", i)
			r.Expression = `segments.id in claims.projects && "editor" in roles`
		case 2:
			r.Pattern = fmt.Sprintf("private-x%02d-*", i)
			r.RequiredRoles = []string{"admin", "ops"}
		}
		rules = append(rules, r)
	}
	rules = append(rules, Rule{
		Name:                   "project",
		Pattern:                "private-project-{teamId}-{projectId}",
		RequiredTeamMembership: "teamId",
		Expression:             `segments.projectId in claims.projects && claims.tier == "gold"`,
		Permissions:            []string{PermSubscribe, PermClientEvents},
	}, Rule{
		Name:                   "project-presence",
		Pattern:                "presence-project-{teamId}-{projectId}",
		RequiredTeamMembership: "teamId",
		Expression:             `segments.projectId in claims.projects`,
	})
	r, err := NewRules(RulesConfig{Rules: rules}, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	if n := len(r.Names()); n != 52 {
		// 48 configured + 4 built-ins; the benchmarked channel is rule 47.
		tb.Fatalf("rule count %d", n)
	}
	return r
}

func benchPrincipal() *Principal {
	return NewPrincipal(map[string]any{
		"sub":      "user-1234",
		"name":     "Ada Lovelace",
		"teams":    []any{"t1", "t2", "t3"},
		"roles":    []any{"member", "editor"},
		"projects": []any{"p1", "p2", "p3", "p4"},
		"tier":     "gold",
		"exp":      time.Now().Add(time.Hour).Unix(),
	}, ClaimNames{})
}

// BenchmarkAuthorizeChannel measures AuthorizeChannel in process: channel
// and socket id validation, the rule walk (47 patterns), team membership,
// one CEL evaluation and the HMAC-SHA256 signature. The principal is
// verified once outside the loop (token verification is BenchmarkVerify).
func BenchmarkAuthorizeChannel(b *testing.B) {
	a, err := NewAuthorizer(AuthorizerConfig{AppKey: "app-key", AppSecret: "app-secret"}, benchRules(b))
	if err != nil {
		b.Fatal(err)
	}
	p := benchPrincipal()
	ctx := context.Background()
	cases := []struct {
		name string
		req  ChannelRequest
	}{
		{"private-CEL-rule47of52", ChannelRequest{SocketID: "123456.7890123", Channel: "private-project-t2-p3"}},
		{"private-builtin-rule50of52", ChannelRequest{SocketID: "123456.7890123", Channel: "private-team-t2"}},
		{"presence-CEL-rule48of52", ChannelRequest{SocketID: "123456.7890123", Channel: "presence-project-t2-p3"}},
		{"denied-default", ChannelRequest{SocketID: "123456.7890123", Channel: "private-nothing-here"}},
	}
	for _, tc := range cases {
		// Fail loudly if the case does not do what its name says.
		res, err := a.AuthorizeChannel(ctx, p, tc.req)
		if (err == nil) == (tc.name == "denied-default") || (err == nil && res.Auth == "") {
			b.Fatalf("%s: %+v %v", tc.name, res, err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = a.AuthorizeChannel(ctx, p, tc.req)
			}
		})
	}
}

// BenchmarkVerify measures HS256 verification plus principal construction
// (claims normalised and converted for CEL once per token): "uncached" is a
// token seen for the first time, "cached" a token presented again.
func BenchmarkVerify(b *testing.B) {
	tok, err := Mint(testSecret, MintOptions{Subject: "user-1234", Teams: []string{"t1", "t2"}, Roles: []string{"editor"}, Scopes: []string{"channels:authorize"}, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		cache int
	}{{"uncached", -1}, {"cached", 0}} {
		v, err := NewVerifier(VerifierConfig{Secret: testSecret, CacheSize: tc.cache})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPatternMatch(b *testing.B) {
	p, err := compilePattern("private-project-{teamId}-{projectId}")
	if err != nil {
		b.Fatal(err)
	}
	var caps captures
	b.ReportAllocs()
	for b.Loop() {
		if !p.match("private-project-team-42-p3", &caps) {
			b.Fatal("no match")
		}
	}
}
