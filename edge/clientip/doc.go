// Package clientip finds the address of the client behind an HTTP request, the
// one address the realtime listener limits, logs and reports.
//
// What it guarantees:
//   - Forwarding headers are read only when the TCP peer is a trusted proxy
//     (Resolver built from CIDRs). From any other peer the peer's address is the
//     client's, whatever X-Forwarded-For or Forwarded say.
//   - From a trusted peer the chain in X-Forwarded-For (or, when that header is
//     absent, the for= parameters of RFC 7239 Forwarded) is walked from the
//     right, and the first address that is not itself a trusted proxy is the
//     client. Entries to its left were written by the client or by proxies we do
//     not trust, so they are never used. An entry that is not an address
//     ("unknown", an obfuscated name, garbage) stops the walk at the last
//     trusted hop, which then stands for the client. When every entry is
//     trusted, the left-most one is the client.
//   - Key groups addresses for per-address limits: an IPv4 address is its own
//     key, an IPv6 address counts with its /64 (one subscriber's network), so a
//     host cannot escape a limit by rotating addresses inside its prefix.
package clientip
