package protocol

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// HTTP API authentication errors (§5.2). Verification errors wrap exactly one.
var (
	ErrAuthMissing   = errors.New("protocol: missing auth parameter")
	ErrAuthVersion   = errors.New("protocol: unsupported auth_version")
	ErrAuthTimestamp = errors.New("protocol: auth_timestamp outside the allowed window")
	ErrBodyMD5       = errors.New("protocol: body_md5 does not match the body")
)

// AuthVersion is the only auth_version Pusher accepts.
const AuthVersion = "1.0"

// DefaultTimestampWindow is how far auth_timestamp may be from the server clock.
const DefaultTimestampWindow = 600 * time.Second

// BodyMD5 returns the lowercase hex MD5 of body.
func BodyMD5(body []byte) string {
	s := md5.Sum(body)
	return hex.EncodeToString(s[:])
}

// RequestStringToSign builds METHOD\nPATH\nQUERY, where QUERY is every parameter except
// auth_signature, keys lower-cased and sorted, joined k=v with & and no URL encoding.
func RequestStringToSign(method, path string, params map[string]string) string {
	return string(appendRequestStringToSign(nil, method, path, params))
}

// appendRequestStringToSign appends RequestStringToSign's string to dst.
func appendRequestStringToSign(dst []byte, method, path string, params map[string]string) []byte {
	var kb [16]string // a signed request has 4 to 7 parameters
	keys := kb[:0]
	for k := range params {
		if k == "auth_signature" {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, strings.ToUpper(method)...)
	dst = append(dst, '\n')
	dst = append(dst, path...)
	dst = append(dst, '\n')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, '&')
		}
		dst = append(dst, k...)
		dst = append(dst, '=')
		dst = append(dst, params[k]...)
	}
	return dst
}

// SignRequest returns the query parameters of a signed HTTP API request: params plus
// auth_key, auth_timestamp, auth_version, body_md5 (when body is not empty) and
// auth_signature. params is not modified.
func SignRequest(key, secret, method, path string, params map[string]string, body []byte, now time.Time) map[string]string {
	out := make(map[string]string, len(params)+5)
	for k, v := range params {
		out[strings.ToLower(k)] = v
	}
	out["auth_key"] = key
	out["auth_timestamp"] = strconv.FormatInt(now.Unix(), 10)
	out["auth_version"] = AuthVersion
	if len(body) > 0 {
		out["body_md5"] = BodyMD5(body)
	}
	out["auth_signature"] = Sign(secret, RequestStringToSign(method, path, out))
	return out
}

// EncodeQuery renders params sorted by key, URL-encoding values (a server decodes them
// before verifying, so either form verifies).
func EncodeQuery(params map[string]string) string {
	v := url.Values{}
	for k, s := range params {
		v.Set(k, s)
	}
	return v.Encode()
}

// ParseQuery decodes a raw query string leniently: it splits on '&' only (url.ParseQuery
// rejects ';', which channel-name filters may contain), lower-cases keys, percent-decodes
// where possible and keeps the raw text otherwise. The first value of a repeated key wins.
func ParseQuery(raw string) map[string]string {
	out := make(map[string]string)
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			v = dv
		}
		k = strings.ToLower(k)
		if _, dup := out[k]; !dup {
			out[k] = v
		}
	}
	return out
}

// RequestCheck is the input of VerifyRequest.
type RequestCheck struct {
	Method string
	// Path is r.URL.Path (not escaped): pusher-http-go signs the raw channel name.
	Path string
	// RawQuery is r.URL.RawQuery.
	RawQuery string
	Body     []byte
	// Secret returns the secret of an app key; ok=false rejects the key.
	Secret func(key string) (secret string, ok bool)
	// Now is the server clock; zero means time.Now().
	Now time.Time
	// Window is the allowed |now - auth_timestamp|; zero means DefaultTimestampWindow,
	// negative disables the check.
	Window time.Duration
}

// VerifyRequest authenticates a Pusher HTTP API request. On success it returns the
// decoded query parameters (without auth_signature) and the key used.
func VerifyRequest(c RequestCheck) (params map[string]string, key string, err error) {
	params = ParseQuery(c.RawQuery)
	sig, ok := params["auth_signature"]
	if !ok || sig == "" {
		return nil, "", fmt.Errorf("%w: auth_signature", ErrAuthMissing)
	}
	delete(params, "auth_signature")
	key = params["auth_key"]
	if key == "" {
		return nil, "", fmt.Errorf("%w: auth_key", ErrAuthMissing)
	}
	ts := params["auth_timestamp"]
	if ts == "" {
		return nil, "", fmt.Errorf("%w: auth_timestamp", ErrAuthMissing)
	}
	v, ok := params["auth_version"]
	if !ok {
		return nil, "", fmt.Errorf("%w: auth_version", ErrAuthMissing)
	}
	if v != AuthVersion {
		return nil, "", fmt.Errorf("%w: %q", ErrAuthVersion, v)
	}
	if c.Secret == nil {
		return nil, "", fmt.Errorf("%w: no secret lookup", ErrAuthKey)
	}
	secret, ok := c.Secret(key)
	if !ok {
		return nil, "", fmt.Errorf("%w: %q", ErrAuthKey, key)
	}
	if c.Window >= 0 {
		window := c.Window
		if window == 0 {
			window = DefaultTimestampWindow
		}
		now := c.Now
		if now.IsZero() {
			now = time.Now()
		}
		t, perr := strconv.ParseInt(ts, 10, 64)
		if perr != nil {
			return nil, "", fmt.Errorf("%w: %q is not a unix time", ErrAuthTimestamp, ts)
		}
		d := now.Unix() - t
		if d < 0 {
			d = -d
		}
		if d > int64(window/time.Second) {
			return nil, "", fmt.Errorf("%w: given timestamp (%d) not within %ds of server time (%d)",
				ErrAuthTimestamp, t, int64(window/time.Second), now.Unix())
		}
	}
	if len(c.Body) > 0 {
		md, ok := params["body_md5"]
		if !ok {
			return nil, "", fmt.Errorf("%w: body_md5", ErrAuthMissing)
		}
		sum := md5.Sum(c.Body)
		var hx [2 * md5.Size]byte
		hex.Encode(hx[:], sum[:])
		if !hmac.Equal([]byte(strings.ToLower(md)), hx[:]) {
			return nil, "", ErrBodyMD5
		}
	}
	var buf [512]byte
	if !verifyMAC(secret, appendRequestStringToSign(buf[:0], c.Method, c.Path, params), sig) {
		return nil, "", ErrSignature
	}
	return params, key, nil
}
