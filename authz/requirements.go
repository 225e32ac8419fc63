package authz

import (
	"fmt"

	"cel.dev/cel-go/common/types"
)

// A rule allows a request when each of its requirements is met, judged in the
// order below; the first one not met decides the denial. Each requirement has
// one check (the decision) and a line in explain (what `pushercm rules check`
// prints), so the hot path never formats anything.
type requirement uint8

const (
	reqUserID requirement = iota
	reqTeam
	reqRoles
	reqExpression
	reqSubscribe
	numRequirements
)

// ruleRequest is one rule judged for one request.
type ruleRequest struct {
	rule     *compiledRule
	p        *Principal
	channel  string // as judged: the private- twin of a private-encrypted- channel
	userInfo []byte
	caps     captures // a copy: a pointer would move the caller's to the heap
}

// outcome is what one check found.
type outcome struct {
	applies bool   // the rule has this requirement
	reason  string // the Reason* it denies with; "" when met
	value   string // the channel's user id or team id
	err     error  // the expression's runtime error
	result  string // the type of an expression result that is not a bool
}

func met() outcome                 { return outcome{applies: true} }
func failed(reason string) outcome { return outcome{applies: true, reason: reason} }

// applyRule judges the requirements of rule, the first rule whose pattern
// matches. trace, when non-nil, receives one line per requirement judged.
func (r *Rules) applyRule(rule *compiledRule, p *Principal, channel string, userInfo []byte, caps *captures, trace *[]string) Decision {
	q := ruleRequest{rule: rule, p: p, channel: channel, userInfo: userInfo, caps: *caps}
	for req := range numRequirements {
		o := r.check(req, &q)
		if !o.applies {
			continue
		}
		if trace != nil {
			*trace = append(*trace, explain(req, &q, o))
		}
		if o.reason != "" {
			return Decision{Rule: rule.name, Reason: o.reason}
		}
	}
	return Decision{Allowed: true, Rule: rule.name, Reason: ReasonAllowed, Permissions: rule.perms}
}

// check runs the check of one requirement (direct calls, so q stays on the
// stack).
func (r *Rules) check(req requirement, q *ruleRequest) outcome {
	switch req {
	case reqUserID:
		return checkUserID(q)
	case reqTeam:
		return checkTeam(q)
	case reqRoles:
		return checkRoles(q)
	case reqExpression:
		return r.checkExpression(q)
	case reqSubscribe:
		return checkSubscribe(q)
	}
	return outcome{}
}

// checkUserID: requiredUserId, the channel's user is the token's.
func checkUserID(q *ruleRequest) outcome {
	if q.rule.userCap < 0 {
		return outcome{}
	}
	o := met()
	s := q.caps[q.rule.userCap]
	o.value = q.channel[s.start:s.end]
	if q.p.Subject == "" || q.p.Subject != o.value {
		o.reason = ReasonNotOwner
	}
	return o
}

// checkTeam: requiredTeamMembership, the channel's team is one of the token's.
func checkTeam(q *ruleRequest) outcome {
	if q.rule.teamCap < 0 {
		return outcome{}
	}
	o := met()
	s := q.caps[q.rule.teamCap]
	o.value = q.channel[s.start:s.end]
	if !q.p.InTeam(o.value) {
		o.reason = ReasonNotTeamMember
	}
	return o
}

// checkRoles: requiredRoles, any (or with requiredRolesMode all, every) one of
// them is the token's.
func checkRoles(q *ruleRequest) outcome {
	rule := q.rule
	if len(rule.roles) == 0 {
		return outcome{}
	}
	ok := rule.rolesAll
	for _, role := range rule.roles {
		has := q.p.HasRole(role)
		if rule.rolesAll && !has {
			ok = false
			break
		}
		if !rule.rolesAll && has {
			ok = true
			break
		}
	}
	if !ok {
		return failed(ReasonMissingRole)
	}
	return met()
}

// checkExpression: the rule's CEL expression is true.
func (r *Rules) checkExpression(q *ruleRequest) outcome {
	rule := q.rule
	if rule.prg == nil {
		return outcome{}
	}
	cp := q.p.cel
	if cp == nil {
		cp = newCELPrincipal(q.p) // principal built by hand, not by the verifier
	}
	act := activationPool.Get().(*activation)
	act.p, act.channel, act.userInfo = cp, q.channel, q.userInfo
	act.segs = segmentsVal{pat: rule.pat, channel: q.channel, caps: q.caps}
	out, _, err := rule.prg.Eval(act)
	*act = activation{}
	activationPool.Put(act)
	if err != nil {
		// A runtime error denies: an expression that cannot be evaluated
		// for this token must not open the channel. Logged because it
		// usually means a claim the rule expects is absent.
		r.log.Warn("authz: rule expression failed; denying", "rule", rule.name, "channel", q.channel, "err", err)
		o := failed(ReasonExprError)
		o.err = err
		return o
	}
	if out == types.True {
		return met()
	}
	if _, isBool := out.(types.Bool); !isBool {
		r.log.Warn("authz: rule expression is not a bool; denying", "rule", rule.name, "channel", q.channel, "type", out.Type().TypeName())
		o := failed(ReasonExprError)
		o.result = out.Type().TypeName()
		return o
	}
	return failed(ReasonExprFalse)
}

// checkSubscribe: the rule's permissions grant subscribe. Every rule has it,
// and it comes last: its explanation, when met, is the verdict.
func checkSubscribe(q *ruleRequest) outcome {
	if !q.rule.subscribe {
		return failed(ReasonNoSubscribe)
	}
	return met()
}

// explain is the rules-check line for one requirement's outcome.
func explain(req requirement, q *ruleRequest, o outcome) string {
	rule, p := q.rule, q.p
	switch req {
	case reqUserID:
		if o.reason != "" {
			return fmt.Sprintf("requiredUserId: channel is for user %q, token user is %q: fails", o.value, p.Subject)
		}
		return fmt.Sprintf("requiredUserId: token user %q owns the channel: ok", o.value)
	case reqTeam:
		if o.reason != "" {
			return fmt.Sprintf("requiredTeamMembership: team %q not in token teams %q: fails", o.value, p.Teams)
		}
		return fmt.Sprintf("requiredTeamMembership: token is a member of team %q: ok", o.value)
	case reqRoles:
		mode := "any"
		if rule.rolesAll {
			mode = "all"
		}
		if o.reason != "" {
			return fmt.Sprintf("requiredRoles (%s of %q): token roles %q: fails", mode, rule.roles, p.Roles)
		}
		return fmt.Sprintf("requiredRoles (%s of %q): ok", mode, rule.roles)
	case reqExpression:
		switch {
		case o.err != nil:
			return fmt.Sprintf("expression %q: runtime error %v: denied", rule.expr, o.err)
		case o.result != "":
			return fmt.Sprintf("expression %q: result is %s, not a bool: denied", rule.expr, o.result)
		case o.reason != "":
			return fmt.Sprintf("expression %q: false", rule.expr)
		}
		return fmt.Sprintf("expression %q: true", rule.expr)
	case reqSubscribe:
		if o.reason != "" {
			return fmt.Sprintf("permissions %q lack subscribe: denied", rule.perms)
		}
		return fmt.Sprintf("allowed with permissions %q", rule.perms)
	}
	return ""
}
