package authz

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/milequest/pushercm/protocol"
)

const (
	vecKey    = "278d425bdf160c739803"
	vecSecret = "7ad3773142a6692b25b8"
	vecMaster = "nxzvbGF+f8FGhk/jOaZvgMle1tqxzF/VfUZLBLhhaH0="
)

// logBuffer captures slog records for assertions on attributes.
type logBuffer struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logBuffer) Enabled(context.Context, slog.Level) bool { return true }
func (l *logBuffer) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}
func (l *logBuffer) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logBuffer) WithGroup(string) slog.Handler      { return l }

// ruleLogged reports whether a warning carrying rule=name was logged.
func (l *logBuffer) ruleLogged(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.records {
		found := false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "rule" && a.Value.String() == name && r.Level == slog.LevelWarn {
				found = true
			}
			return !found
		})
		if found {
			return true
		}
	}
	return false
}

const testRulesYAML = `
rules:
  - name: vip
    pattern: private-vip-{tier}
    expression: claims.tier == segments.tier
  - name: level
    pattern: private-level-*
    expression: claims.level > 3
  - name: color
    pattern: private-color-*
    expression: has(user_info.color) && user_info.color == "blue"
  - name: encrypted-team
    pattern: private-encrypted-team-{teamId}
    requiredTeamMembership: true
  - name: ops
    pattern: private-ops-*
    requiredRoles: [admin, ops]
    requiredRolesMode: all
  - name: rooms
    pattern: presence-room-{room}
    permissions: [subscribe, client-events]
  - name: read-nothing
    pattern: private-noperm-*
    permissions: [client-events]
`

func testPrincipal(claims map[string]any) *Principal {
	return NewPrincipal(claims, ClaimNames{})
}

func newTestAuthorizer(t testing.TB, master []byte, logs *logBuffer) *Authorizer {
	t.Helper()
	cfg, err := parseRules([]byte(testRulesYAML))
	if err != nil {
		t.Fatal(err)
	}
	h := slog.DiscardHandler
	if logs != nil {
		h = logs
	}
	rules, err := NewRules(cfg, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthorizer(AuthorizerConfig{AppKey: vecKey, AppSecret: vecSecret, EncryptionMasterKey: master}, rules)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func masterKey(t testing.TB) []byte {
	k, err := protocol.DecodeMasterKey(vecMaster)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAuthorizeChannel(t *testing.T) {
	user := func() *Principal {
		return testPrincipal(map[string]any{"sub": "u1", "teams": []any{"t1"}, "roles": []any{"member"}, "name": "Ada", "tier": "gold"})
	}
	admin := testPrincipal(map[string]any{"sub": "a1", "roles": []any{"admin", "ops"}})
	adminOnly := testPrincipal(map[string]any{"sub": "a2", "roles": []any{"admin"}})
	leveled := testPrincipal(map[string]any{"sub": "l1", "level": int64(5)})
	lowLevel := testPrincipal(map[string]any{"sub": "l2", "level": 2.0})
	bigInfo := `{"bio":"` + strings.Repeat("x", 1100) + `"}`

	tests := []struct {
		name     string
		p        *Principal
		channel  string
		socket   string
		userInfo string
		noMaster bool
		wantErr  error  // nil: allowed
		wantRule string // deciding rule, allowed or denied
		reason   string // Decision reason for denials by rule
		field    string // ArgumentError field
	}{
		{name: "own user channel", p: user(), channel: "private-user-u1", wantRule: "user-channel"},
		{name: "other user's channel", p: user(), channel: "private-user-u2", wantErr: ErrRuleDenied, wantRule: "user-channel", reason: ReasonNotOwner},
		{name: "team member", p: user(), channel: "private-team-t1", wantRule: "team-channel"},
		{name: "team non-member", p: user(), channel: "private-team-t2", wantErr: ErrRuleDenied, wantRule: "team-channel", reason: ReasonNotTeamMember},
		{name: "presence team member", p: user(), channel: "presence-team-t1", wantRule: "team-presence"},
		{name: "presence team non-member", p: user(), channel: "presence-team-t2", wantErr: ErrRuleDenied, wantRule: "team-presence", reason: ReasonNotTeamMember},
		{name: "admin", p: admin, channel: "private-admin-console", wantRule: "admin-channel"},
		{name: "non-admin", p: user(), channel: "private-admin-console", wantErr: ErrRuleDenied, wantRule: "admin-channel", reason: ReasonMissingRole},
		{name: "roles all: has all", p: admin, channel: "private-ops-x", wantRule: "ops"},
		{name: "roles all: has one", p: adminOnly, channel: "private-ops-x", wantErr: ErrRuleDenied, wantRule: "ops", reason: ReasonMissingRole},
		{name: "CEL allow", p: user(), channel: "private-vip-gold", wantRule: "vip"},
		{name: "CEL deny", p: user(), channel: "private-vip-silver", wantErr: ErrRuleDenied, wantRule: "vip", reason: ReasonExprFalse},
		{name: "CEL numeric allow", p: leveled, channel: "private-level-x", wantRule: "level"},
		{name: "CEL numeric deny", p: lowLevel, channel: "private-level-x", wantErr: ErrRuleDenied, wantRule: "level", reason: ReasonExprFalse},
		{name: "CEL runtime error denies", p: user(), channel: "private-level-x", wantErr: ErrRuleDenied, wantRule: "level", reason: ReasonExprError},
		{name: "CEL user_info allow", p: user(), channel: "private-color-1", userInfo: `{"color":"blue"}`, wantRule: "color"},
		{name: "CEL user_info deny", p: user(), channel: "private-color-1", userInfo: `{"color":"red"}`, wantErr: ErrRuleDenied, wantRule: "color", reason: ReasonExprFalse},
		{name: "CEL user_info absent", p: user(), channel: "private-color-1", wantErr: ErrRuleDenied, wantRule: "color", reason: ReasonExprFalse},
		{name: "no rule", p: user(), channel: "private-random", wantErr: ErrRuleDenied, reason: ReasonNoRule},
		{name: "no rule presence", p: user(), channel: "presence-lobby", wantErr: ErrRuleDenied, reason: ReasonNoRule},
		{name: "no rule private cache", p: user(), channel: "private-cache-team-t1", wantErr: ErrRuleDenied, reason: ReasonNoRule},
		{name: "no rule presence cache", p: user(), channel: "presence-cache-x", wantErr: ErrRuleDenied, reason: ReasonNoRule},
		{name: "no rule encrypted cache", p: user(), channel: "private-encrypted-cache-x", wantErr: ErrRuleDenied, reason: ReasonNoRule},
		{name: "rule without subscribe", p: user(), channel: "private-noperm-1", wantErr: ErrRuleDenied, wantRule: "read-nothing", reason: ReasonNoSubscribe},
		{name: "public channel without token", p: nil, channel: "lobby"},
		{name: "public cache channel without token", p: nil, channel: "cache-lobby"},
		{name: "private channel without token", p: nil, channel: "private-user-u1", wantErr: ErrTokenMissing},
		{name: "encrypted with master key", p: user(), channel: "private-encrypted-team-t1", wantRule: "encrypted-team"},
		{name: "encrypted non-member", p: user(), channel: "private-encrypted-team-t2", wantErr: ErrRuleDenied, wantRule: "encrypted-team", reason: ReasonNotTeamMember},
		{name: "encrypted without master key", p: user(), channel: "private-encrypted-team-t1", noMaster: true, wantErr: ErrEncryptionUnavailable},
		{name: "presence user_info merged", p: user(), channel: "presence-room-1", userInfo: `{"avatar":"a.png"}`, wantRule: "rooms"},
		{name: "presence user_info over 1KB", p: user(), channel: "presence-room-1", userInfo: bigInfo, wantErr: ErrInvalidArgument, field: "user_info"},
		{name: "user_info not an object", p: user(), channel: "presence-room-1", userInfo: `["x"]`, wantErr: ErrInvalidArgument, field: "user_info"},
		{name: "presence user id too long", p: testPrincipal(map[string]any{"sub": strings.Repeat("u", 129)}), channel: "presence-room-1", wantErr: ErrInvalidArgument, field: "token"},
		{name: "presence without user id", p: testPrincipal(map[string]any{"scope": "x"}), channel: "presence-room-1", wantErr: ErrTokenInvalid},
		{name: "socket id without dot", p: user(), channel: "private-user-u1", socket: "12345", wantErr: ErrInvalidArgument, field: "socket_id"},
		{name: "socket id letters", p: user(), channel: "private-user-u1", socket: "12a.34", wantErr: ErrInvalidArgument, field: "socket_id"},
		{name: "socket id empty", p: user(), channel: "private-user-u1", socket: "-", wantErr: ErrInvalidArgument, field: "socket_id"},
		{name: "channel name invalid", p: user(), channel: "private-user-u1 ", wantErr: ErrInvalidArgument, field: "channel_name"},
		{name: "channel name too long", p: user(), channel: "private-user-" + strings.Repeat("x", 200), wantErr: ErrInvalidArgument, field: "channel_name"},
		{name: "server-to-user channel", p: user(), channel: "#server-to-user-u1", wantErr: ErrInvalidArgument, field: "channel_name"},
	}
	logs := &logBuffer{}
	withKey := newTestAuthorizer(t, masterKey(t), logs)
	noKey := newTestAuthorizer(t, nil, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := withKey
			if tc.noMaster {
				a = noKey
			}
			socket := tc.socket
			switch socket {
			case "":
				socket = "1234.5678"
			case "-":
				socket = ""
			}
			var ui []byte
			if tc.userInfo != "" {
				ui = []byte(tc.userInfo)
			}
			got, err := a.AuthorizeChannel(context.Background(), tc.p, ChannelRequest{SocketID: socket, Channel: tc.channel, UserInfo: ui})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				var de *DeniedError
				if errors.As(err, &de) {
					if de.Rule != tc.wantRule {
						t.Errorf("deciding rule = %q, want %q", de.Rule, tc.wantRule)
					}
					if tc.reason != "" && de.Reason != tc.reason {
						t.Errorf("reason = %q, want %q", de.Reason, tc.reason)
					}
				} else if tc.reason != "" {
					t.Errorf("err %T is not a *DeniedError", err)
				}
				var ae *ArgumentError
				if tc.field != "" && (!errors.As(err, &ae) || ae.Field != tc.field) {
					t.Errorf("err = %v, want ArgumentError on %s", err, tc.field)
				}
				if got.Auth != "" {
					t.Errorf("denied request got an auth %q", got.Auth)
				}
				return
			}
			if err != nil {
				t.Fatalf("AuthorizeChannel: %v", err)
			}
			if got.MatchedRule != tc.wantRule {
				t.Errorf("matched rule = %q, want %q", got.MatchedRule, tc.wantRule)
			}
			if !contains(got.Permissions, PermSubscribe) {
				t.Errorf("permissions %q lack subscribe", got.Permissions)
			}
			kind, _ := protocol.KindOf(tc.channel)
			if !kind.NeedsAuth() {
				if got.Auth != "" {
					t.Errorf("public channel got auth %q", got.Auth)
				}
				return
			}
			// The signature must be exactly what the protocol package (and so
			// the edge) verifies.
			if err := protocol.VerifyChannelAuth(vecKey, vecSecret, socket, tc.channel, got.ChannelData, got.Auth); err != nil {
				t.Fatalf("edge would refuse the auth: %v", err)
			}
			if want := protocol.ChannelAuth(vecKey, vecSecret, socket, tc.channel, got.ChannelData); got.Auth != want {
				t.Fatalf("auth = %q, protocol says %q", got.Auth, want)
			}
			switch kind {
			case protocol.KindPresence:
				var cd struct {
					UserID   string         `json:"user_id"`
					UserInfo map[string]any `json:"user_info"`
				}
				if err := json.Unmarshal([]byte(got.ChannelData), &cd); err != nil {
					t.Fatalf("channel_data %q: %v", got.ChannelData, err)
				}
				if cd.UserID != tc.p.Subject || got.UserID != tc.p.Subject {
					t.Errorf("user id = %q / %q, want %q", cd.UserID, got.UserID, tc.p.Subject)
				}
				if cd.UserInfo["name"] != tc.p.Name {
					t.Errorf("user_info.name = %v, want the token name %q", cd.UserInfo["name"], tc.p.Name)
				}
				if tc.userInfo != "" {
					var req map[string]any
					if err := json.Unmarshal([]byte(tc.userInfo), &req); err != nil {
						t.Fatal(err)
					}
					for k, v := range req {
						if cd.UserInfo[k] != v {
							t.Errorf("user_info.%s = %v, want %v from the request", k, cd.UserInfo[k], v)
						}
					}
				}
			case protocol.KindPrivateEncrypted:
				if want := protocol.SharedSecret(tc.channel, masterKey(t)); got.SharedSecret != want || want == "" {
					t.Errorf("shared secret = %q, want %q", got.SharedSecret, want)
				}
			default:
				if got.ChannelData != "" || got.SharedSecret != "" {
					t.Errorf("private channel got channel_data %q / shared_secret %q", got.ChannelData, got.SharedSecret)
				}
			}
		})
	}
	if !logs.ruleLogged("level") {
		t.Error("CEL runtime error was not logged with the rule name")
	}
}

func TestSignatureVectors(t *testing.T) {
	cfg := RulesConfig{Rules: []Rule{{Name: "foobar", Pattern: "private-foobar"}, {Name: "enc", Pattern: "private-encrypted-foo"}}}
	rules, err := NewRules(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthorizer(AuthorizerConfig{AppKey: vecKey, AppSecret: vecSecret, EncryptionMasterKey: masterKey(t)}, rules)
	if err != nil {
		t.Fatal(err)
	}
	p := testPrincipal(map[string]any{"sub": "12345"})
	ctx := context.Background()

	got, err := a.AuthorizeChannel(ctx, p, ChannelRequest{SocketID: "1234.1234", Channel: "private-foobar"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"; got.Auth != want {
		t.Errorf("private auth = %s, want %s (PUSHER-PROTOCOL §3.1)", got.Auth, want)
	}
	enc, err := a.AuthorizeChannel(ctx, p, ChannelRequest{SocketID: "1234.1234", Channel: "private-encrypted-foo"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "l8aZjyhYgVd1oAlAsuL4FkYEFvMp39OvXjZMWaFf1Is="; enc.SharedSecret != want {
		t.Errorf("shared secret = %s, want %s (§3.3)", enc.SharedSecret, want)
	}
	ua, err := a.AuthenticateUser(ctx, p, UserRequest{SocketID: "1234.1234"})
	if err != nil {
		t.Fatal(err)
	}
	if ua.UserData != `{"id":"12345"}` {
		t.Errorf("user_data = %s", ua.UserData)
	}
	if want := "278d425bdf160c739803:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"; ua.Auth != want {
		t.Errorf("user auth = %s, want %s (§3.4)", ua.Auth, want)
	}
}

func TestAuthenticateUser(t *testing.T) {
	a := newTestAuthorizer(t, nil, nil)
	ctx := context.Background()
	tests := []struct {
		name     string
		p        *Principal
		socket   string
		userInfo string
		wantErr  error
		field    string
		wantInfo map[string]any
	}{
		{name: "name default", p: testPrincipal(map[string]any{"sub": "7", "name": "Ada"}), socket: "1.2", wantInfo: map[string]any{"name": "Ada"}},
		{name: "request info merged over name", p: testPrincipal(map[string]any{"sub": "7", "name": "Ada"}), socket: "1.2", userInfo: `{"name":"Lovelace","x":1}`, wantInfo: map[string]any{"name": "Lovelace", "x": 1.0}},
		{name: "no token", p: nil, socket: "1.2", wantErr: ErrTokenMissing},
		{name: "no user id", p: testPrincipal(map[string]any{"name": "x"}), socket: "1.2", wantErr: ErrTokenInvalid},
		{name: "bad socket", p: testPrincipal(map[string]any{"sub": "7"}), socket: "1.2.3", wantErr: ErrInvalidArgument, field: "socket_id"},
		{name: "user id outside channel charset", p: testPrincipal(map[string]any{"sub": "a b"}), socket: "1.2", wantErr: ErrInvalidArgument, field: "token"},
		{name: "user info too big", p: testPrincipal(map[string]any{"sub": "7"}), socket: "1.2", userInfo: `{"b":"` + strings.Repeat("y", 2000) + `"}`, wantErr: ErrInvalidArgument, field: "user_info"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ui []byte
			if tc.userInfo != "" {
				ui = []byte(tc.userInfo)
			}
			got, err := a.AuthenticateUser(ctx, tc.p, UserRequest{SocketID: tc.socket, UserInfo: ui})
			if tc.wantErr != nil {
				var ae *ArgumentError
				if !errors.Is(err, tc.wantErr) || (tc.field != "" && (!errors.As(err, &ae) || ae.Field != tc.field)) {
					t.Fatalf("err = %v, want %v on %q", err, tc.wantErr, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := protocol.VerifyUserAuth(vecKey, vecSecret, tc.socket, got.UserData, got.Auth); err != nil {
				t.Fatalf("edge would refuse the sign-in: %v", err)
			}
			var ud struct {
				ID       string         `json:"id"`
				UserInfo map[string]any `json:"user_info"`
			}
			if err := json.Unmarshal([]byte(got.UserData), &ud); err != nil {
				t.Fatal(err)
			}
			if ud.ID != tc.p.Subject {
				t.Errorf("id = %q", ud.ID)
			}
			for k, v := range tc.wantInfo {
				if ud.UserInfo[k] != v {
					t.Errorf("user_info.%s = %v, want %v", k, ud.UserInfo[k], v)
				}
			}
		})
	}
}

func TestNewAuthorizerErrors(t *testing.T) {
	rules, err := NewRules(RulesConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewAuthorizer(AuthorizerConfig{AppKey: "k"}, rules); err == nil {
		t.Error("missing secret accepted")
	}
	if _, err := NewAuthorizer(AuthorizerConfig{AppKey: "k", AppSecret: "s", EncryptionMasterKey: []byte("short")}, rules); err == nil {
		t.Error("short master key accepted")
	}
	if _, err := NewAuthorizer(AuthorizerConfig{AppKey: "k", AppSecret: "s"}, nil); err == nil {
		t.Error("nil rules accepted")
	}
}

func TestSignConcurrent(t *testing.T) {
	// The pooled HMAC state must not bleed between goroutines.
	a := newTestAuthorizer(t, nil, nil)
	p := testPrincipal(map[string]any{"sub": "u1", "teams": []any{"t1"}})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				sock := "1234." + string(rune('1'+g))
				got, err := a.AuthorizeChannel(context.Background(), p, ChannelRequest{SocketID: sock, Channel: "private-team-t1"})
				if err != nil {
					errs <- err
					return
				}
				if want := protocol.ChannelAuth(vecKey, vecSecret, sock, "private-team-t1", ""); got.Auth != want {
					errs <- errors.New("signature mismatch under concurrency")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// The permissions a rule grants decide the signature form: a grant without
// client-events is signed subscribe-only (the embedded server enforces it),
// except for hosted Pusher, which cannot enforce it and is told the truth.
func TestPermissionSignatures(t *testing.T) {
	const rulesYAML = `
rules:
  - name: read-only
    pattern: private-ro-{id}
    permissions: [subscribe]
  - name: read-only-presence
    pattern: presence-ro-{id}
    permissions: [subscribe]
  - name: full
    pattern: private-full-{id}
    permissions: [subscribe, client-events]
  - name: unspecified
    pattern: private-any-{id}
`
	cfg, err := parseRules([]byte(rulesYAML))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := NewRules(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p := testPrincipal(map[string]any{"sub": "u1", "name": "Ada"})
	v, err := NewVerifier(VerifierConfig{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Mint(testSecret, MintOptions{Subject: "u1", Name: "Ada", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const sock = "1234.5678"
	tests := []struct {
		name, channel    string
		hosted           bool
		wantClientEvents bool
		wantPerms        []string
	}{
		{name: "read-only private", channel: "private-ro-1", wantPerms: []string{PermSubscribe}},
		{name: "read-only presence", channel: "presence-ro-1", wantPerms: []string{PermSubscribe}},
		{name: "full", channel: "private-full-1", wantClientEvents: true, wantPerms: []string{PermSubscribe, PermClientEvents}},
		{name: "no permissions key grants both", channel: "private-any-1", wantClientEvents: true, wantPerms: []string{PermSubscribe, PermClientEvents}},
		{name: "hosted Pusher cannot withhold client events", channel: "private-ro-1", hosted: true, wantClientEvents: true, wantPerms: []string{PermSubscribe, PermClientEvents}},
		{name: "hosted Pusher, full", channel: "private-full-1", hosted: true, wantClientEvents: true, wantPerms: []string{PermSubscribe, PermClientEvents}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAuthorizer(AuthorizerConfig{AppKey: vecKey, AppSecret: vecSecret, HostedPusher: tc.hosted}, rules)
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.AuthorizeChannel(context.Background(), p, ChannelRequest{SocketID: sock, Channel: tc.channel})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Permissions, tc.wantPerms) {
				t.Errorf("permissions %q, want %q", got.Permissions, tc.wantPerms)
			}
			ce, err := protocol.VerifyChannelGrant(vecKey, vecSecret, sock, tc.channel, got.ChannelData, got.Auth)
			if err != nil {
				t.Fatalf("the edge refuses the auth %q: %v", got.Auth, err)
			}
			if ce != tc.wantClientEvents {
				t.Errorf("auth %q grants client events = %v, want %v", got.Auth, ce, tc.wantClientEvents)
			}
			if tc.hosted || tc.wantClientEvents {
				// What hosted Pusher (and any Pusher server) verifies.
				if err := protocol.VerifyChannelAuth(vecKey, vecSecret, sock, tc.channel, got.ChannelData, got.Auth); err != nil {
					t.Errorf("plain Pusher verification: %v", err)
				}
			}
			// `pushercm rules check` reports the same permissions.
			if e := a.Check(context.Background(), v, tok, tc.channel, nil); !e.Allowed || !slices.Equal(e.Permissions, tc.wantPerms) {
				t.Errorf("Check: allowed=%v permissions %q, want %q", e.Allowed, e.Permissions, tc.wantPerms)
			}
		})
	}
}

// Rule expressions see user_info only from a trusted caller: a browser's is
// not passed to them, so it cannot open a channel. Presence data from a
// browser keeps the token's name, from a trusted caller the caller's.
func TestBrowserUserInfoIsUntrusted(t *testing.T) {
	a := newTestAuthorizer(t, nil, nil)
	p := testPrincipal(map[string]any{"sub": "u1", "teams": []any{"t1"}, "name": "Ada"})
	blue := []byte(`{"color":"blue","name":"Bob (admin)"}`)
	tests := []struct {
		name            string
		req             ChannelRequest
		wantErr         error
		wantChannelData string
	}{
		{name: "trusted user_info reaches the expression", req: ChannelRequest{SocketID: "1.2", Channel: "private-color-x", UserInfo: blue}},
		{name: "browser user_info does not", req: ChannelRequest{SocketID: "1.2", Channel: "private-color-x", BrowserUserInfo: blue}, wantErr: ErrPermissionDenied},
		{name: "trusted name wins over the token", req: ChannelRequest{SocketID: "1.2", Channel: "presence-team-t1", UserInfo: blue},
			wantChannelData: `{"user_id":"u1","user_info":{"color":"blue","name":"Bob (admin)"}}`},
		{name: "browser name does not", req: ChannelRequest{SocketID: "1.2", Channel: "presence-team-t1", BrowserUserInfo: blue},
			wantChannelData: `{"user_id":"u1","user_info":{"name":"Ada"}}`},
		{name: "browser user_info still validated", req: ChannelRequest{SocketID: "1.2", Channel: "presence-team-t1", BrowserUserInfo: []byte(`[1]`)}, wantErr: ErrInvalidArgument},
		{name: "both kinds at once", req: ChannelRequest{SocketID: "1.2", Channel: "presence-team-t1", UserInfo: blue, BrowserUserInfo: blue}, wantErr: ErrInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.AuthorizeChannel(context.Background(), p, tc.req)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got.ChannelData != tc.wantChannelData {
				t.Fatalf("channel_data %s, want %s", got.ChannelData, tc.wantChannelData)
			}
		})
	}
}
