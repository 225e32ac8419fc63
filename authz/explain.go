package authz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/milequest/pushercm/protocol"
)

// Explanation is the answer of `pushercm rules check`: the decision and how
// it was reached, for humans.
type Explanation struct {
	Channel     string
	Kind        string // public, private, presence, private-encrypted
	Allowed     bool
	Rule        string // deciding rule; "" for public channels, default deny or token failures
	Reason      string
	Permissions []string
	Steps       []string // how the decision was reached, in order
	Err         error    // the error AuthorizeChannel would return, if any
}

// String renders the explanation, one step per line.
func (e Explanation) String() string {
	var b strings.Builder
	verdict := "DENY"
	if e.Allowed {
		verdict = "ALLOW"
	}
	fmt.Fprintf(&b, "%s %s (%s channel)\n", verdict, e.Channel, e.Kind)
	if e.Rule != "" {
		fmt.Fprintf(&b, "rule: %s\n", e.Rule)
	} else {
		b.WriteString("rule: (none)\n")
	}
	fmt.Fprintf(&b, "why: %s\n", e.Reason)
	if e.Allowed {
		fmt.Fprintf(&b, "permissions: %s\n", strings.Join(e.Permissions, ", "))
	}
	for i, s := range e.Steps {
		fmt.Fprintf(&b, "  %d. %s\n", i+1, s)
	}
	return b.String()
}

// Check explains what AuthorizeChannel would decide for token on channel,
// for `pushercm rules check --token T --channel C [--user-info JSON]`. v may
// be nil when token is empty. Nothing is signed and no socket id is needed.
// The token itself never appears in the output, only its identity claims.
func (a *Authorizer) Check(ctx context.Context, v *Verifier, token, channel string, userInfo []byte) Explanation {
	e := Explanation{Channel: channel}
	deny := func(err error, reason string) Explanation {
		e.Err, e.Reason = err, reason
		return e
	}
	ch, err := protocol.ParseChannel(channel, a.cfg.MaxChannelNameLength)
	if err != nil {
		e.Kind = "invalid"
		return deny(argErr("channel_name", channelReason(err)), "channel name is invalid: "+channelReason(err))
	}
	e.Kind = ch.Kind.String()
	if ch.Kind == protocol.KindServerToUser {
		return deny(argErr("channel_name", "server-to-user"), "#server-to-user channels are joined by signing in")
	}
	if !ch.Kind.NeedsAuth() {
		e.Allowed, e.Reason, e.Permissions = true, ReasonPublic, publicPerms
		e.Steps = append(e.Steps, "public channels need no token and no rule")
		return e
	}
	var p *Principal
	switch {
	case token == "":
		return deny(&TokenError{Kind: ErrTokenMissing}, "a "+e.Kind+" channel needs a token")
	case v == nil:
		return deny(errors.New("no verifier configured"), "no JWT keys configured, cannot verify the token")
	default:
		p, err = v.Verify(ctx, token)
		if err != nil {
			return deny(err, "token rejected: "+err.Error())
		}
	}
	e.Steps = append(e.Steps, fmt.Sprintf("token ok: user %q, teams %q, roles %q, scopes %q, expires %s",
		p.Subject, p.Teams, p.Roles, p.Scopes, p.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z")))
	if len(userInfo) > 0 && !isJSONObject(userInfo) {
		return deny(argErr("user_info", "must be a JSON object"), "user_info must be a JSON object")
	}
	if ch.Kind == protocol.KindPrivateEncrypted && !a.EncryptionEnabled() {
		e.Steps = append(e.Steps, "no encryption master key configured (PUSHER_ENCRYPTION_MASTER_KEY_BASE64)")
		return deny(&DeniedError{Kind: ErrEncryptionUnavailable, Channel: channel}, ErrEncryptionUnavailable.Error())
	}
	d := a.rules.decideRules(p, channel, userInfo, &e.Steps)
	e.Rule, e.Reason = d.Rule, d.Reason
	if !d.Allowed {
		e.Err = &DeniedError{Kind: ErrRuleDenied, Rule: d.Rule, Channel: channel, Reason: d.Reason}
		return e
	}
	if ch.Kind == protocol.KindPresence {
		if err := a.checkUserID(p); err != nil {
			return deny(err, err.Error())
		}
		data, err := a.memberJSON("user_id", p, memberInfo{raw: userInfo, trusted: true})
		if err != nil {
			return deny(err, err.Error())
		}
		e.Steps = append(e.Steps, "presence channel_data: "+data)
	}
	e.Allowed, e.Permissions = true, a.effectivePermissions(d.Permissions)
	if len(e.Permissions) != len(d.Permissions) {
		e.Steps = append(e.Steps, fmt.Sprintf("the rule grants %q, but with the pusher driver hosted Pusher cannot withhold client-events: any subscriber may send them when the app enables client events", d.Permissions))
	} else if !slices.Contains(d.Permissions, PermClientEvents) {
		e.Steps = append(e.Steps, "signed subscribe-only: the embedded server refuses this socket's client events on the channel (4301)")
	}
	return e
}
