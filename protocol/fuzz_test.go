package protocol

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func FuzzParseChannel(f *testing.F) {
	for _, s := range []string{"my-channel", "private-x", "presence-cache-x", "private-encrypted-cache-", "#server-to-user-1", "#x", "", "a b", strings.Repeat("z", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		c, err := ParseChannel(name, 0)
		if err != nil {
			return
		}
		if c.Name != name || len(name) > DefaultMaxChannelNameLength || name == "" {
			t.Fatalf("accepted %q as %+v", name, c)
		}
		for i := 0; i < len(name); i++ {
			if !ValidChannelChar(name[i]) && (i != 0 || c.Kind != KindServerToUser) {
				t.Fatalf("accepted char %q in %q", name[i], name)
			}
		}
		if k, cache := KindOf(name); k != c.Kind || cache != c.Cache {
			t.Fatalf("KindOf disagrees for %q", name)
		}
	})
}

func FuzzVerifyRequest(f *testing.F) {
	now := time.Unix(1353088179, 0)
	q := SignRequest(vecKey, vecSecret, "POST", "/apps/3/events", nil, []byte(`{}`), now)
	f.Add("POST", "/apps/3/events", EncodeQuery(q), []byte(`{}`))
	f.Add("GET", "/apps/3/channels", "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&filter_by_prefix=presence-&info=user_count&auth_signature=16819168891cb5dfd72b5c7a5d3d602605b26c6ba1930033b5e2eeeb65010291", []byte(nil))
	f.Add("GET", "/", "auth_signature=&&=&%zz", []byte("x"))
	f.Fuzz(func(t *testing.T, method, path, raw string, body []byte) {
		params, key, err := VerifyRequest(RequestCheck{Method: method, Path: path, RawQuery: raw, Body: body, Secret: secretOf, Now: now})
		if err != nil {
			return
		}
		// Anything accepted must be exactly what the signer would produce.
		if key != vecKey || params["auth_version"] != AuthVersion {
			t.Fatalf("accepted bad auth params %v", params)
		}
		if len(body) > 0 && params["body_md5"] != BodyMD5(body) {
			t.Fatalf("accepted body with wrong md5")
		}
		if !VerifySignature(vecSecret, RequestStringToSign(method, path, params), ParseQuery(raw)["auth_signature"]) {
			t.Fatal("accepted without a valid signature")
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []string{`{"event":"pusher:subscribe","data":{"auth":"","channel":"x"}}`, `{"event":"pusher:ping","data":"{}"}`, `{"event":"client-a","channel":"private-a","data":"x"}`, `{}`, `null`, `"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			return
		}
		if m.Event == "" {
			t.Fatal("empty event accepted")
		}
		var sd SubscribeData
		_ = m.DecodeData(&sd)
		out := EncodeEvent(m.Event, m.Channel, m.DataString(), "")
		if !json.Valid(out) {
			t.Fatalf("re-encoded frame is not JSON: %s", out)
		}
	})
}

// FuzzVerifyChannelGrant: whatever the token, it verifies only when it is
// exactly the plain or the subscribe-only token for the request, and the
// grant reported matches the form.
func FuzzVerifyChannelGrant(f *testing.F) {
	const sock, ch = "1234.1234", "private-ro-1"
	plain := ChannelAuth(vecKey, vecSecret, sock, ch, "")
	ro := SubscribeOnlyChannelAuth(vecKey, vecSecret, sock, ch, "")
	for _, s := range []string{plain, ro, "", ":", vecKey + ":" + SubscribeOnlyTag, vecKey + "::" + plain, strings.ToUpper(ro)} {
		f.Add(s, "")
	}
	f.Add(ro, `{"user_id":"1"}`)
	f.Fuzz(func(t *testing.T, token, channelData string) {
		ce, err := VerifyChannelGrant(vecKey, vecSecret, sock, ch, channelData, token)
		if err != nil {
			return
		}
		wantPlain := ChannelAuth(vecKey, vecSecret, sock, ch, channelData)
		wantRO := SubscribeOnlyChannelAuth(vecKey, vecSecret, sock, ch, channelData)
		switch {
		case strings.EqualFold(token, wantPlain) && ce:
		case strings.EqualFold(token, wantRO) && !ce:
		default:
			t.Fatalf("token %q verified with clientEvents=%v for channel_data %q", token, ce, channelData)
		}
	})
}
