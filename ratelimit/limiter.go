package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync/atomic"
	"time"
)

// Names of the limiters the gRPC ingress uses. A Config may define others.
const (
	// LimiterPrincipal is keyed by the authenticated caller (service token subject).
	LimiterPrincipal = "principal"
	// LimiterUser is keyed by the user_id of each published event.
	LimiterUser = "user"
	// LimiterMethod is keyed by the full gRPC method name; it limits a method
	// across all callers.
	LimiterMethod = "method"
)

// Policy is what one named limiter applies: limits for every key, and
// overrides for particular keys (a principal, a user id, a method name).
type Policy struct {
	// Limits apply to keys without an override. Zero fields take the package
	// defaults (DefaultLimits).
	Limits `yaml:",inline"`
	// Unlimited lets keys without an override through unchecked, so that only
	// the overridden keys are limited (the usual shape of the method limiter).
	Unlimited bool `yaml:"unlimited"`
	// Overrides maps a key to its own limits. Zero fields inherit from Limits.
	Overrides map[string]Limits `yaml:"overrides"`
}

// Config is the rate-limit section of the service configuration.
type Config struct {
	// DryRun asks callers to count and log decisions but admit everything.
	// The limiters compute and count as usual; enforcing is the caller's job.
	DryRun bool `yaml:"dryRun"`
	// Headers: whether admitted calls carry the x-ratelimit-limit,
	// -remaining and -reset response headers (refusals always do). Nil means
	// true. They cost each admitted call about 5 µs of CPU over gRPC,
	// server and client together (see BENCHMARKS.md); a deployment whose
	// callers never read them can turn them off.
	Headers *bool `yaml:"headers"`
	// HeadersBelowPercent: admitted calls carry the headers only once the
	// binding limit's remaining share has fallen below this percentage of
	// it (1-100; 0 means DefaultHeadersBelowPercent). 100 sends them on
	// every admitted call. A caller far from its limit has nothing to act
	// on, and three headers whose values change on every call are a
	// seventh of a publish call's CPU; one that nears it sees its budget
	// in time to slow down.
	HeadersBelowPercent int `yaml:"headersBelowPercent"`
	// Store is where the buckets live: StoreMemory (this process) or
	// StoreRedis (shared by every node of a cluster, so a limit holds for the
	// cluster). Empty means redis when a Redis is configured, else memory.
	// The package itself only keeps memory stores; the service wires the
	// Redis one (WithStore).
	Store string `yaml:"store"`
	// Limiters by name (LimiterPrincipal, LimiterUser, LimiterMethod, ...). A
	// name absent here has no limiter: Set.Limiter returns nil, which admits all.
	Limiters map[string]Policy `yaml:"limiters"`
}

// DefaultHeadersBelowPercent is Config.HeadersBelowPercent's default.
const DefaultHeadersBelowPercent = 50

// Values of Config.Store.
const (
	StoreMemory = "memory"
	StoreRedis  = "redis"
)

// DefaultConfig limits each user to the package defaults (10/s, 600/min,
// burst 50) and each calling service to a hundred times that: a service
// publishes on behalf of many users, so the user limits would starve it.
// The method limiter exists but limits nothing until overrides are added.
func DefaultConfig() Config {
	return Config{
		Limiters: map[string]Policy{
			LimiterPrincipal: {Limits: Limits{
				MessagesPerSecond: 1000,
				MessagesPerMinute: 60000,
				BurstLimit:        2000,
				WindowSize:        DefaultWindowSize,
			}},
			LimiterUser:   {Limits: DefaultLimits()},
			LimiterMethod: {Unlimited: true},
		},
	}
}

// Validate checks every policy and override after defaults are filled in.
func (c Config) Validate() error {
	if c.HeadersBelowPercent < 0 || c.HeadersBelowPercent > 100 {
		return fmt.Errorf("%w: headersBelowPercent must be 0 (default %d) to 100, got %d", ErrInvalidLimits, DefaultHeadersBelowPercent, c.HeadersBelowPercent)
	}
	if c.Store != "" && c.Store != StoreMemory && c.Store != StoreRedis {
		return fmt.Errorf("%w: store must be %s or %s, got %q", ErrInvalidLimits, StoreMemory, StoreRedis, c.Store)
	}
	for _, name := range sortedKeys(c.Limiters) {
		if name == "" {
			return fmt.Errorf("%w: empty limiter name", ErrInvalidLimits)
		}
		if _, _, err := c.Limiters[name].rules(); err != nil {
			return fmt.Errorf("limiter %q: %w", name, err)
		}
	}
	return nil
}

func (p Policy) rules() (def *Rule, overrides map[string]*Rule, err error) {
	base := p.WithDefaults(DefaultLimits())
	if !p.Unlimited {
		if def, err = NewRule(base); err != nil {
			return nil, nil, err
		}
	}
	if len(p.Overrides) > 0 {
		overrides = make(map[string]*Rule, len(p.Overrides))
	}
	for _, k := range sortedKeys(p.Overrides) {
		r, err := NewRule(p.Overrides[k].WithDefaults(base))
		if err != nil {
			return nil, nil, fmt.Errorf("override %q: %w", k, err)
		}
		overrides[k] = r
	}
	return def, overrides, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Counters are a limiter's decision counts since it was created. Cardinality
// is one set per limiter name, whatever the number of keys. Keys without a
// limit (an Unlimited policy's keys without override) are not counted; Peek
// is not a decision and is not counted.
type Counters struct {
	Limiter string
	Allowed uint64 // decisions admitted
	Limited uint64 // decisions refused (including ErrExceedsCapacity)
	Errors  uint64 // store failures
}

// Limiter applies one Policy to many keys through a Store. It is safe for
// concurrent use. A nil *Limiter admits everything, so an unconfigured
// limiter needs no special case at call sites.
type Limiter struct {
	name      string
	store     Store
	clock     Clock
	def       *Rule // nil: keys without an override are unlimited
	overrides map[string]*Rule
	mem       *MemoryStore // store, when it is one: a direct call, one hash
	seed      maphash.Seed // picks counter stripes for other stores

	// Counters are hit on every decision from every core; one shared cache
	// line would bounce between cores. With a MemoryStore the common outcomes
	// are counted per shard, under the shard lock the check holds anyway (no
	// atomic instruction); the rest go to stripes picked by key hash. Both
	// are summed when read.
	shardCounts []shardCount
	stripes     [counterStripes]counterStripe
}

// shardCount is guarded by the lock of the MemoryStore shard of the same index.
type shardCount struct {
	allowed, limited uint64
	_                [48]byte
}

const counterStripes = 16

type counterStripe struct {
	allowed, limited, errs atomic.Uint64
	_                      [40]byte
}

// Option configures NewLimiter and NewSet.
type Option func(*options)

type options struct {
	clock Clock
	store func(limiter string) Store
}

// WithClock sets the time source (default SystemClock).
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// WithStore gives each limiter the store f returns for its name instead of
// its own MemoryStore (a nil result keeps the MemoryStore). A store with a
// Sweep(time.Time) int method is swept by Set.Run.
func WithStore(f func(limiter string) Store) Option {
	return func(o *options) { o.store = f }
}

func buildOptions(opts []Option) options {
	o := options{clock: SystemClock{}}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// NewLimiter builds the limiter called name from p.
func NewLimiter(name string, p Policy, opts ...Option) (*Limiter, error) {
	def, ov, err := p.rules()
	if err != nil {
		return nil, fmt.Errorf("limiter %q: %w", name, err)
	}
	o := buildOptions(opts)
	var store Store
	if o.store != nil {
		store = o.store(name)
	}
	if store == nil {
		store = NewMemoryStore()
	}
	l := &Limiter{name: name, store: store, clock: o.clock, def: def, overrides: ov, seed: maphash.MakeSeed()}
	if l.mem, _ = l.store.(*MemoryStore); l.mem != nil {
		l.shardCounts = make([]shardCount, len(l.mem.shards))
	}
	return l, nil
}

// Name returns the limiter's name.
func (l *Limiter) Name() string {
	if l == nil {
		return ""
	}
	return l.name
}

// Store returns the limiter's store (e.g. to sweep a MemoryStore).
func (l *Limiter) Store() Store {
	if l == nil {
		return nil
	}
	return l.store
}

// Rule returns the rule applied to key, or nil when key is unlimited.
func (l *Limiter) Rule(key string) *Rule {
	if l == nil {
		return nil
	}
	if len(l.overrides) > 0 {
		if r, ok := l.overrides[key]; ok {
			return r
		}
	}
	return l.def
}

// Allow is AllowN(ctx, key, 1).
func (l *Limiter) Allow(ctx context.Context, key string) (Decision, error) {
	return l.AllowNAt(ctx, key, 1, l.now())
}

// AllowN admits n events for key, all or none: a batch counts each event.
// An unlimited key is admitted with Limit 0. n larger than the burst or the
// window returns ErrExceedsCapacity with a refusing Decision.
func (l *Limiter) AllowN(ctx context.Context, key string, n int) (Decision, error) {
	return l.AllowNAt(ctx, key, n, l.now())
}

// AllowNAt is AllowN at a given time: a caller checking several keys for one
// request reads the clock once (a clock read costs as much as a check).
func (l *Limiter) AllowNAt(ctx context.Context, key string, n int, now time.Time) (d Decision, err error) {
	r := l.Rule(key)
	if r == nil {
		if n < 1 {
			return Decision{}, fmt.Errorf("%w: got %d", ErrInvalidCount, n)
		}
		return Decision{Allowed: true}, nil
	}
	// d is the named result filled in place (see decide).
	if l.mem != nil {
		h := l.mem.hash(key)
		if err = l.mem.take(h, key, n, now, r, &d, &l.shardCounts[h&l.mem.mask]); err != nil {
			l.count(h, false, err)
		}
		return
	}
	d, err = l.store.Take(ctx, key, n, now, r)
	l.count(maphash.String(l.seed, key), d.Allowed, err)
	return
}

func (l *Limiter) count(h uint64, allowed bool, err error) {
	c := &l.stripes[h%counterStripes]
	switch {
	case err == nil && allowed:
		c.allowed.Add(1)
	case err == nil || errors.Is(err, ErrExceedsCapacity):
		c.limited.Add(1)
	case !errors.Is(err, ErrInvalidCount):
		c.errs.Add(1)
	}
}

// Peek reports key's state without consuming anything (what one more event
// would get). It is what GetRateLimitStatus shows.
func (l *Limiter) Peek(ctx context.Context, key string) (Decision, error) {
	return l.PeekAt(ctx, key, l.now())
}

// PeekAt is Peek at a given time.
func (l *Limiter) PeekAt(ctx context.Context, key string, now time.Time) (Decision, error) {
	r := l.Rule(key)
	if r == nil {
		return Decision{Allowed: true}, nil
	}
	return l.store.Peek(ctx, key, now, r)
}

// Counters returns the limiter's decision counts.
func (l *Limiter) Counters() Counters {
	if l == nil {
		return Counters{}
	}
	c := Counters{Limiter: l.name}
	for i := range l.shardCounts {
		sh := &l.mem.shards[i]
		sh.mu.Lock()
		c.Allowed += l.shardCounts[i].allowed
		c.Limited += l.shardCounts[i].limited
		sh.mu.Unlock()
	}
	for i := range l.stripes {
		s := &l.stripes[i]
		c.Allowed += s.allowed.Load()
		c.Limited += s.limited.Load()
		c.Errors += s.errs.Load()
	}
	return c
}

func (l *Limiter) now() time.Time {
	if l == nil {
		return time.Time{}
	}
	return l.clock.Now()
}

// Set is the named limiters of one Config.
type Set struct {
	dryRun   bool
	headers  bool
	below    int // Config.HeadersBelowPercent, defaulted
	clock    Clock
	names    []string
	limiters map[string]*Limiter
}

// NewSet validates cfg and builds one Limiter per named policy.
func NewSet(cfg Config, opts ...Option) (*Set, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	below := cfg.HeadersBelowPercent
	if below == 0 {
		below = DefaultHeadersBelowPercent
	}
	s := &Set{dryRun: cfg.DryRun, headers: cfg.Headers == nil || *cfg.Headers, below: below, clock: o.clock, names: sortedKeys(cfg.Limiters), limiters: make(map[string]*Limiter)}
	for _, name := range s.names {
		l, err := NewLimiter(name, cfg.Limiters[name], opts...)
		if err != nil {
			return nil, err
		}
		s.limiters[name] = l
	}
	return s, nil
}

// Limiter returns the limiter called name, or nil (which admits all) when
// the config has none.
func (s *Set) Limiter(name string) *Limiter { return s.limiters[name] }

// DryRun reports the config's dry-run flag.
func (s *Set) DryRun() bool { return s.dryRun }

// Headers reports whether admitted calls carry rate-limit headers
// (Config.Headers).
func (s *Set) Headers() bool { return s.headers }

// HeadersFor reports whether an admitted call whose binding limit is d
// carries the headers: Config.Headers, and d's remaining share is below
// Config.HeadersBelowPercent of its limit.
func (s *Set) HeadersFor(d Decision) bool {
	return s.headers && int64(d.Remaining)*100 < int64(d.Limit)*int64(s.below)
}

// Clock returns the set's time source.
func (s *Set) Clock() Clock { return s.clock }

// Snapshot returns every limiter's counters, sorted by limiter name.
func (s *Set) Snapshot() []Counters {
	out := make([]Counters, 0, len(s.names))
	for _, name := range s.names {
		out = append(out, s.limiters[name].Counters())
	}
	return out
}

// Sweep deletes expired keys from every limiter whose store is a
// MemoryStore (or any store with a Sweep method).
func (s *Set) Sweep(now time.Time) int {
	removed := 0
	for _, name := range s.names {
		if sw, ok := s.limiters[name].store.(interface{ Sweep(time.Time) int }); ok {
			removed += sw.Sweep(now)
		}
	}
	return removed
}

// Run calls Sweep every interval until ctx is done. It blocks; start it in a
// goroutine you own.
func (s *Set) Run(ctx context.Context, interval time.Duration) {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			s.Sweep(s.clock.Now())
		}
	}
}
