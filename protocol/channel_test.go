package protocol

import (
	"errors"
	"strings"
	"testing"
)

func TestParseChannel(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		kind    ChannelKind
		cache   bool
		user    string
		wantErr error
	}{
		{"public", "my-channel", KindPublic, false, "", nil},
		{"private", "private-x", KindPrivate, false, "", nil},
		{"presence", "presence-x", KindPresence, false, "", nil},
		{"encrypted", "private-encrypted-x", KindPrivateEncrypted, false, "", nil},
		{"cache public", "cache-x", KindPublic, true, "", nil},
		{"cache private", "private-cache-x", KindPrivate, true, "", nil},
		{"cache presence", "presence-cache-x", KindPresence, true, "", nil},
		{"cache encrypted", "private-encrypted-cache-x", KindPrivateEncrypted, true, "", nil},
		{"bare private word is public", "private", KindPublic, false, "", nil},
		{"privatex is public", "privatex-1", KindPublic, false, "", nil},
		{"all chars", "a-zA-Z0-9_-=@,.;", KindPublic, false, "", nil},
		{"server to user", "#server-to-user-7", KindServerToUser, false, "7", nil},
		{"max length", strings.Repeat("a", 164), KindPublic, false, "", nil},
		{"too long", strings.Repeat("a", 165), 0, false, "", ErrChannelNameTooLong},
		{"empty", "", 0, false, "", ErrChannelNameEmpty},
		{"space", "a b", 0, false, "", ErrChannelNameChars},
		{"slash", "a/b", 0, false, "", ErrChannelNameChars},
		{"unicode", "é", 0, false, "", ErrChannelNameChars},
		{"hash other", "#foo", 0, false, "", ErrChannelReserved},
		{"server to user empty id", "#server-to-user-", 0, false, "", ErrChannelReserved},
		{"server to user bad id", "#server-to-user-a b", 0, false, "", ErrChannelNameChars},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseChannel(tc.in, 0)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err=%v want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Kind != tc.kind || c.Cache != tc.cache || c.UserID != tc.user || c.Name != tc.in {
				t.Fatalf("got %+v", c)
			}
			if k, cache := KindOf(tc.in); k != tc.kind || cache != tc.cache {
				t.Fatalf("KindOf = %v %v", k, cache)
			}
		})
	}
}

func TestLimitsDefaults(t *testing.T) {
	l := DefaultLimits()
	want := Limits{10240, 100, 10, 200, 164, 100, 1024, 128, 100, 10, 5000}
	if l != want {
		t.Fatalf("defaults %+v", l)
	}
	if err := (Limits{MaxPayloadBytes: -1}).Validate(); !errors.Is(err, ErrLimits) {
		t.Fatalf("err %v", err)
	}
	if err := (Limits{MaxPresenceMembers: -1}).Validate(); err != nil {
		t.Fatal(err)
	}
	if !Within(5, -1) || Within(6, 5) || !Within(5, 5) {
		t.Fatal("Within")
	}
}

func TestSocketID(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		id := NewSocketID()
		if !ValidSocketID(id) {
			t.Fatalf("invalid id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate %q", id)
		}
		seen[id] = true
	}
	for _, tc := range []struct {
		in string
		ok bool
	}{{"1.2", true}, {"264774.13368624", true}, {"1.", false}, {".1", false}, {"1.2.3", false}, {"a.1", false}, {"", false}, {"12", false}, {"1.2\n", false}} {
		if ValidSocketID(tc.in) != tc.ok {
			t.Errorf("ValidSocketID(%q) != %v", tc.in, tc.ok)
		}
	}
}
