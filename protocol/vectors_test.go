package protocol

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Vectors from PUSHER-PROTOCOL.md §3, §5.2 and §6.
const (
	vecKey    = "278d425bdf160c739803"
	vecSecret = "7ad3773142a6692b25b8"
)

func TestSignatureVectors(t *testing.T) {
	tests := []struct {
		name  string
		toSig string
		want  string
	}{
		{"private §3.1", PrivateStringToSign("1234.1234", "private-foobar"),
			"58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"},
		{"presence §3.2", PresenceStringToSign("1234.1234", "presence-foobar", `{"user_id":10,"user_info":{"name":"Mr. Channels"}}`),
			"31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"},
		{"user signin §3.4", UserStringToSign("1234.1234", `{"id":"12345"}`),
			"4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"},
		{"http POST §5.2", "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f",
			"da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"},
		{"http GET §5.2", "GET\n/apps/3/channels\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&filter_by_prefix=presence-&info=user_count",
			"16819168891cb5dfd72b5c7a5d3d602605b26c6ba1930033b5e2eeeb65010291"},
		{"webhook §6", `{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test-channel"}]}`,
			"5dd6562a9f744b72a688bcdfea41c14c2c56d12c44c99e32c08face4cc1e8aeb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Sign(vecSecret, tc.toSig); got != tc.want {
				t.Fatalf("Sign = %s, want %s", got, tc.want)
			}
			if !VerifySignature(vecSecret, tc.toSig, tc.want) {
				t.Fatal("VerifySignature rejected the vector")
			}
			if VerifySignature("wrong", tc.toSig, tc.want) {
				t.Fatal("VerifySignature accepted a wrong secret")
			}
		})
	}
}

func TestTokens(t *testing.T) {
	priv := ChannelAuth(vecKey, vecSecret, "1234.1234", "private-foobar", "")
	if want := "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"; priv != want {
		t.Fatalf("private token %s want %s", priv, want)
	}
	user := UserAuth(vecKey, vecSecret, "1234.1234", `{"id":"12345"}`)
	if want := "278d425bdf160c739803:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"; user != want {
		t.Fatalf("user token %s want %s", user, want)
	}
	pd := `{"user_id":10,"user_info":{"name":"Mr. Channels"}}`
	pres := ChannelAuth(vecKey, vecSecret, "1234.1234", "presence-foobar", pd)
	tests := []struct {
		name    string
		err     error
		wantErr error
	}{
		{"private ok", VerifyChannelAuth(vecKey, vecSecret, "1234.1234", "private-foobar", "", priv), nil},
		{"presence ok", VerifyChannelAuth(vecKey, vecSecret, "1234.1234", "presence-foobar", pd, pres), nil},
		{"user ok", VerifyUserAuth(vecKey, vecSecret, "1234.1234", `{"id":"12345"}`, user), nil},
		{"other socket", VerifyChannelAuth(vecKey, vecSecret, "1234.1235", "private-foobar", "", priv), ErrSignature},
		{"reserialised channel_data", VerifyChannelAuth(vecKey, vecSecret, "1234.1234", "presence-foobar", `{"user_id": 10,"user_info":{"name":"Mr. Channels"}}`, pres), ErrSignature},
		{"wrong key", VerifyChannelAuth("otherkey", vecSecret, "1234.1234", "private-foobar", "", priv), ErrAuthKey},
		{"no colon", VerifyChannelAuth(vecKey, vecSecret, "1234.1234", "private-foobar", "", "abc"), ErrAuthFormat},
		{"empty", VerifyChannelAuth(vecKey, vecSecret, "1234.1234", "private-foobar", "", ""), ErrAuthFormat},
		{"not hex", VerifyChannelAuth(vecKey, vecSecret, "1234.1234", "private-foobar", "", vecKey+":zz"), ErrSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, tc.wantErr) || (tc.wantErr == nil && tc.err != nil) {
				t.Fatalf("err = %v, want %v", tc.err, tc.wantErr)
			}
		})
	}
}

func TestSharedSecretVector(t *testing.T) {
	mk, err := DecodeMasterKey("nxzvbGF+f8FGhk/jOaZvgMle1tqxzF/VfUZLBLhhaH0=")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := SharedSecret("private-encrypted-foo", mk), "l8aZjyhYgVd1oAlAsuL4FkYEFvMp39OvXjZMWaFf1Is="; got != want {
		t.Fatalf("SharedSecret = %s want %s", got, want)
	}
	if _, err := DecodeMasterKey("c2hvcnQ="); !errors.Is(err, ErrMasterKeySize) {
		t.Fatalf("short key err = %v", err)
	}
}

func TestBodyMD5Vector(t *testing.T) {
	body := `{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}`
	if got := BodyMD5([]byte(body)); got != "ec365a775a4cd0599faeb73354201b6f" {
		t.Fatalf("md5 = %s", got)
	}
}

// webhookVecBody is Pusher's documented webhook example.
var webhookVecBody = []byte(`{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test-channel"}]}`)

type webhookCase struct {
	name      string
	key, sig  string
	body      []byte
	wantError error
}

// webhookCases also seed FuzzVerifyWebhook.
func webhookCases() []webhookCase {
	body := webhookVecBody
	sig := WebhookSignature(vecSecret, body)
	return []webhookCase{
		{"ok", vecKey, sig, body, nil},
		{"wrong key", "nope", sig, body, ErrAuthKey},
		{"tampered", vecKey, sig, append([]byte(" "), body...), ErrSignature},
		{"bad sig", vecKey, "00", body, ErrSignature},
	}
}

func TestWebhookVerify(t *testing.T) {
	if sig := WebhookSignature(vecSecret, webhookVecBody); sig != "5dd6562a9f744b72a688bcdfea41c14c2c56d12c44c99e32c08face4cc1e8aeb" {
		t.Fatalf("sig %s", sig)
	}
	for _, tc := range webhookCases() {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyWebhook(vecKey, vecSecret, tc.key, tc.sig, tc.body)
			if tc.wantError == nil && err != nil || !errors.Is(err, tc.wantError) {
				t.Fatalf("err=%v want %v", err, tc.wantError)
			}
		})
	}
}

func secretOf(k string) (string, bool) {
	if k == vecKey {
		return vecSecret, true
	}
	return "", false
}

func TestVerifyRequestVectors(t *testing.T) {
	ts := time.Unix(1353088179, 0)
	postBody := []byte(`{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}`)
	postQ := "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
	getQ := "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&filter_by_prefix=presence-&info=user_count&auth_signature=16819168891cb5dfd72b5c7a5d3d602605b26c6ba1930033b5e2eeeb65010291"
	tests := []struct {
		name    string
		c       RequestCheck
		wantErr error
	}{
		{"post vector", RequestCheck{Method: "POST", Path: "/apps/3/events", RawQuery: postQ, Body: postBody, Now: ts}, nil},
		{"get vector", RequestCheck{Method: "GET", Path: "/apps/3/channels", RawQuery: getQ, Now: ts}, nil},
		{"get vector lower method", RequestCheck{Method: "get", Path: "/apps/3/channels", RawQuery: getQ, Now: ts}, nil},
		{"within window", RequestCheck{Method: "GET", Path: "/apps/3/channels", RawQuery: getQ, Now: ts.Add(600 * time.Second)}, nil},
		{"stale", RequestCheck{Method: "GET", Path: "/apps/3/channels", RawQuery: getQ, Now: ts.Add(601 * time.Second)}, ErrAuthTimestamp},
		{"future", RequestCheck{Method: "GET", Path: "/apps/3/channels", RawQuery: getQ, Now: ts.Add(-601 * time.Second)}, ErrAuthTimestamp},
		{"window disabled", RequestCheck{Method: "GET", Path: "/apps/3/channels", RawQuery: getQ, Now: ts.Add(time.Hour), Window: -1}, nil},
		{"wrong path", RequestCheck{Method: "GET", Path: "/apps/4/channels", RawQuery: getQ, Now: ts}, ErrSignature},
		{"wrong method", RequestCheck{Method: "POST", Path: "/apps/3/channels", RawQuery: getQ, Now: ts}, ErrSignature},
		{"tampered body", RequestCheck{Method: "POST", Path: "/apps/3/events", RawQuery: postQ, Body: append(postBody, ' '), Now: ts}, ErrBodyMD5},
		{"body without md5", RequestCheck{Method: "GET", Path: "/apps/3/channels", RawQuery: getQ, Body: []byte("{}"), Now: ts}, ErrAuthMissing},
		{"no signature", RequestCheck{Method: "GET", Path: "/apps/3/channels", RawQuery: "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0", Now: ts}, ErrAuthMissing},
		{"unknown key", RequestCheck{Method: "GET", Path: "/apps/3/channels", RawQuery: "auth_key=x&auth_timestamp=1353088179&auth_version=1.0&auth_signature=00", Now: ts}, ErrAuthKey},
		{"bad version", RequestCheck{Method: "GET", Path: "/apps/3/channels", RawQuery: "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=2.0&auth_signature=00", Now: ts}, ErrAuthVersion},
		{"bad timestamp", RequestCheck{Method: "GET", Path: "/apps/3/channels", RawQuery: "auth_key=278d425bdf160c739803&auth_timestamp=abc&auth_version=1.0&auth_signature=00", Now: ts}, ErrAuthTimestamp},
		{"extra param", RequestCheck{Method: "GET", Path: "/apps/3/channels", RawQuery: getQ + "&x=1", Now: ts}, ErrSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Secret = secretOf
			_, key, err := VerifyRequest(tc.c)
			if tc.wantErr == nil {
				if err != nil || key != vecKey {
					t.Fatalf("err=%v key=%q", err, key)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err=%v want %v", err, tc.wantErr)
			}
		})
	}
}

func TestSignRequestRoundTrip(t *testing.T) {
	now := time.Unix(1353088179, 0)
	body := []byte(`{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}`)
	q := SignRequest(vecKey, vecSecret, "POST", "/apps/3/events", nil, body, now)
	if q["auth_signature"] != "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c" {
		t.Fatalf("signature %s", q["auth_signature"])
	}
	// Channel names with ';' and ',' in path and query (§5.2 quirks) must verify.
	path := "/apps/3/channels/presence-a@b,c;d=e"
	q = SignRequest(vecKey, vecSecret, "GET", path, map[string]string{"info": "user_count,subscription_count", "filter_by_prefix": "a;b"}, nil, now)
	raw := "auth_key=" + q["auth_key"] + "&auth_timestamp=" + q["auth_timestamp"] + "&auth_version=1.0&info=user_count,subscription_count&filter_by_prefix=a;b&auth_signature=" + q["auth_signature"]
	if _, _, err := VerifyRequest(RequestCheck{Method: "GET", Path: path, RawQuery: raw, Secret: secretOf, Now: now}); err != nil {
		t.Fatalf("raw query: %v", err)
	}
	if _, _, err := VerifyRequest(RequestCheck{Method: "GET", Path: path, RawQuery: EncodeQuery(q), Secret: secretOf, Now: now}); err != nil {
		t.Fatalf("encoded query: %v", err)
	}
}

// A subscribe-only grant must not verify as a plain one (upgrade), nor a
// plain one as subscribe-only (downgrade) or for another socket or channel.
func TestChannelGrants(t *testing.T) {
	const sock, ch, pch = "1234.1234", "private-ro-1", "presence-ro-1"
	pd := `{"user_id":"10"}`
	plain := ChannelAuth(vecKey, vecSecret, sock, ch, "")
	ro := SubscribeOnlyChannelAuth(vecKey, vecSecret, sock, ch, "")
	roPresence := SubscribeOnlyChannelAuth(vecKey, vecSecret, sock, pch, pd)
	_, roSig, _ := strings.Cut(ro, ":"+SubscribeOnlyTag)
	_, plainSig, _ := strings.Cut(plain, ":")
	tests := []struct {
		name             string
		sock, ch, cd     string
		token            string
		wantClientEvents bool
		wantErr          error
	}{
		{name: "plain grants client events", sock: sock, ch: ch, token: plain, wantClientEvents: true},
		{name: "subscribe-only", sock: sock, ch: ch, token: ro},
		{name: "subscribe-only presence", sock: sock, ch: pch, cd: pd, token: roPresence},
		{name: "tag stripped (upgrade)", sock: sock, ch: ch, token: vecKey + ":" + roSig, wantClientEvents: true, wantErr: ErrSignature},
		{name: "tag added to a plain token", sock: sock, ch: ch, token: vecKey + ":" + SubscribeOnlyTag + plainSig, wantErr: ErrSignature},
		{name: "subscribe-only for another socket", sock: "1234.1235", ch: ch, token: ro, wantErr: ErrSignature},
		{name: "subscribe-only for another channel", sock: sock, ch: "private-ro-2", token: ro, wantErr: ErrSignature},
		{name: "subscribe-only presence with other channel_data", sock: sock, ch: pch, cd: `{"user_id":"11"}`, token: roPresence, wantErr: ErrSignature},
		{name: "subscribe-only with another key", sock: sock, ch: ch, token: "otherkey:" + SubscribeOnlyTag + roSig, wantErr: ErrAuthKey},
		{name: "subscribe-only without signature", sock: sock, ch: ch, token: vecKey + ":" + SubscribeOnlyTag, wantErr: ErrAuthFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ce, err := VerifyChannelGrant(vecKey, vecSecret, tc.sock, tc.ch, tc.cd, tc.token)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && ce != tc.wantClientEvents {
				t.Fatalf("clientEvents = %v, want %v", ce, tc.wantClientEvents)
			}
		})
	}
	// A server that knows only Pusher's form refuses a subscribe-only token.
	if err := VerifyChannelAuth(vecKey, vecSecret, sock, ch, "", ro); !errors.Is(err, ErrSignature) {
		t.Fatalf("plain verification of a subscribe-only token: %v", err)
	}
}

// BenchmarkVerifyRequest is one signed POST /events checked as the HTTP API
// checks it (query parsed, timestamp, body MD5, HMAC).
//
//	go test -run '^$' -bench VerifyRequest -benchmem ./protocol
func BenchmarkVerifyRequest(b *testing.B) {
	ts := time.Unix(1353088179, 0)
	body := []byte(`{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}`)
	q := "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
	c := RequestCheck{Method: "POST", Path: "/apps/3/events", RawQuery: q, Body: body, Now: ts, Secret: secretOf}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := VerifyRequest(c); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerifySignatureForms: either hex case verifies, other lengths and
// non-hex do not, and the pooled HMAC states never mix secrets.
func TestVerifySignatureForms(t *testing.T) {
	sig := Sign("s1", "msg")
	for _, tc := range []struct {
		secret, sig string
		want        bool
	}{
		{"s1", sig, true},
		{"s1", strings.ToUpper(sig), true},
		{"s2", sig, false},
		{"s1", sig[:62], false},
		{"s1", sig + "00", false},
		{"s1", "zz" + sig[2:], false},
		{"s1", "", false},
	} {
		// Alternate secrets so each pool's state is reused after the other's.
		for range 3 {
			if got := VerifySignature(tc.secret, "msg", tc.sig); got != tc.want {
				t.Fatalf("VerifySignature(%q, msg, %q) = %v, want %v", tc.secret, tc.sig, got, tc.want)
			}
			if !VerifySignature("s2", "other", Sign("s2", "other")) {
				t.Fatal("s2 stopped verifying")
			}
		}
	}
}
