package edge

import (
	"testing"
	"time"
)

// The sweeper drops expired entries from the front and stops at the first
// live one.
func TestCacheStoreExpire(t *testing.T) {
	c := newCacheStore(10)
	t0 := time.Now()
	c.put("a", cachedEvent{expires: t0.Add(1 * time.Second)})
	c.put("b", cachedEvent{expires: t0.Add(2 * time.Second)})
	c.put("c", cachedEvent{expires: t0.Add(3 * time.Second)})
	c.put("a", cachedEvent{expires: t0.Add(4 * time.Second)}) // rewritten: last to expire
	now := t0.Add(2500 * time.Millisecond)
	if !c.expiredFront(now) {
		t.Fatal("b has expired")
	}
	c.expire(now)
	for name, want := range map[string]bool{"a": true, "b": false, "c": true} {
		if _, ok := c.get(name); ok != want {
			t.Errorf("%s present = %v, want %v", name, ok, want)
		}
	}
	if c.len() != 2 || c.expiredFront(now) || c.evicted != 0 {
		t.Fatalf("len %d, front expired %v, evicted %d", c.len(), c.expiredFront(now), c.evicted)
	}
}
