package clientip

import (
	"net/http"
	"testing"
)

func TestResolve(t *testing.T) {
	r, err := New([]string{"10.0.0.0/8", "127.0.0.1", "2001:db8:ffff::/48"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		remote string
		header map[string][]string
		ip     string
		fwd    bool
		ign    bool
	}{
		{"direct", "203.0.113.9:5000", nil, "203.0.113.9", false, false},
		{"untrusted peer's header ignored", "203.0.113.9:5000", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "203.0.113.9", false, true},
		{"trusted peer", "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1", true, false},
		{"right-most untrusted wins over a forged left", "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"1.2.3.4, 198.51.100.1, 10.1.1.1"}}, "198.51.100.1", true, false},
		{"several header lines", "10.9.9.9:1", map[string][]string{"X-Forwarded-For": {"1.2.3.4", "198.51.100.2"}}, "198.51.100.2", true, false},
		{"all trusted: left-most", "127.0.0.1:1", map[string][]string{"X-Forwarded-For": {"10.0.0.5, 10.0.0.6"}}, "10.0.0.5", true, false},
		{"garbage stops at the last trusted hop", "127.0.0.1:1", map[string][]string{"X-Forwarded-For": {"1.2.3.4, nonsense, 10.0.0.7"}}, "10.0.0.7", true, false},
		{"hop with port", "127.0.0.1:1", map[string][]string{"X-Forwarded-For": {"198.51.100.3:4444"}}, "198.51.100.3", true, false},
		{"ipv4-mapped peer", "[::ffff:127.0.0.1]:1", map[string][]string{"X-Forwarded-For": {"198.51.100.4"}}, "198.51.100.4", true, false},
		{"forwarded", "127.0.0.1:1", map[string][]string{"Forwarded": {`for=1.2.3.4, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.1`}}, "2001:db8:cafe::17", true, false},
		{"forwarded unknown", "127.0.0.1:1", map[string][]string{"Forwarded": {`for=unknown`}}, "127.0.0.1", false, false},
		{"forwarded mixed case", "127.0.0.1:1", map[string][]string{"Forwarded": {`proto=http;For=198.51.100.5`}}, "198.51.100.5", true, false},
		{"x-forwarded-for preferred", "127.0.0.1:1", map[string][]string{"Forwarded": {`for=1.2.3.4`}, "X-Forwarded-For": {"198.51.100.6"}}, "198.51.100.6", true, false},
		{"trusted ipv6 proxy", "[2001:db8:ffff::1]:443", map[string][]string{"X-Forwarded-For": {"2001:db8:1::9"}}, "2001:db8:1::9", true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
			for k, vs := range tc.header {
				for _, v := range vs {
					req.Header.Add(k, v)
				}
			}
			c := r.Resolve(req)
			if c.IP.String() != tc.ip || c.Forwarded != tc.fwd || c.Ignored != tc.ign {
				t.Fatalf("got %s forwarded=%v ignored=%v, want %s %v %v", c.IP, c.Forwarded, c.Ignored, tc.ip, tc.fwd, tc.ign)
			}
		})
	}
}

func TestKey(t *testing.T) {
	r := &Resolver{}
	a := r.Resolve(&http.Request{RemoteAddr: "[2001:db8:1:2::1]:1"}).Key()
	b := r.Resolve(&http.Request{RemoteAddr: "[2001:db8:1:2:ffff::9]:1"}).Key()
	if a != b || a != "2001:db8:1:2::/64" {
		t.Fatalf("one /64, keys %q and %q", a, b)
	}
	if k := r.Resolve(&http.Request{RemoteAddr: "192.0.2.1:9"}).Key(); k != "192.0.2.1" {
		t.Fatalf("ipv4 key %q", k)
	}
}

func TestNewRejects(t *testing.T) {
	for _, bad := range []string{"", "10.0.0.0/33", "example.com", "10.0.0.1/8/2"} {
		if _, err := New([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Whatever the headers say, an untrusted peer is its own client, and a
// trusted peer's client is the peer or a plain address from the headers.
func FuzzResolve(f *testing.F) {
	f.Add("127.0.0.1:1", "1.2.3.4, 10.0.0.1", "")
	f.Add("127.0.0.1:1", "", `for="[2001:db8::1]:80";proto=https, for=unknown`)
	f.Add("203.0.113.1:9", "198.51.100.1", "for=198.51.100.2")
	f.Add("[::ffff:10.1.2.3]:1", "garbage,,", `for=";,"`)
	r, err := New([]string{"127.0.0.0/8", "10.0.0.0/8", "2001:db8:ffff::/48"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, remote, xff, fwd string) {
		req := &http.Request{RemoteAddr: remote, Header: http.Header{}}
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		if fwd != "" {
			req.Header.Set("Forwarded", fwd)
		}
		c := r.Resolve(req)
		direct := r.Resolve(&http.Request{RemoteAddr: remote})
		if !r.Trusted(direct.IP) || (xff == "" && fwd == "") {
			if c.IP != direct.IP || c.Forwarded {
				t.Fatalf("peer %q: resolved %v forwarded=%v from headers it may not use", remote, c.IP, c.Forwarded)
			}
			return
		}
		if c.Forwarded && (!c.IP.IsValid() || c.IP.Zone() != "" || c.IP.Is4In6()) {
			t.Fatalf("forwarded client %v is not a plain address", c.IP)
		}
		if !c.Forwarded && c.IP != direct.IP {
			t.Fatalf("not forwarded, yet %v is not the peer %v", c.IP, direct.IP)
		}
	})
}
