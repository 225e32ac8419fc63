package authz

import (
	"log/slog"
	"strings"
	"testing"
)

// traceRulesYAML has a rule per requirement, so TestDecideRulesTrace sees every
// line the explainer writes (what `pushercm rules check` prints).
const traceRulesYAML = `rules:
  - name: owner
    pattern: private-own-{userId}
    requiredUserId: "true"
  - name: team
    pattern: private-crew-{teamId}
    requiredTeamMembership: "true"
  - name: any-role
    pattern: private-anyrole
    requiredRoles: [admin, staff]
  - name: all-roles
    pattern: private-allroles
    requiredRoles: [admin, staff]
    requiredRolesMode: all
  - name: expr
    pattern: private-expr-{n}
    expression: 'segments.n == "yes"'
  - name: expr-error
    pattern: private-experr
    expression: 'claims.missing == "x"'
  - name: expr-dyn
    pattern: private-exprdyn
    expression: 'claims.plan'
  - name: every
    pattern: private-all-{teamId}-{userId}
    requiredUserId: "true"
    requiredTeamMembership: "true"
    requiredRoles: [staff]
    expression: 'segments.teamId == "t1"'
    permissions: [subscribe]
  - name: read-none
    pattern: private-noperm
    permissions: [client-events]
`

// TestDecideRulesTrace pins the explanation of each requirement, met and
// failed, line for line.
func TestDecideRulesTrace(t *testing.T) {
	cfg, err := parseRules([]byte(traceRulesYAML))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRules(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p := testPrincipal(map[string]any{"sub": "u1", "teams": []any{"t1"}, "roles": []any{"staff"}, "plan": "pro"})
	bare := testPrincipal(map[string]any{"sub": "u1"})
	tests := []struct {
		channel string
		p       *Principal // nil: p
		reason  string
		trace   string
	}{
		{"private-own-u1", nil, "rule requirements met", "rule \"owner\" (pattern private-own-{userId}) is the first to match with userId=\"u1\"\nrequiredUserId: token user \"u1\" owns the channel: ok\nallowed with permissions [\"subscribe\" \"client-events\"]"},
		{"private-own-u2", nil, "channel belongs to another user", "rule \"owner\" (pattern private-own-{userId}) is the first to match with userId=\"u2\"\nrequiredUserId: channel is for user \"u2\", token user is \"u1\": fails"},
		{"private-crew-t1", nil, "rule requirements met", "rule \"team\" (pattern private-crew-{teamId}) is the first to match with teamId=\"t1\"\nrequiredTeamMembership: token is a member of team \"t1\": ok\nallowed with permissions [\"subscribe\" \"client-events\"]"},
		{"private-crew-t2", nil, "not a member of the channel's team", "rule \"team\" (pattern private-crew-{teamId}) is the first to match with teamId=\"t2\"\nrequiredTeamMembership: team \"t2\" not in token teams [\"t1\"]: fails"},
		{"private-anyrole", nil, "rule requirements met", "rule \"any-role\" (pattern private-anyrole) is the first to match\nrequiredRoles (any of [\"admin\" \"staff\"]): ok\nallowed with permissions [\"subscribe\" \"client-events\"]"},
		{"private-allroles", nil, "missing required role", "rule \"all-roles\" (pattern private-allroles) is the first to match\nrequiredRoles (all of [\"admin\" \"staff\"]): token roles [\"staff\"]: fails"},
		{"private-expr-yes", nil, "rule requirements met", "rule \"expr\" (pattern private-expr-{n}) is the first to match with n=\"yes\"\nexpression \"segments.n == \\\"yes\\\"\": true\nallowed with permissions [\"subscribe\" \"client-events\"]"},
		{"private-expr-no", nil, "expression is false", "rule \"expr\" (pattern private-expr-{n}) is the first to match with n=\"no\"\nexpression \"segments.n == \\\"yes\\\"\": false"},
		{"private-experr", nil, "expression failed (denied)", "rule \"expr-error\" (pattern private-experr) is the first to match\nexpression \"claims.missing == \\\"x\\\"\": runtime error no such key: missing: denied"},
		{"private-exprdyn", nil, "expression failed (denied)", "rule \"expr-dyn\" (pattern private-exprdyn) is the first to match\nexpression \"claims.plan\": result is string, not a bool: denied"},
		{"private-noperm", nil, "rule does not grant subscribe", "rule \"read-none\" (pattern private-noperm) is the first to match\npermissions [\"client-events\"] lack subscribe: denied"},
		{"private-all-t1-u1", nil, "rule requirements met", "rule \"every\" (pattern private-all-{teamId}-{userId}) is the first to match with teamId=\"t1\", userId=\"u1\"\nrequiredUserId: token user \"u1\" owns the channel: ok\nrequiredTeamMembership: token is a member of team \"t1\": ok\nrequiredRoles (any of [\"staff\"]): ok\nexpression \"segments.teamId == \\\"t1\\\"\": true\nallowed with permissions [\"subscribe\"]"},
		{"private-team-t1", nil, "rule requirements met", "rule \"team-channel\" (pattern private-team-{teamId}) is the first to match with teamId=\"t1\"\nrequiredTeamMembership: token is a member of team \"t1\": ok\nallowed with permissions [\"subscribe\" \"client-events\"]"},
		{"private-encrypted-team-t2", nil, "not a member of the channel's team", "rule \"team-channel\" (pattern private-team-{teamId}) is the first to match (judged as its twin private-team-t2) with teamId=\"t2\"\nrequiredTeamMembership: team \"t2\" not in token teams [\"t1\"]: fails"},
		{"private-nothing", nil, "no rule matches (default deny)", "none of the 13 rules has a matching pattern"},
		{"private-anyrole", bare, "missing required role", "rule \"any-role\" (pattern private-anyrole) is the first to match\nrequiredRoles (any of [\"admin\" \"staff\"]): token roles []: fails"},
	}
	for _, tc := range tests {
		t.Run(tc.channel, func(t *testing.T) {
			who := p
			if tc.p != nil {
				who = tc.p
			}
			var trace []string
			d := r.decideRules(who, tc.channel, nil, &trace)
			if d.Reason != tc.reason || strings.Join(trace, "\n") != tc.trace {
				t.Errorf("reason %q, trace:\n%s", d.Reason, strings.Join(trace, "\n"))
			}
		})
	}
}
