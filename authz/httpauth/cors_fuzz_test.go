package httpauth

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzOriginAllowed checks the auth endpoints' CORS origin policy against the syntax it
// shares with the WebSocket check (edge.Config.AllowedOrigins): an empty list, "*" and
// an exact entry (any case) allow; for an origin as browsers send it
// (scheme://host[:port]), a "*.example.com" entry allows exactly the hosts under
// example.com, and nothing else gets in. The oracle is a copy of edge's, so the two
// checks are held to the same rules.
//
//	go test -fuzz=FuzzOriginAllowed ./authz/httpauth
func FuzzOriginAllowed(f *testing.F) {
	for _, tc := range []struct{ list, origin string }{
		{"https://app.example.com,*.example.org", "https://app.example.com"},
		{"https://app.example.com,*.example.org", "https://web.example.org"},
		{"https://app.example.com,*.example.org", "https://evil.example"},
		{"https://app.example.com,*.example.org", "https://example.org"},
		{"https://app.example.com,*.example.org", "https://evilexample.org"},
		{"https://app.example.com,*.example.org", "https://web.example.org:8443"},
		{"*.example.org", "https://evil.example/.example.org"},
		{"*", "null"},
		{"", "https://anything.example"},
	} {
		f.Add(tc.list, tc.origin)
	}
	f.Fuzz(func(t *testing.T, list, origin string) {
		var allowed []string
		if list != "" {
			allowed = strings.Split(list, ",")
		}
		if origin == "" {
			return // cors answers requests without Origin before asking
		}
		h := &Handler{cfg: Config{AllowedOrigins: allowed}}
		checkOriginPolicy(t, allowed, origin, h.originAllowed(origin))
	})
}

// checkOriginPolicy is a copy of edge's oracle (edge/origin_fuzz_test.go).
func checkOriginPolicy(t *testing.T, allowed []string, origin string, got bool) {
	t.Helper()
	if len(allowed) == 0 || origin == "" {
		if !got {
			t.Fatalf("%q refused by %q", origin, allowed)
		}
		return
	}
	var wildcards []string
	for _, a := range allowed {
		if a == "*" || strings.EqualFold(a, origin) {
			if !got {
				t.Fatalf("%q refused by %q", origin, allowed)
			}
			return
		}
		if suffix, ok := strings.CutPrefix(a, "*."); ok {
			wildcards = append(wildcards, "."+strings.ToLower(suffix))
		}
	}
	u, err := url.Parse(origin)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" || u.User != nil || u.RawPath != "" ||
		u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || origin != u.Scheme+"://"+u.Host {
		return // not an origin a browser sends; only the rules above apply
	}
	host := strings.ToLower(u.Host)
	under := false
	for _, w := range wildcards {
		under = under || strings.HasSuffix(host, w)
	}
	if got != under {
		t.Fatalf("origin %q (host %q) with %q: allowed=%v, want %v", origin, host, allowed, got, under)
	}
}

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
