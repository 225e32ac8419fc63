package authz

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"slices"
	"sync"

	"github.com/milequest/pushercm/protocol"
)

// AuthorizerConfig holds the Pusher app credentials and limits.
type AuthorizerConfig struct {
	// AppKey and AppSecret sign auth strings (PUSHER_KEY, PUSHER_SECRET).
	// Both required.
	AppKey    string
	AppSecret string
	// EncryptionMasterKey is the decoded 32-byte master key
	// (PUSHER_ENCRYPTION_MASTER_KEY_BASE64, see protocol.DecodeMasterKey).
	// Empty: private-encrypted channels are refused with
	// ErrEncryptionUnavailable.
	EncryptionMasterKey []byte
	// MaxUserInfoBytes bounds the JSON of a presence member's user_info (and
	// of sign-in user_info). Default protocol.DefaultMaxMemberInfoBytes (1 KB).
	MaxUserInfoBytes int
	// MaxUserIDLength bounds presence and sign-in user ids. Default
	// protocol.DefaultMaxUserIDLength (128).
	MaxUserIDLength int
	// MaxChannelNameLength: default protocol.DefaultMaxChannelNameLength.
	MaxChannelNameLength int
	// BrowserUserInfoKeys are the user_info keys a browser may set through
	// the pusher-js endpoints (ChannelRequest.BrowserUserInfo and
	// UserRequest.BrowserUserInfo); the token's claims win over them. Empty
	// (the default): a browser sets nothing, user_info comes from the token.
	BrowserUserInfoKeys []string
	// HostedPusher is set with the pusher driver: subscriptions are verified
	// by hosted Pusher, which knows only Pusher's signature form. Every grant
	// is then signed the plain way, and a rule's withheld client-events
	// permission cannot be enforced: answers and `pushercm rules check` list
	// client-events for such grants. False (the embedded server): a grant
	// without client-events is signed subscribe-only (protocol.SubscribeOnlyTag)
	// and the server refuses that socket's client events on the channel.
	HostedPusher bool
	// Logger gets CEL runtime errors via the rules' logger; used here for
	// nothing secret. Default slog.Default().
	Logger *slog.Logger
}

// Authorizer decides channel subscriptions and user sign-ins and signs them
// the way Pusher clients verify. It is safe for concurrent use; the rules it
// reads may be reloaded underneath it.
type Authorizer struct {
	cfg   AuthorizerConfig
	rules *Rules
	log   *slog.Logger
	pool  sync.Pool // *signer keyed with AppSecret
}

// NewAuthorizer checks cfg and returns an authorizer over rules.
func NewAuthorizer(cfg AuthorizerConfig, rules *Rules) (*Authorizer, error) {
	if cfg.AppKey == "" || cfg.AppSecret == "" {
		return nil, errors.New("authz: app key and secret are required")
	}
	if rules == nil {
		return nil, errors.New("authz: rules are required")
	}
	if n := len(cfg.EncryptionMasterKey); n != 0 && n != 32 {
		return nil, fmt.Errorf("authz: encryption master key must be 32 bytes, got %d", n)
	}
	if cfg.MaxUserInfoBytes <= 0 {
		cfg.MaxUserInfoBytes = protocol.DefaultMaxMemberInfoBytes
	}
	if cfg.MaxUserIDLength <= 0 {
		cfg.MaxUserIDLength = protocol.DefaultMaxUserIDLength
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Authorizer{cfg: cfg, rules: rules, log: cfg.Logger}
	secret := []byte(cfg.AppSecret)
	a.pool.New = func() any {
		return &signer{mac: hmac.New(sha256.New, secret), buf: make([]byte, 0, 512), data: make([]byte, 0, 256)}
	}
	return a, nil
}

// effectivePermissions is what a grant of perms lets the socket do. The
// embedded server enforces client-events; hosted Pusher cannot (it verifies
// only its own signature form and lets every subscriber of a private or
// presence channel send client events when the app enables them), so with
// HostedPusher a grant always includes client-events and says so.
func (a *Authorizer) effectivePermissions(perms []string) []string {
	if !a.cfg.HostedPusher || slices.Contains(perms, PermClientEvents) {
		return perms
	}
	return append(slices.Clip(perms), PermClientEvents)
}

// Rules returns the rule set the authorizer reads.
func (a *Authorizer) Rules() *Rules { return a.rules }

// EncryptionEnabled reports whether a master key is configured.
func (a *Authorizer) EncryptionEnabled() bool { return len(a.cfg.EncryptionMasterKey) == 32 }

// ChannelRequest is a channel authorization request (pusher-js sends
// socket_id and channel_name; user_info comes from the caller).
type ChannelRequest struct {
	SocketID string
	Channel  string
	// UserInfo is an optional JSON object from a trusted caller (the web app
	// over gRPC). For presence channels it is merged over {"name": <token
	// name>} into the member's user_info, the request winning; rule
	// expressions see it as user_info.
	UserInfo []byte
	// BrowserUserInfo is user_info sent by the browser (the pusher-js
	// endpoints): untrusted. Only the keys of
	// AuthorizerConfig.BrowserUserInfoKeys are kept, the token's claims win
	// over them, and rule expressions never see it (their user_info is {}).
	// Set at most one of UserInfo and BrowserUserInfo.
	BrowserUserInfo []byte
}

// ChannelAuth is what the pusher-js auth endpoint and
// AuthService.AuthorizeChannel answer.
type ChannelAuth struct {
	Auth         string   // "key:hex"; empty for public channels
	ChannelData  string   // presence only: the exact string that was signed
	SharedSecret string   // private-encrypted only
	UserID       string   // presence only: the member's user id
	Permissions  []string // what the grant lets the socket do (see AuthorizerConfig.HostedPusher); shared, do not modify
	MatchedRule  string   // "" for public channels
}

// AuthorizeChannel decides whether p may subscribe to req.Channel and, if
// so, signs the subscription. Errors:
//   - *ArgumentError (ErrInvalidArgument): bad socket id, channel name or
//     user_info (presence size limit), user id too long;
//   - *TokenError (ErrUnauthenticated): p is nil for a channel that needs
//     auth, or a presence channel and the token has no user id;
//   - *DeniedError (ErrPermissionDenied): the rules deny (Rule names the
//     deciding rule, "" for default deny), or the channel is encrypted and no
//     master key is configured (ErrEncryptionUnavailable).
//
// Public channels are allowed without a principal and without a signature.
func (a *Authorizer) AuthorizeChannel(ctx context.Context, p *Principal, req ChannelRequest) (ChannelAuth, error) {
	ch, err := protocol.ParseChannel(req.Channel, a.cfg.MaxChannelNameLength)
	if err != nil {
		return ChannelAuth{}, argErr("channel_name", channelReason(err))
	}
	if ch.Kind == protocol.KindServerToUser {
		return ChannelAuth{}, argErr("channel_name", "#server-to-user channels are joined by signing in, not by channel authorization")
	}
	if !validSocketID(req.SocketID) {
		return ChannelAuth{}, argErr("socket_id", "must look like 1234.5678")
	}
	if !ch.Kind.NeedsAuth() {
		return ChannelAuth{Permissions: publicPerms}, nil
	}
	if p == nil {
		return ChannelAuth{}, &TokenError{Kind: ErrTokenMissing}
	}
	info, err := a.userInfo(req.UserInfo, req.BrowserUserInfo)
	if err != nil {
		return ChannelAuth{}, err
	}
	if ch.Kind == protocol.KindPrivateEncrypted && !a.EncryptionEnabled() {
		return ChannelAuth{}, &DeniedError{Kind: ErrEncryptionUnavailable, Channel: req.Channel, Reason: "no encryption master key configured"}
	}
	// Rule expressions see only trusted user_info: a browser's is not.
	d := a.rules.decideRules(p, req.Channel, req.UserInfo, nil)
	if !d.Allowed {
		return ChannelAuth{}, &DeniedError{Kind: ErrRuleDenied, Rule: d.Rule, Channel: req.Channel, Reason: d.Reason}
	}
	out := ChannelAuth{Permissions: a.effectivePermissions(d.Permissions), MatchedRule: d.Rule}
	// A grant without client events is signed in the subscribe-only form,
	// which the embedded server enforces (protocol.VerifyChannelGrant).
	tag := ""
	if !slices.Contains(out.Permissions, PermClientEvents) {
		tag = protocol.SubscribeOnlyTag
	}
	switch ch.Kind {
	case protocol.KindPresence:
		if err := a.checkUserID(p); err != nil {
			return ChannelAuth{}, err
		}
		data, err := a.memberJSON("user_id", p, info)
		if err != nil {
			return ChannelAuth{}, err
		}
		out.ChannelData = data
		out.UserID = p.Subject
		out.Auth = a.sign(tag, req.SocketID, ":", req.Channel, ":", out.ChannelData)
	case protocol.KindPrivateEncrypted:
		out.Auth = a.sign(tag, req.SocketID, ":", req.Channel, "", "")
		out.SharedSecret = a.sharedSecret(req.Channel)
	default:
		out.Auth = a.sign(tag, req.SocketID, ":", req.Channel, "", "")
	}
	return out, nil
}

// UserRequest is a user authentication (pusher:signin) request.
type UserRequest struct {
	SocketID string
	// UserInfo is an optional JSON object from a trusted caller, merged over
	// {"name": <token name>}.
	UserInfo []byte
	// BrowserUserInfo is the browser's user_info, treated as in
	// ChannelRequest.BrowserUserInfo.
	BrowserUserInfo []byte
	// Watchlist is the user ids whose online status the user is told of
	// (user_data's "watchlist"; at most protocol.MaxWatchlist, each a valid
	// user id).
	Watchlist []string
}

// UserAuth is the pusher:signin auth: user_data is the exact string signed.
type UserAuth struct {
	Auth     string
	UserData string
}

// AuthenticateUser signs user_data {"id": <token user id>, "user_info": ...}
// for pusher:signin (string to sign socket_id::user::user_data). The user id
// must be non-empty, at most MaxUserIDLength characters and use the channel
// character set (it becomes the #server-to-user-{id} channel).
func (a *Authorizer) AuthenticateUser(ctx context.Context, p *Principal, req UserRequest) (UserAuth, error) {
	if !validSocketID(req.SocketID) {
		return UserAuth{}, argErr("socket_id", "must look like 1234.5678")
	}
	if len(req.UserInfo) > a.maxRawUserInfo() || len(req.BrowserUserInfo) > a.maxRawUserInfo() {
		return UserAuth{}, argErr("user_info", fmt.Sprintf("larger than %d bytes", a.cfg.MaxUserInfoBytes))
	}
	if p == nil {
		return UserAuth{}, &TokenError{Kind: ErrTokenMissing}
	}
	if err := a.checkUserID(p); err != nil {
		return UserAuth{}, err
	}
	for i := 0; i < len(p.Subject); i++ {
		if !protocol.ValidChannelChar(p.Subject[i]) {
			return UserAuth{}, argErr("token", "user id has characters outside [A-Za-z0-9_\\-=@,.;]")
		}
	}
	info, err := a.userInfo(req.UserInfo, req.BrowserUserInfo)
	if err != nil {
		return UserAuth{}, err
	}
	ud, err := a.memberJSON("id", p, info)
	if err != nil {
		return UserAuth{}, err
	}
	if len(req.Watchlist) > 0 {
		if ud, err = a.withWatchlist(ud, req.Watchlist); err != nil {
			return UserAuth{}, err
		}
	}
	return UserAuth{Auth: a.sign("", req.SocketID, "::user::", ud, "", ""), UserData: ud}, nil
}

// memberInfo is the user_info to merge over the token's claims: trusted
// (from the web app) wins over them, untrusted (from the browser) does not.
type memberInfo struct {
	raw     []byte
	trusted bool
}

// userInfo checks the request's user_info (bounded and a JSON object
// whichever caller sent it) and says how far to trust it. A browser's is cut
// down to the allowed keys here, so nothing else of it is signed.
func (a *Authorizer) userInfo(trusted, browser []byte) (memberInfo, error) {
	raw := trusted
	if len(browser) > 0 {
		if len(trusted) > 0 {
			return memberInfo{}, argErr("user_info", "given by both the service and the browser")
		}
		raw = browser
	}
	if len(raw) > a.maxRawUserInfo() {
		return memberInfo{}, argErr("user_info", fmt.Sprintf("larger than %d bytes", a.cfg.MaxUserInfoBytes))
	}
	if len(raw) > 0 && !isJSONObject(raw) {
		return memberInfo{}, argErr("user_info", "must be a JSON object")
	}
	if len(browser) == 0 {
		return memberInfo{raw: trusted, trusted: true}, nil
	}
	if len(a.cfg.BrowserUserInfoKeys) == 0 {
		return memberInfo{}, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(browser, &m); err != nil {
		return memberInfo{}, argErr("user_info", "must be a JSON object")
	}
	for k := range m {
		if !slices.Contains(a.cfg.BrowserUserInfoKeys, k) {
			delete(m, k)
		}
	}
	if len(m) == 0 {
		return memberInfo{}, nil
	}
	kept, err := json.Marshal(m)
	if err != nil {
		return memberInfo{}, argErr("user_info", "must be a JSON object")
	}
	return memberInfo{raw: kept}, nil
}

// withWatchlist adds "watchlist" to the user_data object ud.
func (a *Authorizer) withWatchlist(ud string, ids []string) (string, error) {
	if len(ids) > protocol.MaxWatchlist {
		return "", argErr("watchlist", fmt.Sprintf("%d ids, at most %d", len(ids), protocol.MaxWatchlist))
	}
	b := append([]byte(ud[:len(ud)-1]), `,"watchlist":[`...)
	for i, id := range ids {
		if id == "" || len(id) > a.cfg.MaxUserIDLength || !validUserID(id) {
			return "", argErr("watchlist", fmt.Sprintf("id #%d is not a user id (1 to %d of [A-Za-z0-9_\\-=@,.;])", i+1, a.cfg.MaxUserIDLength))
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = protocol.AppendJSONString(b, id)
	}
	return string(append(b, ']', '}')), nil
}

func validUserID(id string) bool {
	for i := 0; i < len(id); i++ {
		if !protocol.ValidChannelChar(id[i]) {
			return false
		}
	}
	return true
}

func (a *Authorizer) checkUserID(p *Principal) error {
	if p.Subject == "" {
		return &TokenError{Kind: ErrTokenInvalid, Detail: "token has no user id claim"}
	}
	if len(p.Subject) > a.cfg.MaxUserIDLength {
		return argErr("token", fmt.Sprintf("user id longer than %d characters", a.cfg.MaxUserIDLength))
	}
	return nil
}

// memberJSON builds {"<idKey>":"<user id>","user_info":{...}} where
// user_info is the request's object merged with {"name": p.Name} (trusted
// info wins over the token's name, browser info does not); user_info is left
// out when there is nothing to say. The merged user_info must fit in
// MaxUserInfoBytes.
func (a *Authorizer) memberJSON(idKey string, p *Principal, info memberInfo) (string, error) {
	s := a.pool.Get().(*signer)
	defer a.putSigner(s)
	b := append(s.data[:0], '{', '"')
	b = append(b, idKey...)
	b = append(b, '"', ':')
	b = protocol.AppendJSONString(b, p.Subject)
	mark := len(b)
	b = append(b, `,"user_info":`...)
	start := len(b)
	b, err := a.appendMemberInfo(b, p, info)
	s.data = b[:0]
	if err != nil {
		return "", err
	}
	if n := len(b) - start; n == 0 {
		b = b[:mark]
	} else if n > a.cfg.MaxUserInfoBytes {
		return "", argErr("user_info", fmt.Sprintf("larger than %d bytes", a.cfg.MaxUserInfoBytes))
	}
	b = append(b, '}')
	s.data = b[:0]
	return string(b), nil
}

// appendMemberInfo appends the merged user_info object (or nothing).
func (a *Authorizer) appendMemberInfo(b []byte, p *Principal, info memberInfo) ([]byte, error) {
	reqInfo := info.raw
	if len(reqInfo) > a.maxRawUserInfo() {
		return b, argErr("user_info", fmt.Sprintf("larger than %d bytes", a.cfg.MaxUserInfoBytes))
	}
	switch {
	case len(reqInfo) == 0 && p.Name == "":
		return b, nil
	case len(reqInfo) == 0:
		b = append(b, `{"name":`...)
		b = protocol.AppendJSONString(b, p.Name)
		return append(b, '}'), nil
	case p.Name == "":
		buf := bytes.NewBuffer(b)
		if err := json.Compact(buf, reqInfo); err != nil {
			return b, argErr("user_info", "must be a JSON object")
		}
		return buf.Bytes(), nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(reqInfo, &m); err != nil || m == nil {
		return b, argErr("user_info", "must be a JSON object")
	}
	if _, set := m["name"]; !set || !info.trusted {
		m["name"] = protocol.AppendJSONString(nil, p.Name)
	}
	enc, err := json.Marshal(m)
	if err != nil {
		return b, argErr("user_info", "must be a JSON object")
	}
	return append(b, enc...), nil
}

// maxRawUserInfo bounds request user_info before any parsing. The limit
// applies to the merged, compacted object; the raw input gets slack for
// whitespace, but an input far over the limit cannot fit and is refused
// without being parsed.
func (a *Authorizer) maxRawUserInfo() int { return 4*a.cfg.MaxUserInfoBytes + 256 }

// maxSocketIDLength bounds socket ids (Pusher's look like "123456.7890123").
const maxSocketIDLength = 64

func validSocketID(s string) bool {
	return len(s) <= maxSocketIDLength && protocol.ValidSocketID(s)
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

func channelReason(err error) string {
	switch {
	case errors.Is(err, protocol.ErrChannelNameEmpty):
		return "empty"
	case errors.Is(err, protocol.ErrChannelNameTooLong):
		return "too long"
	case errors.Is(err, protocol.ErrChannelNameChars):
		return "characters outside [A-Za-z0-9_\\-=@,.;]"
	case errors.Is(err, protocol.ErrChannelReserved):
		return "reserved # prefix"
	}
	return "invalid"
}

// signer is a pooled HMAC-SHA256 keyed with the app secret plus scratch
// space, so signing allocates only the returned string. The string layout is
// protocol's (PrivateStringToSign, PresenceStringToSign, UserStringToSign);
// tests check both produce identical tokens.
type signer struct {
	mac  hash.Hash
	buf  []byte // string to sign, then the token
	data []byte // channel_data / user_data being built
}

// putSigner returns s to the pool unless a buffer grew unusually large.
func (a *Authorizer) putSigner(s *signer) {
	if cap(s.buf) <= 4096 && cap(s.data) <= 8192 {
		a.pool.Put(s)
	}
}

// sign returns "key:" + tag + hex(HMAC-SHA256(secret, tag+s1+s2+s3+s4+s5)).
// tag is "" or protocol.SubscribeOnlyTag.
func (a *Authorizer) sign(tag, s1, s2, s3, s4, s5 string) string {
	s := a.pool.Get().(*signer)
	b := append(s.buf[:0], tag...)
	b = append(b, s1...)
	b = append(b, s2...)
	b = append(b, s3...)
	b = append(b, s4...)
	b = append(b, s5...)
	s.mac.Reset()
	s.mac.Write(b)
	// Reuse the buffer for the output: key ':' hex(sum).
	n := len(b)
	b = s.mac.Sum(b)
	var sum [sha256.Size]byte
	copy(sum[:], b[n:])
	b = append(b[:0], a.cfg.AppKey...)
	b = append(b, ':')
	b = append(b, tag...)
	b = hex.AppendEncode(b, sum[:])
	out := string(b)
	s.buf = b[:0]
	a.putSigner(s)
	return out
}

// sharedSecret is base64(SHA256(channel || master key)) (protocol §3.3).
func (a *Authorizer) sharedSecret(channel string) string {
	s := a.pool.Get().(*signer)
	b := append(s.buf[:0], channel...)
	b = append(b, a.cfg.EncryptionMasterKey...)
	sum := sha256.Sum256(b)
	clear(b) // the buffer held the master key
	b = base64.StdEncoding.AppendEncode(b[:0], sum[:])
	out := string(b)
	s.buf = b[:0]
	a.putSigner(s)
	return out
}
