// Package authz decides who may do what: it verifies JWTs, evaluates the
// channel rules and signs Pusher channel subscriptions and user sign-ins.
// It is a domain package: no gRPC, no generated code; transports map its
// errors (see errors.go) to statuses.
//
// Guarantees:
//
//   - Service scopes come only from a "scope" claim that is one
//     space-separated string; arrays and comma lists grant nothing. Which
//     verifier trusts service tokens is the caller's choice (the app uses a
//     separate one, jwt.service).
//   - Tokens: only the configured algorithms verify (derived from the keys
//     when none are configured); "none" never does. Each algorithm is checked
//     only against keys of its own type, so an HS256 token "signed" with an
//     RSA public key's bytes fails (no HS/RS key confusion). exp is required;
//     nbf, iat, iss and aud are checked, with the configured leeway. JWKS
//     keys are cached, refreshed in the background, and an unknown kid causes
//     at most one refetch per JWKSMinRefetch (default one minute). Symmetric
//     keys are never taken from a JWKS, a JWKS URL must be https (or
//     loopback), a fetched set over 1 MiB is refused, and keys the verifier
//     cannot use are skipped and logged without taking the set down. Verified tokens are cached per key set, keyed by SHA-256,
//     never past exp+leeway; a reload drops the cache with the old keys.
//     Every token failure is a *TokenError matching ErrUnauthenticated;
//     messages never contain tokens or keys (kid values are quoted and
//     truncated; JWKS URLs lose credentials and query).
//   - Channels: default deny. Public channels need no token. Private,
//     presence and private-encrypted channels (and their cache- variants)
//     need a principal and a rule: the first rule whose pattern matches
//     decides, and a channel no rule matches is refused. A CEL expression
//     that fails at run time denies (and is logged with the rule name).
//     Rule sets are compiled whole before they replace the live set: a bad
//     set (syntax, unknown capture, CEL type error) is an error naming the
//     rule and the previous set stays in force.
//   - Signatures follow PUSHER-PROTOCOL.md §3 (string layouts of package
//     protocol; tests check the tokens are identical). Socket ids (\d+.\d+,
//     <=64 characters), channel names, user ids (<=128 characters) and
//     user_info (a JSON object, <=1 KB after merging over the token's name)
//     and sign-in watchlists (<=100 user ids) are validated before anything is
//     signed. user_info from a browser (BrowserUserInfo) is untrusted: only
//     AuthorizerConfig.BrowserUserInfoKeys survive, the token's claims win
//     over them, and rule expressions do not see it; a trusted caller's
//     (UserInfo, gRPC) wins over the token's name.
//   - Permissions: a grant without client-events is signed subscribe-only
//     (protocol.SubscribeOnlyTag), which the embedded server enforces; with
//     HostedPusher grants are signed plain and report client-events.
//     Encrypted channels without a master key are refused with
//     ErrEncryptionUnavailable, never signed without a shared secret.
//   - Errors: *TokenError (ErrUnauthenticated), *DeniedError
//     (ErrPermissionDenied, with the deciding rule), *ArgumentError
//     (ErrInvalidArgument, with the request field).
//
// Hot path: a decision reads an immutable compiled snapshot (atomic
// pointer), matches patterns without regexps or allocation, evaluates CEL
// programs planned at load time over values converted once per token, and
// signs with pooled HMAC state. See BENCHMARKS.md "Authorization".
//
// JWKS: github.com/MicahParks/jwkset decodes and validates each JWK of a
// file or URL set. What stays ours, and why:
//
//   - Scheduling: the first fetch in NewVerifier (a failure is an error), a
//     background refresh started by a request once the set is older than
//     JWKSRefresh, an unknown-kid refetch at most once per JWKSMinRefetch,
//     all on VerifierConfig.Now. jwkset's HTTP storage refreshes on a
//     wall-clock ticker and limits unknown-kid refreshes with x/time/rate,
//     neither of which that clock drives; its unknown-kid path can hold the
//     request waiting for the limiter (up to RateLimitWaitMax) where ours
//     answers ErrTokenUnknownKey at once; and its refresh cannot be called
//     from outside.
//   - The fetch (one GET): jwkset reads the body unbounded (ours refuses
//     over 1 MiB), fails the whole set on one malformed key (ours skips it
//     and logs why), drops unsupported keys unlogged, and its errors carry
//     the URL with its query (ours drop credentials and query).
//   - Lookups: one immutable snapshot of secret, PEM, JWKS file and URL keys
//     with the algorithm-family check. Measured by
//     go test -run '^$' -bench 'VerifyJWKS$|JWKSKeyfunc' -benchmem ./authz/
//     (2 shared vCPUs, 6 interleaved runs, medians, 2026-12-07): picking the
//     key of an RS256 token in a four-key set takes 162 ns, 72 B, 3 allocs
//     from the snapshot and 4.1 us, 4744 B, 6 allocs with keyfunc/v3's
//     Keyfunc over jwkset storage; an uncached Verify is 75 us, 7728 B, 117
//     allocs against 84 us, 12689 B, 128 allocs with keyfunc. Decoding with
//     jwkset left Verify as it was: 73 us before, 75 us after, 7728 B and
//     117 allocs both (runs spread about 15%).
package authz
