package protocol

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
)

// Auth token errors. Verification errors wrap one of these.
var (
	ErrAuthFormat    = errors.New("protocol: auth token is not key:signature")
	ErrAuthKey       = errors.New("protocol: auth key does not match the app key")
	ErrSignature     = errors.New("protocol: signature mismatch")
	ErrMasterKeySize = errors.New("protocol: encryption master key must be 32 bytes")
)

// Sign returns hex(HMAC-SHA256(secret, stringToSign)).
func Sign(secret, stringToSign string) string {
	sum := macSum(secret, []byte(stringToSign))
	return hex.EncodeToString(sum[:])
}

// PrivateStringToSign is socket_id:channel (§3.1). It is also the presence string when a
// signed-in connection subscribes to a presence channel without channel_data.
func PrivateStringToSign(socketID, channel string) string {
	return socketID + ":" + channel
}

// PresenceStringToSign is socket_id:channel:channel_data, with the exact channel_data
// string received (§3.2).
func PresenceStringToSign(socketID, channel, channelData string) string {
	return socketID + ":" + channel + ":" + channelData
}

// ChannelStringToSign picks the private or presence form: with channel_data the presence
// form, otherwise the private one.
func ChannelStringToSign(socketID, channel, channelData string) string {
	if channelData == "" {
		return PrivateStringToSign(socketID, channel)
	}
	return PresenceStringToSign(socketID, channel, channelData)
}

// UserStringToSign is socket_id::user::user_data (§3.4).
func UserStringToSign(socketID, userData string) string {
	return socketID + "::user::" + userData
}

// Token returns the key:hex auth token for stringToSign.
func Token(key, secret, stringToSign string) string {
	return key + ":" + Sign(secret, stringToSign)
}

// ChannelAuth returns the auth token a pusher-js auth endpoint answers for a channel
// subscription; channelData is empty for private channels.
func ChannelAuth(key, secret, socketID, channel, channelData string) string {
	return Token(key, secret, ChannelStringToSign(socketID, channel, channelData))
}

// UserAuth returns the auth token for pusher:signin.
func UserAuth(key, secret, socketID, userData string) string {
	return Token(key, secret, UserStringToSign(socketID, userData))
}

// VerifyToken checks a key:hex token against stringToSign in constant time. The key part
// must equal key (§3.1 recommends checking it).
func VerifyToken(key, secret, stringToSign, token string) error {
	k, sig, ok := strings.Cut(token, ":")
	if !ok || k == "" || sig == "" {
		return ErrAuthFormat
	}
	if subtle(k, key) != 1 {
		return ErrAuthKey
	}
	if !VerifySignature(secret, stringToSign, sig) {
		return fmt.Errorf("%w: expected HMAC SHA256 hex digest of %q", ErrSignature, stringToSign)
	}
	return nil
}

// SubscribeOnlyTag marks a channel auth token that grants the subscription
// but not client events (pushercm's embedded server only; hosted Pusher knows
// no such token). The token is key:subscribe-only:hex, where hex signs
// SubscribeOnlyStringToSign. Plain Pusher tokens (key:hex) grant both.
const SubscribeOnlyTag = "subscribe-only:"

// SubscribeOnlyStringToSign is "subscribe-only:" followed by the private or
// presence string (ChannelStringToSign). Every plain channel string starts
// with the digits of a socket id and every HTTP API string with a method
// name, so no signature over one can be replayed as the other: stripping the
// tag from a subscribe-only token does not make a plain token, and adding it
// to a plain token does not make a subscribe-only one.
func SubscribeOnlyStringToSign(socketID, channel, channelData string) string {
	return SubscribeOnlyTag + ChannelStringToSign(socketID, channel, channelData)
}

// SubscribeOnlyChannelAuth returns the auth token of a subscription that may
// not send client events: key:subscribe-only:hex.
func SubscribeOnlyChannelAuth(key, secret, socketID, channel, channelData string) string {
	return key + ":" + SubscribeOnlyTag + Sign(secret, SubscribeOnlyStringToSign(socketID, channel, channelData))
}

// VerifyChannelGrant checks a subscription's auth token in either form and
// reports whether it grants client events: true for a plain Pusher token,
// false for a subscribe-only one.
func VerifyChannelGrant(key, secret, socketID, channel, channelData, token string) (clientEvents bool, err error) {
	k, rest, _ := strings.Cut(token, ":")
	if sig, ok := strings.CutPrefix(rest, SubscribeOnlyTag); ok {
		return false, VerifyToken(key, secret, SubscribeOnlyStringToSign(socketID, channel, channelData), k+":"+sig)
	}
	return true, VerifyChannelAuth(key, secret, socketID, channel, channelData, token)
}

// VerifyChannelAuth checks a subscription's auth token.
func VerifyChannelAuth(key, secret, socketID, channel, channelData, token string) error {
	return VerifyToken(key, secret, ChannelStringToSign(socketID, channel, channelData), token)
}

// VerifyUserAuth checks a pusher:signin auth token.
func VerifyUserAuth(key, secret, socketID, userData, token string) error {
	return VerifyToken(key, secret, UserStringToSign(socketID, userData), token)
}

// VerifySignature compares hex(HMAC-SHA256(secret, stringToSign)) with sig in constant
// time. Upper-case hex is accepted.
func VerifySignature(secret, stringToSign, sig string) bool {
	return verifyMAC(secret, []byte(stringToSign), sig)
}

// macs holds HMAC-SHA256 states by secret, each pool's states keyed with
// that secret: hmac.New hashes the key into its pads on every call, a third
// of an HTTP API request's verification. Only configured secrets (the app's,
// the webhook signers') get here, so the map stays small.
var macs sync.Map // secret -> *sync.Pool of hash.Hash

// macSum is HMAC-SHA256(secret, msg), from a pooled state for secret.
func macSum(secret string, msg []byte) (sum [sha256.Size]byte) {
	p, ok := macs.Load(secret)
	if !ok {
		p, _ = macs.LoadOrStore(secret, &sync.Pool{New: func() any { return hmac.New(sha256.New, []byte(secret)) }})
	}
	pool := p.(*sync.Pool)
	m := pool.Get().(hash.Hash)
	m.Reset()
	m.Write(msg)
	m.Sum(sum[:0])
	pool.Put(m)
	return sum
}

// verifyMAC reports whether sig is the lowercase or uppercase hex of
// HMAC-SHA256(secret, msg), in constant time for a sig of the right length.
func verifyMAC(secret string, msg []byte, sig string) bool {
	var want [sha256.Size]byte
	var hx [2 * sha256.Size]byte // sig as bytes, on the stack
	if len(sig) != len(hx) {
		return false
	}
	copy(hx[:], sig)
	if _, err := hex.Decode(want[:], hx[:]); err != nil {
		return false
	}
	got := macSum(secret, msg)
	return hmac.Equal(got[:], want[:])
}

func subtle(a, b string) int {
	if hmac.Equal([]byte(a), []byte(b)) {
		return 1
	}
	return 0
}

// DecodeMasterKey decodes a base64 encryption master key and checks it is 32 bytes.
func DecodeMasterKey(b64 string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMasterKeySize, err)
	}
	if len(k) != 32 {
		return nil, fmt.Errorf("%w: got %d", ErrMasterKeySize, len(k))
	}
	return k, nil
}

// SharedSecret is base64(SHA256(channel || masterKey)), the per-channel key an auth
// endpoint returns for private-encrypted channels (§3.3).
func SharedSecret(channel string, masterKey []byte) string {
	h := sha256.New()
	h.Write([]byte(channel))
	h.Write(masterKey)
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}
