//go:build linux

package main

import (
	"strings"
	"testing"
)

// TestTable checks the cells: a range over the rounds, "—" for a figure a
// server lacks, and the per-round ratio.
func TestTable(t *testing.T) {
	r := newResults()
	r.add("a", "grpc0", map[string]float64{figGRPC0: 20000}, "")
	r.add("b", "grpc0", map[string]float64{figGRPC0: 25000}, "")
	r.add("a", "grpc0", map[string]float64{figGRPC0: 30000}, "")
	r.add("b", "grpc0", map[string]float64{figGRPC0: 30000}, "")
	tab := r.table([]string{"a", "b"})
	for _, want := range []string{
		"| " + figGRPC0 + " | 20k–30k calls/s | 25k–30k calls/s | 0.80–1.00× |",
		"| " + figRSS + " | — | — | — |",
		"| " + figLoss + " | 0 | 0 | — |",
	} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
}
