package edge

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/milequest/pushercm/protocol"
)

// FuzzOriginAllowed checks the WebSocket origin policy (Config.AllowedOrigins) against
// what it documents: an empty list, "*", a missing Origin and an exact entry (any case)
// allow; for an origin as browsers send it (scheme://host[:port]), a "*.example.com"
// entry allows exactly the hosts under example.com, and nothing else gets in.
//
//	go test -fuzz=FuzzOriginAllowed ./edge
func FuzzOriginAllowed(f *testing.F) {
	for _, tc := range []struct{ list, origin string }{
		{"https://ok.example,*.good.example", "https://ok.example"},
		{"https://ok.example,*.good.example", "https://a.good.example"},
		{"https://ok.example,*.good.example", "https://good.example"},
		{"https://ok.example,*.good.example", "https://evilgood.example"},
		{"https://ok.example,*.good.example", "https://a.good.example.evil"},
		{"https://ok.example,*.good.example", "https://a.good.example:8443"},
		{"*.good.example", "https://evil.example/.good.example"},
		{"*", "null"},
		{"", "https://x"},
		{"https://OK.example", "HTTPS://ok.EXAMPLE"},
	} {
		f.Add(tc.list, tc.origin)
	}
	f.Fuzz(func(t *testing.T, list, origin string) {
		var allowed []string
		if list != "" {
			allowed = strings.Split(list, ",")
		}
		s := &Server{cfg: Config{AllowedOrigins: allowed}}
		checkOriginPolicy(t, allowed, origin, s.originAllowed(origin))
	})
}

// checkOriginPolicy is the oracle for FuzzOriginAllowed; authz/httpauth holds a copy
// for its own check, which documents the same syntax.
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

// FuzzCheckVersion: only protocol 5 to 7 connects; every refusal has its Pusher code and
// a short message that encodes into a valid pusher:error frame.
//
//	go test -fuzz=FuzzCheckVersion ./edge
func FuzzCheckVersion(f *testing.F) {
	for _, s := range []string{"protocol=7", "protocol=5&client=js", "", "protocol=", "protocol=seven", "protocol=3", "protocol=8",
		"protocol=+7", "protocol=007", "protocol=7&protocol=3", "protocol=99999999999999999999999", "protocol=-7", "protocol=%ff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		code, msg := checkVersion(q)
		if (code == 0) != (msg == "") || len(msg) > 64 {
			t.Fatalf("%q: code %d message %q", raw, code, msg)
		}
		v := q["protocol"]
		switch code {
		case 0:
			digits := strings.TrimLeft(strings.TrimPrefix(v[0], "+"), "0")
			if digits != "5" && digits != "6" && digits != "7" {
				t.Fatalf("%q: accepted protocol %q", raw, v[0])
			}
		case protocol.CodeNoProtocol:
			if len(v) > 0 && v[0] != "" {
				t.Fatalf("%q: protocol %q reported missing", raw, v[0])
			}
		case protocol.CodeInvalidVersion, protocol.CodeUnsupportedProtocol:
		default:
			t.Fatalf("%q: code %d", raw, code)
		}
		if code != 0 && !json.Valid(protocol.EncodeError(code, msg, "")) {
			t.Fatalf("%q: refusal frame is not JSON", raw)
		}
	})
}
