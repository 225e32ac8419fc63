package authz

import (
	"crypto/sha256"
	"sync"
	"time"
)

// tokenCache remembers tokens that verified, so a client presenting the same
// token again (every subscription of a page, every RPC of a service) skips
// the signature check and claim decoding. It belongs to one key set: a
// reload or JWKS refresh starts a new, empty cache, so a removed key stops
// verifying at once. Entries are keyed by SHA-256 of the token (the map never
// compares attacker-supplied strings against stored tokens) and are honoured
// only until the token's exp (plus leeway); nbf and iat only become more
// valid with time. When full, a random entry is evicted.
type tokenCache struct {
	mu      sync.RWMutex
	max     int
	entries map[[sha256.Size]byte]cacheEntry
}

type cacheEntry struct {
	p       *Principal
	expires time.Time // exp + leeway
}

func newTokenCache(max int) *tokenCache {
	if max <= 0 {
		return nil
	}
	return &tokenCache{max: max, entries: make(map[[sha256.Size]byte]cacheEntry)}
}

func (c *tokenCache) get(key *[sha256.Size]byte, now time.Time) *Principal {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	e, ok := c.entries[*key]
	c.mu.RUnlock()
	if !ok {
		return nil
	}
	if now.After(e.expires) {
		c.mu.Lock()
		delete(c.entries, *key)
		c.mu.Unlock()
		return nil
	}
	return e.p
}

func (c *tokenCache) put(key *[sha256.Size]byte, p *Principal, expires time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k := range c.entries { // map order is random: random eviction
			delete(c.entries, k)
			break
		}
	}
	c.entries[*key] = cacheEntry{p: p, expires: expires}
}
