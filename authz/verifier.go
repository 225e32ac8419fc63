package authz

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
)

// VerifierConfig says where keys come from and which tokens are acceptable.
// At least one key source must be set; several may be combined (for example
// a secret for dev tokens and a JWKS URL for the identity provider).
type VerifierConfig struct {
	// Secret is the HMAC key for HS* tokens (PUSHERCM_JWT_SECRET). Empty: no
	// HS* token verifies.
	Secret []byte
	// PublicKeyFile is a PEM file of public keys and/or certificates (RSA, EC
	// P-256/384/521, Ed25519). Re-read by Reload.
	PublicKeyFile string
	// JWKSFile is a JSON Web Key Set on disk. Re-read by Reload.
	JWKSFile string
	// JWKSURL is fetched at start (a failure stops NewVerifier), refreshed in
	// the background every JWKSRefresh, and refetched when a token names an
	// unknown kid, at most once per JWKSMinRefetch.
	JWKSURL string

	// Algorithms accepted. Empty: derived from the keys (HS256 for a secret,
	// RS*/PS* for RSA keys, the curve's ES* for EC keys, EdDSA for Ed25519,
	// or the JWK's own "alg"). "none" is always refused.
	Algorithms []string
	// Issuer, when set, must equal the token's iss.
	Issuer string
	// Audience, when non-empty, must intersect the token's aud.
	Audience []string
	// Leeway tolerated on exp/nbf/iat. Zero means none; 30s is typical.
	Leeway time.Duration

	// Claims maps identity claims; zero fields take DefaultClaimNames.
	Claims ClaimNames

	// JWKSRefresh is the background refresh period. Default 10m.
	JWKSRefresh time.Duration
	// JWKSMinRefetch bounds refetches (unknown kid, refresh, failures): at
	// most one fetch per period. Default 1m.
	JWKSMinRefetch time.Duration
	// HTTPClient fetches the JWKS. Default: a client with a 10s timeout.
	HTTPClient *http.Client
	// Logger gets key-set events (never tokens or keys). Default slog.Default().
	Logger *slog.Logger
	// CacheSize bounds the cache of verified tokens (see tokenCache). Zero
	// means 4096; negative disables caching.
	CacheSize int
	// Now is the clock; nil means time.Now. For tests.
	Now func() time.Time
}

// maxTokenBytes bounds the work an attacker can ask of the parser.
const maxTokenBytes = 16 << 10

// maxJWKSBytes bounds a fetched key set.
const maxJWKSBytes = 1 << 20

// Verifier checks JWTs and turns them into principals. It is safe for
// concurrent use. Call Close when done if JWKSURL is set (it waits for a
// background refresh in flight).
type Verifier struct {
	cfg     VerifierConfig
	names   ClaimNames
	log     *slog.Logger
	now     func() time.Time
	current atomic.Pointer[keySet]

	fetchMu   sync.Mutex // serialises loads; guards lastFetch, fileKeys, urlKeys
	lastFetch time.Time
	lastNs    atomic.Int64 // lastFetch for lock-free checks
	fileKeys  []verifyKey
	urlKeys   []verifyKey

	bgMu       sync.Mutex
	closed     bool
	bg         sync.WaitGroup
	refreshing atomic.Bool
}

// keySet is an immutable snapshot: keys plus the parser configured for the
// algorithms they allow.
type keySet struct {
	keys    []verifyKey
	algs    []string
	parser  *jwt.Parser
	fetched time.Time // last successful JWKS URL fetch
	cache   *tokenCache
}

// NewVerifier loads every configured key source. A source that cannot be
// read or holds no usable key is an error naming it.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if len(cfg.Secret) == 0 && cfg.PublicKeyFile == "" && cfg.JWKSFile == "" && cfg.JWKSURL == "" {
		return nil, errors.New("jwt: no key source configured (secret, public key file, JWKS file or JWKS URL)")
	}
	for _, a := range cfg.Algorithms {
		if !slices.Contains(SupportedAlgorithms, a) {
			return nil, fmt.Errorf("jwt: algorithm %q is not supported (supported: %s)", a, strings.Join(SupportedAlgorithms, ", "))
		}
		if strings.HasPrefix(a, "HS") && len(cfg.Secret) == 0 {
			return nil, fmt.Errorf("jwt: algorithm %s needs a secret", a)
		}
	}
	if cfg.JWKSRefresh <= 0 {
		cfg.JWKSRefresh = 10 * time.Minute
	}
	if cfg.JWKSMinRefetch <= 0 {
		cfg.JWKSMinRefetch = time.Minute
	}
	if cfg.JWKSURL != "" {
		if err := checkJWKSURL(cfg.JWKSURL); err != nil {
			return nil, err
		}
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 4096
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	v := &Verifier{cfg: cfg, names: cfg.Claims.withDefaults(), log: cfg.Logger, now: cfg.Now}
	if v.now == nil {
		v.now = time.Now
	}
	if err := v.Reload(context.Background()); err != nil {
		return nil, err
	}
	return v, nil
}

// Reload re-reads the key files and refetches the JWKS URL, then swaps the
// key set in atomically. On any error the previous keys stay in use and the
// error says which source failed. Meant for SIGHUP.
func (v *Verifier) Reload(ctx context.Context) error {
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	var fileKeys []verifyKey
	if v.cfg.PublicKeyFile != "" {
		data, err := os.ReadFile(v.cfg.PublicKeyFile)
		if err != nil {
			return fmt.Errorf("jwt: public key file: %w", err)
		}
		keys, err := parsePEMKeys(data, v.cfg.PublicKeyFile)
		if err != nil {
			return fmt.Errorf("jwt: %w", err)
		}
		fileKeys = append(fileKeys, keys...)
	}
	if v.cfg.JWKSFile != "" {
		data, err := os.ReadFile(v.cfg.JWKSFile)
		if err != nil {
			return fmt.Errorf("jwt: JWKS file: %w", err)
		}
		keys, skipped, err := parseJWKS(data, v.cfg.JWKSFile)
		if err != nil {
			return fmt.Errorf("jwt: %w", err)
		}
		v.logSkipped(v.cfg.JWKSFile, skipped)
		fileKeys = append(fileKeys, keys...)
	}
	urlKeys := v.urlKeys
	if v.cfg.JWKSURL != "" {
		keys, err := v.fetchJWKS(ctx)
		if err != nil {
			return err
		}
		urlKeys = keys
	}
	set, err := v.buildSet(fileKeys, urlKeys)
	if err != nil {
		return err
	}
	v.fileKeys, v.urlKeys = fileKeys, urlKeys
	v.current.Store(set)
	return nil
}

func (v *Verifier) logSkipped(source string, skipped []string) {
	for _, s := range skipped {
		v.log.Warn("jwt: skipped JWKS key", "source", source, "why", s)
	}
}

// fetchJWKS fetches the URL; callers hold fetchMu. The attempt time is
// recorded even on failure so a broken endpoint is not hammered. It is ours
// rather than jwkset's HTTP storage for the size bound, per-key skipping and
// URL redaction (doc.go).
func (v *Verifier) fetchJWKS(ctx context.Context) ([]verifyKey, error) {
	v.lastFetch = v.now()
	v.lastNs.Store(v.lastFetch.UnixNano())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return nil, fmt.Errorf("jwt: JWKS URL %s: invalid", redactURL(v.cfg.JWKSURL))
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		// *url.Error repeats the full URL, query included; report the
		// redacted one instead.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("jwt: fetch JWKS %s: %w", redactURL(v.cfg.JWKSURL), err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwt: fetch JWKS %s: HTTP %d", redactURL(v.cfg.JWKSURL), resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("jwt: fetch JWKS: %w", err)
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("jwt: fetch JWKS: document larger than %d bytes", maxJWKSBytes)
	}
	keys, skipped, err := parseJWKS(data, redactURL(v.cfg.JWKSURL))
	if err != nil {
		return nil, fmt.Errorf("jwt: %w", err)
	}
	v.logSkipped(redactURL(v.cfg.JWKSURL), skipped)
	return keys, nil
}

func (v *Verifier) buildSet(fileKeys, urlKeys []verifyKey) (*keySet, error) {
	keys := make([]verifyKey, 0, 1+len(fileKeys)+len(urlKeys))
	if len(v.cfg.Secret) > 0 {
		keys = append(keys, verifyKey{key: v.cfg.Secret, source: "secret"})
	}
	keys = append(keys, fileKeys...)
	keys = append(keys, urlKeys...)
	algs := v.cfg.Algorithms
	if len(algs) == 0 {
		for _, k := range keys {
			for _, a := range defaultAlgs(k) {
				if !slices.Contains(algs, a) {
					algs = append(algs, a)
				}
			}
		}
	}
	if len(algs) == 0 {
		return nil, errors.New("jwt: no algorithm usable with the configured keys")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(algs),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(v.cfg.Leeway),
		jwt.WithTimeFunc(v.now),
		jwt.WithJSONNumber(),
		jwt.WithIssuedAt(),
	}
	if v.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.cfg.Issuer))
	}
	if len(v.cfg.Audience) > 0 {
		opts = append(opts, jwt.WithAudience(v.cfg.Audience...))
	}
	set := &keySet{keys: keys, algs: algs, parser: jwt.NewParser(opts...), cache: newTokenCache(v.cfg.CacheSize)}
	if v.cfg.JWKSURL != "" {
		set.fetched = v.lastFetch
	}
	return set, nil
}

// checkJWKSURL insists on https: keys fetched in clear text could be
// swapped by anyone on the path. Loopback http is allowed for local
// identity providers and tests.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("jwt: JWKS URL is not a URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("jwt: JWKS URL %s: use https (http is only allowed for loopback hosts)", redactURL(raw))
	}
	return fmt.Errorf("jwt: JWKS URL scheme %q: must be https", u.Scheme)
}

// redactURL drops credentials and the query (which may carry an API key)
// from a URL before it is logged.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

// Algorithms returns the algorithms currently accepted.
func (v *Verifier) Algorithms() []string { return slices.Clone(v.current.Load().algs) }

// ParseBearer extracts the token from an "Authorization: Bearer <jwt>" value.
// An empty header, or one without a token, is ErrTokenMissing; another
// scheme is ErrTokenInvalid.
func ParseBearer(header string) (string, error) {
	header = strings.TrimSpace(header)
	if header == "" {
		return "", &TokenError{Kind: ErrTokenMissing}
	}
	scheme, tok, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", &TokenError{Kind: ErrTokenInvalid, Detail: "authorization scheme is not Bearer"}
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", &TokenError{Kind: ErrTokenMissing}
	}
	return tok, nil
}

// Verify checks a raw JWT (no "Bearer " prefix): algorithm in the accepted
// set, signature by a key of the matching type, exp present and not passed,
// nbf/iat not in the future, iss and aud when configured. Every failure is a
// *TokenError matching ErrUnauthenticated.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Principal, error) {
	if raw == "" {
		return nil, &TokenError{Kind: ErrTokenMissing}
	}
	if len(raw) > maxTokenBytes {
		return nil, &TokenError{Kind: ErrTokenInvalid, Detail: "token too large"}
	}
	set := v.current.Load()
	v.maybeRefresh(set)
	var key [sha256.Size]byte
	if set.cache != nil {
		// Hash the string's bytes in place: []byte(raw) would copy every
		// token (longer than the 32-byte stack buffer) to the heap, twice
		// per AuthorizeChannel call. Sum256 only reads them.
		key = sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
		if p := set.cache.get(&key, v.now()); p != nil {
			return p, nil
		}
	}
	claims := jwt.MapClaims{}
	tok, err := set.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		return v.keyFor(ctx, t)
	})
	if err != nil {
		return nil, classify(tok, claims, set.algs, err)
	}
	p := NewPrincipal(claims, v.names)
	if !p.ExpiresAt.IsZero() {
		set.cache.put(&key, p, p.ExpiresAt.Add(v.cfg.Leeway))
	}
	return p, nil
}

// keyFor picks candidate keys of the right type for the token's algorithm,
// preferring the token's kid. An unknown kid triggers one JWKS refetch,
// rate-limited by JWKSMinRefetch.
func (v *Verifier) keyFor(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	kid, _ := t.Header["kid"].(string)
	cands, exact := candidates(v.current.Load().keys, alg, kid)
	if kid != "" && !exact && v.cfg.JWKSURL != "" && !strings.HasPrefix(alg, "HS") {
		if v.refetchForKid(ctx) {
			cands, _ = candidates(v.current.Load().keys, alg, kid)
		}
	}
	switch len(cands) {
	case 0:
		detail := "no " + alg + " key"
		if kid != "" {
			detail = "no " + alg + " key with kid " + quoteShort(kid)
		}
		return nil, &TokenError{Kind: ErrTokenUnknownKey, Detail: detail}
	case 1:
		return cands[0], nil
	}
	return jwt.VerificationKeySet{Keys: cands}, nil
}

// candidates returns the keys able to verify alg: those whose kid equals the
// token's (exact), or, when none does, kid-less keys (PEM files, a secret).
// A JWK that declares an alg is used for that alg only.
func candidates(keys []verifyKey, alg, kid string) (out []jwt.VerificationKey, exact bool) {
	fits := func(k verifyKey) bool { return (k.alg == "" || k.alg == alg) && keyFitsAlg(k.key, alg) }
	if kid != "" {
		for _, k := range keys {
			if k.kid == kid && fits(k) {
				out = append(out, k.key)
			}
		}
		if len(out) > 0 {
			return out, true
		}
	}
	for _, k := range keys {
		if (kid == "" || k.kid == "") && fits(k) {
			out = append(out, k.key)
		}
	}
	return out, false
}

// refetchForKid refetches the JWKS unless a fetch happened within
// JWKSMinRefetch. It reports whether a new set was installed.
func (v *Verifier) refetchForKid(ctx context.Context) bool {
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	if !v.lastFetch.IsZero() && v.now().Sub(v.lastFetch) < v.cfg.JWKSMinRefetch {
		// Someone fetched moments ago (perhaps a concurrent request for the
		// same kid): the current set is as fresh as the limit allows.
		return true
	}
	return v.refetchLocked(ctx)
}

func (v *Verifier) refetchLocked(ctx context.Context) bool {
	keys, err := v.fetchJWKS(ctx)
	if err != nil {
		v.log.Warn("jwt: JWKS refetch failed; keeping the previous keys", "url", redactURL(v.cfg.JWKSURL), "err", err)
		return false
	}
	set, err := v.buildSet(v.fileKeys, keys)
	if err != nil {
		v.log.Warn("jwt: JWKS refetch unusable; keeping the previous keys", "url", redactURL(v.cfg.JWKSURL), "err", err)
		return false
	}
	v.urlKeys = keys
	v.current.Store(set)
	return true
}

// maybeRefresh starts a background JWKS refresh when the set is older than
// JWKSRefresh. Requests never wait for it.
func (v *Verifier) maybeRefresh(set *keySet) {
	if v.cfg.JWKSURL == "" {
		return
	}
	now := v.now()
	if now.Sub(set.fetched) < v.cfg.JWKSRefresh || now.Sub(time.Unix(0, v.lastNs.Load())) < v.cfg.JWKSMinRefetch {
		// Fresh, or a fetch (perhaps a failing one) happened moments ago.
		return
	}
	if !v.refreshing.CompareAndSwap(false, true) {
		return
	}
	v.bgMu.Lock()
	if v.closed {
		v.bgMu.Unlock()
		v.refreshing.Store(false)
		return
	}
	v.bg.Add(1)
	v.bgMu.Unlock()
	go func() {
		defer v.bg.Done()
		defer v.refreshing.Store(false)
		v.fetchMu.Lock()
		defer v.fetchMu.Unlock()
		if v.now().Sub(v.lastFetch) < v.cfg.JWKSMinRefetch {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		v.refetchLocked(ctx)
	}()
}

// Close waits for a background refresh in flight and stops new ones.
func (v *Verifier) Close() error {
	v.bgMu.Lock()
	v.closed = true
	v.bgMu.Unlock()
	v.bg.Wait()
	return nil
}

// classify maps jwt/v5 errors to the package's token errors.
func classify(tok *jwt.Token, claims jwt.MapClaims, algs []string, err error) error {
	var te *TokenError
	if errors.As(err, &te) {
		return te
	}
	wrap := func(k error, detail string) error { return &TokenError{Kind: k, Detail: detail, cause: err} }
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return wrap(ErrTokenInvalid, "malformed")
	case tok != nil && tok.Method != nil && !slices.Contains(algs, tok.Method.Alg()):
		return wrap(ErrTokenAlgorithm, "alg "+quoteShort(tok.Method.Alg())+" not accepted")
	case tok != nil && tok.Method == nil:
		return wrap(ErrTokenAlgorithm, "unknown alg")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return wrap(ErrTokenSignature, "")
	case errors.Is(err, jwt.ErrTokenExpired):
		return wrap(ErrTokenExpired, "")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return wrap(ErrTokenNotYetValid, "")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return wrap(ErrTokenIssuer, "")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return wrap(ErrTokenAudience, "")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		switch {
		case claims["exp"] == nil:
			return wrap(ErrTokenInvalid, "exp claim required")
		case claims["iss"] == nil:
			return wrap(ErrTokenIssuer, "iss claim missing")
		case claims["aud"] == nil:
			return wrap(ErrTokenAudience, "aud claim missing")
		}
		return wrap(ErrTokenInvalid, "required claim missing")
	}
	return wrap(ErrTokenInvalid, "")
}

// quoteShort quotes attacker-controlled header values for logs, truncated so
// a huge kid cannot flood them.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%q", s)
}
