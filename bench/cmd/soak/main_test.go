//go:build linux

package main

import "testing"

func TestMissing(t *testing.T) {
	// Channel events 1..6 published at 10, 20, ... 60, each taking 5.
	starts := []int64{10, 20, 30, 40, 50, 60}
	ends := []int64{15, 25, 35, 45, 55, 65}
	tests := []struct {
		name         string
		r            record
		ends         []int64 // default ends
		lo, hi, miss int64
	}{
		{"stayed, got all after subscribing", record{Sub: 22, First: 3, Last: 6, N: 4}, nil, 3, 6, 0},
		{"stayed, got one before too", record{Sub: 22, First: 2, Last: 6, N: 5}, nil, 3, 6, 0},
		{"stayed, missed the first", record{Sub: 22, First: 4, Last: 6, N: 3}, nil, 3, 6, 1},
		{"stayed, missed the last two", record{Sub: 22, First: 3, Last: 4, N: 2}, nil, 3, 6, 2},
		{"stayed, a gap", record{Sub: 22, First: 3, Last: 6, N: 3}, nil, 3, 6, 1},
		{"stayed, nothing", record{Sub: 22}, nil, 3, 6, 4},
		{"left at 47: 3 and 4 due", record{Sub: 22, Leave: 47, First: 3, Last: 4, N: 2}, nil, 3, 4, 0},
		{"left at 47, missed 4", record{Sub: 22, Leave: 47, First: 3, Last: 3, N: 1}, nil, 3, 4, 1},
		{"left before anything was due", record{Sub: 22, Leave: 30}, nil, 0, 0, 0},
		{"repeat is not a gap", record{Sub: 22, First: 3, Last: 6, N: 5, Disorder: 1}, nil, 3, 6, 0},
		{"dropped at 50: 3 and 4 due", record{Sub: 22, Dropped: true, End: 50, First: 3, Last: 3, N: 1}, nil, 3, 4, 1},
		{"unfinished publish is not due", record{Sub: 52}, []int64{15, 25, 35, 45, 55, 0}, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := ends
			if tc.ends != nil {
				e = tc.ends
			}
			lo, hi, miss := missing(tc.r, starts, e)
			if lo != tc.lo || hi != tc.hi || miss != tc.miss {
				t.Fatalf("missing = %d..%d, %d; want %d..%d, %d", lo, hi, miss, tc.lo, tc.hi, tc.miss)
			}
		})
	}
}
