package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzParsePresenceData: presence channel_data either fails with ErrPresenceData or
// yields a non-empty user id and a user_info that is JSON; re-encoding what was parsed
// parses back to the same values.
//
//	go test -fuzz=FuzzParsePresenceData ./protocol
func FuzzParsePresenceData(f *testing.F) {
	for _, tc := range presenceDataCases {
		f.Add(tc.in)
	}
	f.Add(`{"user_id":1e400}`)
	f.Add(`{"user_id":"\ud800","user_info":[1,{"a":null}]}`)
	f.Fuzz(func(t *testing.T, s string) {
		checkUser(t, s, "user_id", ParsePresenceData)
	})
}

// FuzzParseUserData: the same properties for sign-in user_data, whose id field is "id".
//
//	go test -fuzz=FuzzParseUserData ./protocol
func FuzzParseUserData(f *testing.F) {
	for _, tc := range watchlistCases {
		f.Add(tc.in)
	}
	f.Add(`{"id":7,"user_info":{"name":"A"},"watchlist":["1"]}`)
	f.Add(`{"id":"","user_info":{}}`)
	f.Fuzz(func(t *testing.T, s string) {
		checkUser(t, s, "id", ParseUserData)
	})
}

func checkUser(t *testing.T, s, idField string, parse func(string) (PresenceData, error)) {
	pd, err := parse(s)
	if err != nil {
		if !errors.Is(err, ErrPresenceData) {
			t.Fatalf("error %v is not ErrPresenceData", err)
		}
		return
	}
	if pd.UserID == "" {
		t.Fatalf("%q: accepted an empty id", s)
	}
	if pd.UserInfo != nil && !json.Valid(pd.UserInfo) {
		t.Fatalf("%q: user_info %q is not JSON", s, pd.UserInfo)
	}
	if !json.Valid([]byte(s)) {
		t.Fatalf("accepted %q, which is not JSON", s)
	}
	// Round trip through the encoder: the id as a JSON string, user_info verbatim.
	id, _ := json.Marshal(pd.UserID)
	doc := `{"` + idField + `":` + string(id)
	if pd.UserInfo != nil {
		doc += `,"user_info":` + string(pd.UserInfo)
	}
	doc += "}"
	again, err := parse(doc)
	if err != nil {
		t.Fatalf("re-encoded %s does not parse: %v", doc, err)
	}
	if again.UserID != pd.UserID || !bytes.Equal(again.UserInfo, pd.UserInfo) {
		t.Fatalf("round trip of %q: %+v, then %+v", s, pd, again)
	}
}

// FuzzParseWatchlist: an accepted watchlist has no empty and no repeated ids, keeps the
// order of first appearance, and survives a round trip through encoding/json.
//
//	go test -fuzz=FuzzParseWatchlist ./protocol
func FuzzParseWatchlist(f *testing.F) {
	for _, tc := range watchlistCases {
		f.Add(tc.in)
	}
	f.Add(`{"watchlist":null}`)
	f.Add(`{"watchlist":["",0,"0",1.50,"1.50",-0]}`)
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := ParseWatchlist(s)
		if err != nil {
			if !errors.Is(err, ErrPresenceData) {
				t.Fatalf("error %v is not ErrPresenceData", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if id == "" || seen[id] {
				t.Fatalf("%q: empty or repeated id in %q", s, ids)
			}
			seen[id] = true
		}
		doc, err := json.Marshal(map[string][]string{"watchlist": ids})
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseWatchlist(string(doc))
		if err != nil || !slices.Equal(again, ids) {
			t.Fatalf("round trip of %q: %q, then %q (%v)", s, ids, again, err)
		}
	})
}

// FuzzVerifyWebhook: the signature of any body verifies (in either hex case), and no
// other signature, no mutated signature, no other body and no other key does.
//
//	go test -fuzz=FuzzVerifyWebhook ./protocol
func FuzzVerifyWebhook(f *testing.F) {
	for _, tc := range webhookCases() {
		f.Add(tc.body, tc.key, tc.sig, uint8(0))
	}
	f.Add([]byte{}, vecKey, "", uint8(63))
	f.Fuzz(func(t *testing.T, body []byte, key, sig string, pos uint8) {
		good := WebhookSignature(vecSecret, body)
		if err := VerifyWebhook(vecKey, vecSecret, vecKey, good, body); err != nil {
			t.Fatalf("own signature refused: %v", err)
		}
		if err := VerifyWebhook(vecKey, vecSecret, vecKey, strings.ToUpper(good), body); err != nil {
			t.Fatalf("upper-case signature refused: %v", err)
		}
		// One hex digit changed.
		i := int(pos) % len(good)
		b := []byte(good)
		b[i] = "0123456789abcdef"[(strings.IndexByte("0123456789abcdef", b[i])+1)%16]
		if err := VerifyWebhook(vecKey, vecSecret, vecKey, string(b), body); !errors.Is(err, ErrSignature) {
			t.Fatalf("mutated signature %s: %v", b, err)
		}
		// The signature of another body.
		other := append(slices.Clone(body), byte(pos))
		if err := VerifyWebhook(vecKey, vecSecret, vecKey, good, other); !errors.Is(err, ErrSignature) {
			t.Fatalf("signature accepted for another body: %v", err)
		}
		// Arbitrary key and signature.
		err := VerifyWebhook(vecKey, vecSecret, key, sig, body)
		switch {
		case err == nil:
			if key != vecKey || !strings.EqualFold(sig, good) {
				t.Fatalf("accepted key %q signature %q (want %q)", key, sig, good)
			}
		case key != vecKey:
			if !errors.Is(err, ErrAuthKey) {
				t.Fatalf("wrong key: %v", err)
			}
		case !errors.Is(err, ErrSignature):
			t.Fatalf("bad signature: %v", err)
		}
	})
}

// FuzzDecodeMasterKey: an accepted master key is 32 bytes and its canonical encoding
// decodes to the same key; anything else is ErrMasterKeySize.
//
//	go test -fuzz=FuzzDecodeMasterKey ./protocol
func FuzzDecodeMasterKey(f *testing.F) {
	f.Add("nxzvbGF+f8FGhk/jOaZvgMle1tqxzF/VfUZLBLhhaH0=")
	f.Add("c2hvcnQ=")
	f.Add("nxzvbGF+f8FGhk/jOaZvgMle1tqxzF/VfUZLBLhhaH0")
	f.Add("nxzvbGF+f8FGhk/jOaZvgMle1tqxzF_VfUZLBLhhaH0=")
	f.Add("nxzvbGF+f8FGhk/jOaZv\ngMle1tqxzF/VfUZLBLhhaH1=")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := DecodeMasterKey(s)
		if err != nil {
			if !errors.Is(err, ErrMasterKeySize) || k != nil {
				t.Fatalf("%q: error %v with key %x", s, err, k)
			}
			return
		}
		if len(k) != 32 {
			t.Fatalf("%q: accepted a %d-byte key", s, len(k))
		}
		canon := base64.StdEncoding.EncodeToString(k)
		again, err := DecodeMasterKey(canon)
		if err != nil || !bytes.Equal(again, k) {
			t.Fatalf("canonical %s of %q: %x %v", canon, s, again, err)
		}
		if ss := SharedSecret("private-encrypted-x", k); len(ss) != 44 {
			t.Fatalf("shared secret %q", ss)
		}
	})
}
