package clientip

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver finds client addresses. The zero value trusts no proxy. It is safe
// for concurrent use.
type Resolver struct {
	trusted []netip.Prefix
}

// New trusts the proxies in cidrs: CIDR prefixes ("10.0.0.0/8") or single
// addresses ("127.0.0.1", "::1").
func New(cidrs []string) (*Resolver, error) {
	r := &Resolver{}
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return nil, fmt.Errorf("%q is neither a CIDR prefix nor an IP address", c)
			}
			a = a.Unmap()
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		r.trusted = append(r.trusted, p.Masked())
	}
	return r, nil
}

// Client is where a request came from.
type Client struct {
	// IP is the client's address; invalid when the peer address is not an IP
	// (a Unix socket, say).
	IP netip.Addr
	// Addr is what logs and connection listings show: the peer's host:port
	// when it connected directly, the client's address when a proxy forwarded it.
	Addr string
	// Forwarded is true when IP came from a forwarding header.
	Forwarded bool
	// Ignored is true when the request carried forwarding headers that were not
	// used because the peer is not a trusted proxy.
	Ignored bool
}

// Key is the client's key for per-address limits (see Key).
func (c Client) Key() string {
	if !c.IP.IsValid() {
		return c.Addr
	}
	return Key(c.IP)
}

// Key is a's key for per-address limits: IPv4 addresses as they are, IPv6
// addresses by their /64.
func Key(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}

// Trusted reports whether a is in a trusted proxy range.
func (r *Resolver) Trusted(a netip.Addr) bool {
	if r == nil || !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Resolve finds req's client.
func (r *Resolver) Resolve(req *http.Request) Client {
	peer := Client{Addr: req.RemoteAddr}
	if ap, err := netip.ParseAddrPort(req.RemoteAddr); err == nil {
		peer.IP = ap.Addr().Unmap().WithZone("")
	} else if a, err := netip.ParseAddr(req.RemoteAddr); err == nil {
		peer.IP = a.Unmap().WithZone("")
	}
	hops := forwardedFor(req.Header)
	if hops == nil {
		return peer
	}
	if !r.Trusted(peer.IP) {
		peer.Ignored = true
		return peer
	}
	last := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			return last
		}
		last = Client{IP: a, Addr: a.String(), Forwarded: true}
		if !r.Trusted(a) {
			return last
		}
	}
	return last
}

// forwardedFor lists the hops of X-Forwarded-For, left to right, or, when the
// request has none, the for= values of Forwarded. nil when neither is present.
func forwardedFor(h http.Header) []string {
	if xff := h.Values("X-Forwarded-For"); len(xff) > 0 {
		var hops []string
		for _, v := range xff {
			for _, e := range strings.Split(v, ",") {
				hops = append(hops, strings.TrimSpace(e))
			}
		}
		return hops
	}
	fwd := h.Values("Forwarded")
	if len(fwd) == 0 {
		return nil
	}
	var hops []string
	for _, v := range fwd {
		for _, elem := range splitQuoted(v, ',') {
			hop := "" // an element without for= is an unknown hop
			for _, pair := range splitQuoted(elem, ';') {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "for") {
					hop = strings.Trim(strings.TrimSpace(val), `"`)
				}
			}
			hops = append(hops, hop)
		}
	}
	return hops
}

// splitQuoted splits s at sep outside double quotes.
func splitQuoted(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case sep:
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// parseHop reads one hop: an address, with or without a port, IPv6 with or
// without brackets.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}
