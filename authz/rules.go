package authz

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	"cel.dev/cel-go/cel"
)

// RulesConfig is the channel-rules section of the configuration:
//
//	builtins: true          # default; false drops the DESIGN.md §2 rules
//	rules:
//	  - name: team-chat
//	    pattern: presence-team-{teamId}-chat
//	    requiredTeamMembership: teamId
//	    permissions: [subscribe, client-events]
//
// Configured rules are evaluated first, in order, then the built-in rules
// that the configuration did not replace. A configured rule with the name of
// a built-in replaces it (at the configured position).
type RulesConfig struct {
	// Builtins keeps the built-in rules (BuiltinRules). nil means true.
	Builtins *bool `yaml:"builtins,omitempty"`
	// Rules are evaluated in order; the first whose pattern matches decides.
	Rules []Rule `yaml:"rules,omitempty"`
}

// Rule is one channel rule. The first rule whose pattern matches the channel
// decides: if all of its requirements hold the channel is allowed with its
// permissions, otherwise it is denied (later rules are not consulted).
type Rule struct {
	// Name identifies the rule in decisions, errors, logs and metrics.
	// Required, unique, [A-Za-z0-9_.:-], at most 64 characters.
	Name string `yaml:"name"`
	// Pattern is a channel name with wildcards: '*' (one or more characters)
	// and '{name}' (one or more characters, captured). Wildcards must be
	// separated by literal text; each ends at the first occurrence of the
	// literal that follows it, the last one takes the rest of the name.
	Pattern string `yaml:"pattern"`
	// RequiredUserID names a capture that must equal the token's user id
	// ("true" means the capture "userId").
	RequiredUserID string `yaml:"requiredUserId,omitempty"`
	// RequiredTeamMembership names a capture that must be one of the token's
	// teams ("true" means the capture "teamId").
	RequiredTeamMembership string `yaml:"requiredTeamMembership,omitempty"`
	// RequiredRoles the token must carry: any one of them (default) or all,
	// per RequiredRolesMode ("any" | "all").
	RequiredRoles     []string `yaml:"requiredRoles,omitempty"`
	RequiredRolesMode string   `yaml:"requiredRolesMode,omitempty"`
	// Expression is CEL over claims, channel, segments, user_info (trusted
	// callers' only; {} on the browser endpoints), user_id, teams and roles;
	// it must be true to allow. Compiled at load; a runtime
	// error denies and is logged.
	Expression string `yaml:"expression,omitempty"`
	// Permissions granted on allow. Without the key: [subscribe,
	// client-events], as the built-in rules grant and as Pusher behaves
	// (client events still need edge.clientEvents). [subscribe] alone makes
	// the channel read-only for the socket: its auth is signed subscribe-only
	// and the embedded server refuses its client events (hosted Pusher cannot
	// enforce this; see AuthorizerConfig.HostedPusher). A rule whose
	// permissions lack "subscribe" refuses subscriptions.
	Permissions []string `yaml:"permissions,omitempty"`
}

// Permission names with a meaning elsewhere in pushercm. Others are allowed
// (and passed through) so deployments can add their own.
const (
	PermSubscribe    = "subscribe"
	PermClientEvents = "client-events"
)

const (
	privatePrefix   = "private-"
	encryptedPrefix = "private-encrypted-"
)

// BuiltinRules are the rules of DESIGN.md §2. Each private- rule, these and
// the configured ones, also covers its private-encrypted- twin (see
// decideRules): whoever may read a channel may read its encrypted variant.
func BuiltinRules() []Rule {
	perms := []string{PermSubscribe, PermClientEvents}
	return []Rule{
		{Name: "user-channel", Pattern: "private-user-{userId}", RequiredUserID: "userId", Permissions: perms},
		{Name: "team-channel", Pattern: "private-team-{teamId}", RequiredTeamMembership: "teamId", Permissions: perms},
		{Name: "team-presence", Pattern: "presence-team-{teamId}", RequiredTeamMembership: "teamId", Permissions: perms},
		{Name: "admin-channel", Pattern: "private-admin-*", RequiredRoles: []string{"admin"}, Permissions: perms},
	}
}

// compiledRule is a Rule ready for the hot path.
type compiledRule struct {
	name      string
	pat       *pattern
	userCap   int // capture index that must equal the user id, or -1
	teamCap   int // capture index that must be a team, or -1
	roles     []string
	rolesAll  bool
	expr      string
	prg       cel.Program
	perms     []string
	subscribe bool
	builtin   bool
	src       Rule
}

// ruleSet is an immutable compiled rule list.
type ruleSet struct {
	rules []compiledRule
}

// Rules is the live, reloadable rule set. Decisions read an immutable
// snapshot, so a reload never affects a decision in progress.
type Rules struct {
	env *cel.Env
	log *slog.Logger
	cur atomic.Pointer[ruleSet]
}

// NewRules compiles cfg. Any invalid rule is an error naming it. logger gets
// CEL runtime errors (nil: slog.Default()).
func NewRules(cfg RulesConfig, logger *slog.Logger) (*Rules, error) {
	env, err := newCELEnv()
	if err != nil {
		return nil, fmt.Errorf("rules: CEL environment: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	r := &Rules{env: env, log: logger}
	if err := r.Load(cfg); err != nil {
		return nil, err
	}
	return r, nil
}

// Load compiles cfg and swaps it in atomically. On error the current rules
// stay in force and the error names the offending rule.
func (r *Rules) Load(cfg RulesConfig) error {
	set, err := r.compile(cfg)
	if err != nil {
		return err
	}
	r.cur.Store(set)
	return nil
}

// Names lists the active rules in evaluation order.
func (r *Rules) Names() []string {
	set := r.cur.Load()
	out := make([]string, len(set.rules))
	for i := range set.rules {
		out[i] = set.rules[i].name
	}
	return out
}

// Active returns the active rules in evaluation order, as configured.
func (r *Rules) Active() []Rule {
	set := r.cur.Load()
	out := make([]Rule, len(set.rules))
	for i := range set.rules {
		out[i] = set.rules[i].src
	}
	return out
}

func (r *Rules) compile(cfg RulesConfig) (*ruleSet, error) {
	all := slices.Clone(cfg.Rules)
	configured := len(all)
	if cfg.Builtins == nil || *cfg.Builtins {
		for _, b := range BuiltinRules() {
			if !slices.ContainsFunc(cfg.Rules, func(x Rule) bool { return x.Name == b.Name }) {
				all = append(all, b)
			}
		}
	}
	set := &ruleSet{rules: make([]compiledRule, 0, len(all))}
	seen := map[string]bool{}
	for i, rule := range all {
		c, err := r.compileRule(rule)
		if err != nil {
			if rule.Name == "" {
				return nil, fmt.Errorf("rules: rule #%d: %w", i+1, err)
			}
			return nil, fmt.Errorf("rules: rule %q: %w", rule.Name, err)
		}
		if seen[rule.Name] {
			return nil, fmt.Errorf("rules: rule %q: name used twice", rule.Name)
		}
		seen[rule.Name] = true
		c.builtin = i >= configured
		set.rules = append(set.rules, c)
	}
	return set, nil
}

func validRuleName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.:-", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

func validPermission(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("_:-", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// captureField resolves a requiredUserId / requiredTeamMembership value to a
// capture index. "true" means the conventional capture name.
func captureField(field, value, conventional string, p *pattern) (int, error) {
	switch strings.TrimSpace(value) {
	case "", "false":
		return -1, nil
	case "true":
		value = conventional
	}
	i := p.captureIndex(value)
	if i < 0 {
		return -1, fmt.Errorf("%s names capture %q, which pattern %q does not have", field, value, p.src)
	}
	return i, nil
}

func (r *Rules) compileRule(rule Rule) (compiledRule, error) {
	c := compiledRule{name: rule.Name, src: rule, expr: rule.Expression}
	if !validRuleName(rule.Name) {
		return c, fmt.Errorf("name %q: must be 1-64 characters of [A-Za-z0-9_.:-]", rule.Name)
	}
	p, err := compilePattern(rule.Pattern)
	if err != nil {
		return c, err
	}
	c.pat = p
	if c.userCap, err = captureField("requiredUserId", rule.RequiredUserID, "userId", p); err != nil {
		return c, err
	}
	if c.teamCap, err = captureField("requiredTeamMembership", rule.RequiredTeamMembership, "teamId", p); err != nil {
		return c, err
	}
	for _, role := range rule.RequiredRoles {
		if strings.TrimSpace(role) == "" {
			return c, errors.New("requiredRoles has an empty role")
		}
	}
	c.roles = slices.Clone(rule.RequiredRoles)
	switch rule.RequiredRolesMode {
	case "", "any":
	case "all":
		c.rolesAll = true
	default:
		return c, fmt.Errorf("requiredRolesMode %q: must be any or all", rule.RequiredRolesMode)
	}
	if strings.TrimSpace(rule.Expression) != "" {
		prg, err := compileExpression(r.env, rule.Expression)
		if err != nil {
			return c, fmt.Errorf("expression: %w", err)
		}
		c.prg = prg
	}
	c.perms = slices.Clone(rule.Permissions)
	if len(c.perms) == 0 {
		c.perms = []string{PermSubscribe, PermClientEvents}
	}
	for _, perm := range c.perms {
		if !validPermission(perm) {
			return c, fmt.Errorf("permission %q: must be lower case [a-z0-9_:-]", perm)
		}
	}
	c.perms = slices.Clip(c.perms)
	c.subscribe = slices.Contains(c.perms, PermSubscribe)
	return c, nil
}

// Decision is the outcome of the channel rules for one request.
type Decision struct {
	Allowed bool
	// Rule is the deciding rule; "" for public channels and default deny.
	Rule string
	// Reason is a short, stable explanation (one of the Reason* constants).
	Reason string
	// Permissions granted when Allowed. Shared: do not modify.
	Permissions []string
}

// Reasons a decision gives. Stable strings: metrics and tests use them.
const (
	ReasonPublic        = "public channel"
	ReasonAllowed       = "rule requirements met"
	ReasonNoRule        = "no rule matches (default deny)"
	ReasonNotOwner      = "channel belongs to another user"
	ReasonNotTeamMember = "not a member of the channel's team"
	ReasonMissingRole   = "missing required role"
	ReasonExprFalse     = "expression is false"
	ReasonExprError     = "expression failed (denied)"
	ReasonNoSubscribe   = "rule does not grant subscribe"
)

var publicPerms = []string{PermSubscribe}

// decideRules runs the rules for a channel that needs authorization. p must
// be non-nil. trace, when non-nil, receives human-readable steps.
func (r *Rules) decideRules(p *Principal, channel string, userInfo []byte, trace *[]string) Decision {
	set := r.cur.Load()
	var caps captures
	// Each private- rule also covers its private-encrypted- twin, which is
	// judged like the private- channel of the same name (DESIGN.md §2).
	twin := ""
	if rest, ok := strings.CutPrefix(channel, encryptedPrefix); ok {
		twin = privatePrefix + rest
	}
	for i := range set.rules {
		rule := &set.rules[i]
		judged := channel
		if !rule.pat.match(channel, &caps) {
			if twin == "" || strings.HasPrefix(rule.pat.src, encryptedPrefix) || !rule.pat.match(twin, &caps) {
				continue
			}
			judged = twin
		}
		if trace != nil {
			as := ""
			if judged != channel {
				as = fmt.Sprintf(" (judged as its twin %s)", judged)
			}
			*trace = append(*trace, fmt.Sprintf("rule %q (pattern %s) is the first to match%s%s", rule.name, rule.pat.src, as, describeCaptures(rule.pat, judged, &caps)))
		}
		return r.applyRule(rule, p, judged, userInfo, &caps, trace)
	}
	if trace != nil {
		*trace = append(*trace, fmt.Sprintf("none of the %d rules has a matching pattern", len(set.rules)))
	}
	return Decision{Reason: ReasonNoRule}
}

func describeCaptures(p *pattern, channel string, caps *captures) string {
	if len(p.captures) == 0 {
		return ""
	}
	parts := make([]string, len(p.captures))
	for i, n := range p.captures {
		s := caps[i]
		parts[i] = fmt.Sprintf("%s=%q", n, channel[s.start:s.end])
	}
	return " with " + strings.Join(parts, ", ")
}
