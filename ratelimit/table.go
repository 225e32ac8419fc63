package ratelimit

// table is an open-addressing (linear probing) hash table from key to entry,
// one per shard. It exists instead of a Go map because the shard already
// hashed the key: the table reuses that hash, finds the entry in one probe
// sequence and updates it in place, where a map would hash twice more (read,
// then write back). Sweeps rebuild it to fit the live keys, so it also shrinks,
// which Go maps never do. Not safe for concurrent use: the shard lock guards it.
type table struct {
	slots []slot // len is zero or a power of two
	n     int
}

type slot struct {
	tag uint64 // hash | 1; 0 marks an empty slot
	key string
	e   entry
}

const minTableSize = 8

// tagOf turns the key's hash into a non-zero tag. The shard was chosen by the
// hash's low bits, so the slot index comes from the high ones.
func tagOf(h uint64) uint64 { return h | 1 }

func (t *table) home(tag uint64) uint64 { return (tag >> 8) & uint64(len(t.slots)-1) }

// find returns the entry of key, or nil.
func (t *table) find(tag uint64, key string) *entry {
	if t.n == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.home(tag); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.tag == 0 {
			return nil
		}
		if s.tag == tag && s.key == key {
			return &s.e
		}
	}
}

// insert adds key, which must not be present, growing at 3/4 load.
func (t *table) insert(tag uint64, key string, e entry) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.resize(max(len(t.slots)*2, minTableSize), nil)
	}
	t.place(slot{tag: tag, key: key, e: e})
	t.n++
}

func (t *table) place(s slot) {
	mask := uint64(len(t.slots) - 1)
	i := t.home(s.tag)
	for t.slots[i].tag != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = s
}

// resize rehashes into size slots, keeping only entries keep accepts (all if
// keep is nil), and returns how many it dropped.
func (t *table) resize(size int, keep func(*slot) bool) int {
	old := t.slots
	t.slots = make([]slot, size)
	kept := 0
	for i := range old {
		s := &old[i]
		if s.tag == 0 || (keep != nil && !keep(s)) {
			continue
		}
		t.place(*s)
		kept++
	}
	dropped := t.n - kept
	t.n = kept
	return dropped
}

// sizeFor is the table size that holds n keys at most half full.
func sizeFor(n int) int {
	size := minTableSize
	for size < 2*n {
		size <<= 1
	}
	return size
}

// deleteAt empties slot i and shifts later entries of the probe run back so
// that every entry stays reachable from its home slot.
func (t *table) deleteAt(i uint64) {
	mask := uint64(len(t.slots) - 1)
	j := i
	for {
		j = (j + 1) & mask
		s := &t.slots[j]
		if s.tag == 0 {
			break
		}
		k := t.home(s.tag)
		// s may move to i unless its home lies cyclically within (i, j].
		if (i < j && (k <= i || k > j)) || (i > j && k <= i && k > j) {
			t.slots[i] = *s
			i = j
		}
	}
	t.slots[i] = slot{}
	t.n--
}
