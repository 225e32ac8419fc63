//go:build linux

package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Figures, by the table row that shows them.
const (
	figRSS         = "RSS per idle connection at 10k"
	figConnRate    = "connections established per second"
	figBurst       = "1 channel × 1000 subscribers, as fast as accepted (delivered)"
	figFan2000     = "1 channel × 2000 at 100 events/s, p99"
	figFan2000Rate = "fan2000 events/s"
	figFan100      = "100 channels × 10 at 1000 events/s, p99"
	figFan100Rate  = "fan100x10 events/s"
	figGRPC0       = "gRPC publish (50 callers), no subscriber"
	figGRPC100     = "gRPC publish, 100 subscribers on the channel"
	figHTTP0       = "HTTP publish API (50 callers, 1 event a call), no subscriber"
	figHTTP100     = "HTTP publish API, 100 subscribers on the channel"
	figCPUMsg      = "server CPU per delivered message (1 × 1000 run)"
	figCPUCall     = "server CPU per gRPC publish, no subscriber"
	figCPUHTTP     = "server CPU per HTTP publish, no subscriber"
	figLoss        = "messages lost"
)

type row struct {
	fig    string
	format func(float64) string
	unit   string
	// rate, when set, is the figure of the events/s the run reached: a
	// cell whose slowest run reached less than 95 % of want says so.
	rate string
	want float64
}

var rows = []row{
	{fig: figRSS, format: f1, unit: " KiB"},
	{fig: figConnRate, format: thousands},
	{fig: figBurst, format: kilo, unit: " msg/s"},
	{fig: figFan2000, format: f1, unit: " ms", rate: figFan2000Rate, want: 100},
	{fig: figFan100, format: f2, unit: " ms", rate: figFan100Rate, want: 1000},
	{fig: figGRPC0, format: kilo, unit: " calls/s"},
	{fig: figGRPC0 + " p99", format: f2, unit: " ms"},
	{fig: figGRPC100, format: kilo, unit: " calls/s"},
	{fig: figGRPC100 + " p99", format: f2, unit: " ms"},
	{fig: figHTTP0, format: kilo, unit: " calls/s"},
	{fig: figHTTP100, format: kilo, unit: " calls/s"},
	{fig: figCPUMsg, format: f2, unit: " µs"},
	{fig: figCPUCall, format: f1, unit: " µs"},
	{fig: figCPUHTTP, format: f1, unit: " µs"},
	{fig: figLoss, format: thousands},
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func kilo(v float64) string {
	if v >= 10000 {
		return strconv.FormatFloat(v/1000, 'f', 0, 64) + "k"
	}
	if v >= 1000 {
		return strconv.FormatFloat(v/1000, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

type results struct {
	vals  map[string]map[string][]float64 // peer -> figure -> one value per run
	lines []string
}

func newResults() *results { return &results{vals: map[string]map[string][]float64{}} }

func (r *results) add(peer, _ string, figs map[string]float64, line string) {
	if r.vals[peer] == nil {
		r.vals[peer] = map[string][]float64{}
	}
	for k, v := range figs {
		r.vals[peer][k] = append(r.vals[peer][k], v)
	}
	r.lines = append(r.lines, line)
}

// table is the Markdown table: per figure and server, the range over the
// rounds (min–max), "—" where the server has no such figure.
func (r *results) table(peers []string) string {
	var ratios [][2]string
	for _, p := range peers[1:] {
		ratios = append(ratios, [2]string{peers[0], p})
	}
	return r.tableOf(peers, rows, ratios)
}

// tableOf is table with the given rows and ratio columns (a ÷ b).
func (r *results) tableOf(peers []string, rows []row, ratios [][2]string) string {
	var b strings.Builder
	b.WriteString("| figure (same run, same client code) |")
	for _, p := range peers {
		b.WriteString(" " + p + " |")
	}
	for _, rt := range ratios {
		b.WriteString(" " + rt[0] + " ÷ " + rt[1] + ", per round |")
	}
	b.WriteString("\n|---|")
	for range len(peers) + len(ratios) {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, rw := range rows {
		any := false
		cells := make([]string, len(peers))
		for i, p := range peers {
			vs := r.vals[p][rw.fig]
			if len(vs) == 0 {
				cells[i] = "—"
				if rw.fig == figLoss {
					cells[i] = "0"
				}
				continue
			}
			any = true
			lo, hi := slices.Min(vs), slices.Max(vs)
			c := rw.format(lo)
			if rw.format(hi) != c {
				c += "–" + rw.format(hi)
			}
			if rw.fig == figLoss || sumRows[rw.fig] {
				c = rw.format(sumOf(vs))
			}
			c += rw.unit
			if rw.rate != "" {
				if rs := r.vals[p][rw.rate]; len(rs) > 0 && slices.Min(rs) < 0.95*rw.want {
					c += fmt.Sprintf(" (%.0f ev/s only)", slices.Min(rs))
				}
			}
			cells[i] = c
		}
		if !any && rw.fig == figLoss {
			cells = slices.Repeat([]string{"0"}, len(peers))
		}
		for _, rt := range ratios {
			cells = append(cells, r.ratio(rt[0], rt[1], rw.fig))
		}
		b.WriteString("| " + rw.fig + " | " + strings.Join(cells, " | ") + " |\n")
	}
	return b.String()
}

// ratio is the range of a's figure over b's, round by round: the two runs
// of a round are minutes apart at most, so the ratio moves less than either
// figure on a machine whose speed drifts. "—" unless both have the figure in
// every round.
func (r *results) ratio(a, b, fig string) string {
	va, vb := r.vals[a][fig], r.vals[b][fig]
	if fig == figLoss || sumRows[fig] || len(va) == 0 || len(va) != len(vb) {
		return "—"
	}
	var rs []float64
	for i := range va {
		if vb[i] == 0 {
			return "—"
		}
		rs = append(rs, va[i]/vb[i])
	}
	lo, hi := f2(slices.Min(rs)), f2(slices.Max(rs))
	if lo == hi {
		return lo + "×"
	}
	return lo + "–" + hi + "×"
}

func sumOf(vs []float64) float64 {
	var s float64
	for _, v := range vs {
		s += v
	}
	return s
}

// appendSection appends a dated section to path; nothing before it changes.
func appendSection(path string, started time.Time, machine string, notes []string, table string, lines []string) error {
	return appendSectionTitled(path, "Peers: run of "+started.Format("2006-01-02 15:04")+" UTC (make bench-peers)", machine, notes, table, lines)
}

// appendSectionTitled is appendSection under its own heading, with the
// command that ran it.
func appendSectionTitled(path, title, machine string, notes []string, table string, lines []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## %s\n\n", title)
	// os.Args[0] is a temporary binary under go run.
	args := []string{"go run ./bench/cmd/peerload"}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " ()'\"") {
			a = strconv.Quote(a)
		}
		args = append(args, a)
	}
	fmt.Fprintf(&b, "Command: `%s`\n\n", strings.Join(args, " "))
	fmt.Fprintf(&b, "Machine: %s (the load average at the start; the machine is shared, so only the\nratios within this run count). Each cell is the range (min–max) over %d round(s), each run\non a freshly started server, the servers' runs interleaved.\n", machine, *rounds)
	for _, n := range notes {
		if n = strings.TrimSpace(n); n != "" {
			b.WriteString("\n" + n + "\n")
		}
	}
	b.WriteString("\n" + table + "\n<details><summary>Every run</summary>\n\n```\n")
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	b.WriteString("```\n\n</details>\n")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(b.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
