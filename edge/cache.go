package edge

import (
	"container/list"
	"time"
)

// cacheStore holds the last event of each cache channel, guarded by hub.mu.
// Every entry lives CacheTTL from its last write, so the order of writes is
// the order of expiry: the front of the list expires first, and is what the
// sweeper drops and what a full store evicts.
type cacheStore struct {
	max     int
	entries map[string]*list.Element // of *cacheEntry
	order   list.List
	evicted uint64
}

type cacheEntry struct {
	name string
	cachedEvent
}

func newCacheStore(max int) *cacheStore {
	return &cacheStore{max: max, entries: make(map[string]*list.Element)}
}

func (c *cacheStore) get(name string) (cachedEvent, bool) {
	el, ok := c.entries[name]
	if !ok {
		return cachedEvent{}, false
	}
	return el.Value.(*cacheEntry).cachedEvent, true
}

// put stores e for name, evicting the entry nearest to expiry when full.
func (c *cacheStore) put(name string, e cachedEvent) {
	if el, ok := c.entries[name]; ok {
		el.Value.(*cacheEntry).cachedEvent = e
		c.order.MoveToBack(el)
		return
	}
	if len(c.entries) >= c.max {
		c.remove(c.order.Front())
		c.evicted++
	}
	c.entries[name] = c.order.PushBack(&cacheEntry{name: name, cachedEvent: e})
}

// expiredFront reports whether the sweeper has something to drop.
func (c *cacheStore) expiredFront(now time.Time) bool {
	el := c.order.Front()
	return el != nil && now.After(el.Value.(*cacheEntry).expires)
}

// expire drops the entries expired at now.
func (c *cacheStore) expire(now time.Time) {
	for c.expiredFront(now) {
		c.remove(c.order.Front())
	}
}

func (c *cacheStore) remove(el *list.Element) {
	delete(c.entries, el.Value.(*cacheEntry).name)
	c.order.Remove(el)
}

func (c *cacheStore) len() int { return len(c.entries) }
