package httpauth

import (
	"strings"
	"testing"
)

// FuzzPreflightHeaders: a preflight's Access-Control-Request-Headers lines are accepted
// only when they hold at most maxPreflightHeaders names, each an RFC 9110 token of at
// most 64 bytes; the answer then starts with Authorization and Content-Type, names every
// other requested header, and holds nothing else, so it is a safe header value.
//
//	go test -fuzz=FuzzPreflightHeaders ./authz/httpauth
func FuzzPreflightHeaders(f *testing.F) {
	for _, tc := range [][2]string{
		{"authorization,content-type,x-csrf-token", ""},
		{"authorization", ""},
		{"x bad", ""},
		{"X-A, X-B", "x-c,,"},
		{strings.Repeat("x,", 17), ""},
		{"x-\r\nset-cookie: a", ""},
		{"", ""},
	} {
		f.Add(tc[0], tc[1])
	}
	f.Fuzz(func(t *testing.T, l1, l2 string) {
		var names []string
		for _, line := range []string{l1, l2} {
			for _, n := range strings.Split(line, ",") {
				if n = strings.TrimSpace(n); n != "" {
					names = append(names, n)
				}
			}
		}
		valid := len(names) <= maxPreflightHeaders
		for _, n := range names {
			valid = valid && isToken(n) && len(n) <= 64
		}
		out, ok := preflightHeaders([]string{l1, l2})
		if ok != valid {
			t.Fatalf("%q %q: ok=%v, want %v (%q)", l1, l2, ok, valid, out)
		}
		if !ok {
			if out != "" {
				t.Fatalf("refused with %q", out)
			}
			return
		}
		got := strings.Split(out, ", ")
		if len(got) < 2 || got[0] != "Authorization" || got[1] != "Content-Type" {
			t.Fatalf("answer %q", out)
		}
		var want []string
		for _, n := range names {
			if l := strings.ToLower(n); l != "authorization" && l != "content-type" {
				want = append(want, n)
			}
		}
		if strings.Join(got[2:], ",") != strings.Join(want, ",") {
			t.Fatalf("answer %q for names %q", out, names)
		}
		for _, n := range got {
			if !isToken(n) {
				t.Fatalf("answer %q holds %q", out, n)
			}
		}
	})
}

// isToken is RFC 9110's tchar+, written out independently of validHeaderName.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}
