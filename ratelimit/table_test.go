package ratelimit

import (
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestTableMatchesMap drives the table and a Go map with the same random
// inserts, updates, deletes and sweeps, and checks they always agree.
func TestTableMatchesMap(t *testing.T) {
	seed := maphash.MakeSeed()
	rng := rand.New(rand.NewPCG(5, 6))
	var tb table
	ref := map[string]int64{}
	tagFor := func(k string) uint64 { return tagOf(maphash.String(seed, k)) }
	for i := 0; i < 200_000; i++ {
		k := strconv.Itoa(rng.IntN(3000))
		tag := tagFor(k)
		switch op := rng.IntN(10); {
		case op < 6: // upsert
			if e := tb.find(tag, k); e != nil {
				e.tat++
				ref[k]++
			} else {
				if _, ok := ref[k]; ok {
					t.Fatalf("op %d: %q in map, not found in table", i, k)
				}
				tb.insert(tag, k, entry{tat: 1})
				ref[k] = 1
			}
		case op < 9: // delete one (backward shift)
			mask := uint64(len(tb.slots) - 1)
			if tb.n == 0 {
				continue
			}
			for j := tb.home(tag); ; j = (j + 1) & mask {
				if s := &tb.slots[j]; s.tag != 0 {
					delete(ref, s.key)
					tb.deleteAt(j)
					break
				}
			}
		default: // sweep: drop odd counts, rebuild
			tb.resize(sizeFor(tb.n), func(s *slot) bool { return s.e.tat%2 == 0 })
			for k, v := range ref {
				if v%2 != 0 {
					delete(ref, k)
				}
			}
		}
		if tb.n != len(ref) {
			t.Fatalf("op %d: table has %d keys, map %d", i, tb.n, len(ref))
		}
	}
	for k, v := range ref {
		e := tb.find(tagFor(k), k)
		if e == nil || e.tat != v {
			t.Fatalf("key %q: table %v, map %d", k, e, v)
		}
	}
}
