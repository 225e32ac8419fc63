package protocol

import (
	"net/url"
	"strings"
	"testing"
)

// originCases are the unit cases and the fuzz seeds: the WebSocket upgrade's and
// the auth endpoints' cases, which used to be checked by two copies.
var originCases = []struct {
	name, list, origin string
	want               bool
}{
	{"empty list", "", "https://anything.example", true},
	{"no origin", "https://ok.example", "", true},
	{"any", "*", "null", true},
	{"exact", "https://ok.example,*.good.example", "https://ok.example", true},
	{"exact any case", "https://OK.example", "HTTPS://ok.EXAMPLE", true},
	{"under wildcard", "https://ok.example,*.good.example", "https://a.good.example", true},
	{"wildcard is not its apex", "https://ok.example,*.good.example", "https://good.example", false},
	{"wildcard needs the dot", "https://ok.example,*.good.example", "https://evilgood.example", false},
	{"wildcard is a suffix", "https://ok.example,*.good.example", "https://a.good.example.evil", false},
	{"port makes another host", "https://ok.example,*.good.example", "https://a.good.example:8443", false},
	{"other origin", "https://app.example.com,*.example.org", "https://evil.example", false},
	{"under second wildcard", "https://app.example.com,*.example.org", "https://web.example.org", true},
	// Not a browser origin (browsers never send a path); only the syntax rules apply.
	{"path", "*.good.example", "https://evil.example/.good.example", true},
}

func TestOriginAllowed(t *testing.T) {
	for _, tc := range originCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := OriginAllowed(splitList(tc.list), tc.origin); got != tc.want {
				t.Fatalf("OriginAllowed(%q, %q) = %v, want %v", tc.list, tc.origin, got, tc.want)
			}
		})
	}
}

// FuzzOriginAllowed checks the origin policy (edge.Config.AllowedOrigins and
// httpauth.Config.AllowedOrigins) against what it documents: an empty list, "*", a
// missing Origin and an exact entry (any case) allow; for an origin as browsers send
// it (scheme://host[:port]), a "*.example.com" entry allows exactly the hosts under
// example.com, and nothing else gets in.
//
//	go test -fuzz=FuzzOriginAllowed ./protocol
func FuzzOriginAllowed(f *testing.F) {
	for _, tc := range originCases {
		f.Add(tc.list, tc.origin)
	}
	f.Fuzz(func(t *testing.T, list, origin string) {
		allowed := splitList(list)
		checkOriginPolicy(t, allowed, origin, OriginAllowed(allowed, origin))
	})
}

func splitList(list string) []string {
	if list == "" {
		return nil
	}
	return strings.Split(list, ",")
}

// checkOriginPolicy is the oracle for FuzzOriginAllowed, written from the
// documentation rather than from the check.
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
