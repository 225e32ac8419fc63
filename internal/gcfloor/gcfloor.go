package gcfloor

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	DefaultInterval = 250 * time.Millisecond
	// DefaultBusyRate is the collections a second, at the process's own
	// GOGC, past which the process counts as busy.
	DefaultBusyRate = 10
)

// Config configures a Tuner.
type Config struct {
	// Floor is the heap goal kept while the process is busy, in bytes; 0
	// turns the tuner off.
	Floor uint64
	// BusyRate: the process is busy while what it allocates would start
	// more than this many collections a second at its own GOGC (allocation
	// rate ÷ (live heap × GOGC/100)), for two checks in a row; it is idle
	// again once under a third of it for two checks in a row. Default
	// DefaultBusyRate.
	BusyRate float64
	// Interval is how often the tuner checks. Default DefaultInterval.
	Interval time.Duration
	// Logger gets a DEBUG line on each change. Default slog.Default().
	Logger *slog.Logger
}

// Tuner keeps the heap goal at Config.Floor while the process is busy.
type Tuner struct {
	cfg     Config
	base    int // GOGC when the tuner started
	engaged atomic.Bool
	spells  atomic.Uint64
	samples []metrics.Sample

	// Set by the loop only.
	busy, idle int
	percent    int // the GOGC the tuner set last (base when not engaged)
}

const (
	mAllocs = "/gc/heap/allocs:bytes"
	mLive   = "/gc/heap/live:bytes"
)

// New returns a tuner; Run starts it. The base GOGC is read once, here.
func New(cfg Config) *Tuner {
	if cfg.BusyRate <= 0 {
		cfg.BusyRate = DefaultBusyRate
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	return &Tuner{
		cfg:     cfg,
		base:    base,
		percent: base,
		samples: []metrics.Sample{{Name: mAllocs}, {Name: mLive}},
	}
}

// Engaged reports whether the floor is in force now; Spells counts the
// times it was put in force.
func (t *Tuner) Engaged() bool  { return t.engaged.Load() }
func (t *Tuner) Spells() uint64 { return t.spells.Load() }

// Collectors are the tuner's Prometheus series, read at scrape time:
// pushercm_gc_heap_floor_engaged (1 while the floor is in force, else 0) and
// pushercm_gc_heap_floor_spells_total (the times it was put in force). Both
// exist, at 0, when the tuner is off.
func (t *Tuner) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pushercm_gc_heap_floor_engaged",
			Help: "1 while the heap floor (gc.heapFloorMiB) is in force because the process allocates fast for its live heap, else 0.",
		}, func() float64 {
			if t.Engaged() {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "pushercm_gc_heap_floor_spells_total",
			Help: "Times the heap floor was put in force since start.",
		}, func() float64 { return float64(t.Spells()) }),
	}
}

// Run checks every Interval until ctx ends, then puts the base GOGC back.
// It does nothing when Floor is 0 or GOGC is off or 0 (a process set up to
// collect that way is left alone).
func (t *Tuner) Run(ctx context.Context) {
	if t.cfg.Floor == 0 || t.base <= 0 {
		return
	}
	tick := time.NewTicker(t.cfg.Interval)
	defer tick.Stop()
	defer t.set(t.base, false)
	metrics.Read(t.samples)
	lastAllocs, last := t.samples[0].Value.Uint64(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		metrics.Read(t.samples)
		now := time.Now()
		allocs, live := t.samples[0].Value.Uint64(), t.samples[1].Value.Uint64()
		rate := float64(allocs-lastAllocs) / now.Sub(last).Seconds()
		lastAllocs, last = allocs, now
		t.step(rate, live)
	}
}

// step takes one check: the allocation rate (bytes/s) and the live heap.
func (t *Tuner) step(rate float64, live uint64) {
	live = max(live, 1<<20)
	cycles := rate / (float64(live) * float64(t.base) / 100)
	switch {
	case cycles >= t.cfg.BusyRate:
		t.busy, t.idle = t.busy+1, 0
	case cycles < t.cfg.BusyRate/3:
		t.idle, t.busy = t.idle+1, 0
	default:
		t.busy, t.idle = 0, 0
	}
	engaged := t.engaged.Load()
	switch {
	case engaged && t.idle >= 2:
		// Collect the garbage the floor let pile up now, rather than at
		// the next allocation, which an idle process may not make for a
		// long time.
		t.set(t.base, true)
		t.engaged.Store(false)
		t.cfg.Logger.Debug("heap floor off", "live_bytes", live, "alloc_bytes_per_second", uint64(rate))
		return
	case !engaged && t.busy < 2:
		return
	}
	// The goal is live × (1 + GOGC/100): the GOGC that puts it at the
	// floor, never below the base. Engaged is reported once it is set.
	p := t.base
	if need := int(t.cfg.Floor*100/live) - 100; need > p {
		p = need
	}
	t.set(p, false)
	if !engaged {
		t.engaged.Store(true)
		t.spells.Add(1)
		t.cfg.Logger.Debug("heap floor on: the process allocates fast", "floor_bytes", t.cfg.Floor,
			"live_bytes", live, "alloc_bytes_per_second", uint64(rate), "collections_per_second_without", cycles)
	}
}

// set puts GOGC at p, and collects once in the background when asked.
func (t *Tuner) set(p int, collect bool) {
	if p == t.percent {
		return
	}
	t.percent = p
	debug.SetGCPercent(p)
	if collect {
		go runtime.GC()
	}
}
