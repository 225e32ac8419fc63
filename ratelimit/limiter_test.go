package ratelimit

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const ms = time.Millisecond

func mustRule(t *testing.T, l Limits) *Rule {
	t.Helper()
	r, err := NewRule(l)
	if err != nil {
		t.Fatalf("NewRule(%+v): %v", l, err)
	}
	return r
}

// take runs one Take against s and fails the test on error.
func take(t *testing.T, s Store, key string, n int, now time.Time, r *Rule) Decision {
	t.Helper()
	d, err := s.Take(context.Background(), key, n, now, r)
	if err != nil {
		t.Fatalf("Take(%q, %d): %v", key, n, err)
	}
	return d
}

func TestLimitsValidate(t *testing.T) {
	ok := DefaultLimits()
	tests := []struct {
		name    string
		mutate  func(*Limits)
		wantErr bool
	}{
		{"defaults", func(*Limits) {}, false},
		{"fractional rate", func(l *Limits) { l.MessagesPerSecond = 0.5 }, false},
		{"zero rate", func(l *Limits) { l.MessagesPerSecond = 0 }, true},
		{"negative rate", func(l *Limits) { l.MessagesPerSecond = -1 }, true},
		{"NaN rate", func(l *Limits) { l.MessagesPerSecond = math.NaN() }, true},
		{"infinite rate", func(l *Limits) { l.MessagesPerSecond = math.Inf(1) }, true},
		{"zero per minute", func(l *Limits) { l.MessagesPerMinute = 0 }, true},
		{"zero burst", func(l *Limits) { l.BurstLimit = 0 }, true},
		{"huge burst", func(l *Limits) { l.BurstLimit = 1 << 40 }, true},
		{"zero window", func(l *Limits) { l.WindowSize = 0 }, true},
		{"sub-ms window", func(l *Limits) { l.WindowSize = time.Microsecond }, true},
		{"refill longer than a century", func(l *Limits) { l.MessagesPerSecond = 1e-9 }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := ok
			tc.mutate(&l)
			err := l.Validate()
			if (err != nil) != tc.wantErr {
				t.Fatalf("Validate(%+v) = %v, wantErr %v", l, err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidLimits) {
				t.Fatalf("error %v does not wrap ErrInvalidLimits", err)
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	src := `
dryRun: true
limiters:
  user:
    messagesPerSecond: 5
    windowSize: 30s
    overrides:
      vip: {burstLimit: 500}
  method:
    unlimited: true
    overrides:
      /pushercm.v1.ConnectionService/ListConnections: {messagesPerSecond: 1, burstLimit: 2}
`
	var cfg Config
	dec := yaml.NewDecoder(stringsReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	set, err := NewSet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !set.DryRun() {
		t.Error("dryRun not decoded")
	}
	user := set.Limiter(LimiterUser)
	got := user.Rule("someone").Limits()
	want := Limits{MessagesPerSecond: 5, MessagesPerMinute: 600, BurstLimit: 50, WindowSize: 30 * time.Second}
	if got != want {
		t.Errorf("user default = %+v, want %+v", got, want)
	}
	want.BurstLimit = 500
	if got := user.Rule("vip").Limits(); got != want {
		t.Errorf("vip override = %+v, want %+v (unset fields inherit)", got, want)
	}
	m := set.Limiter(LimiterMethod)
	if m.Rule("/other") != nil {
		t.Error("unlimited method limiter limits a method without override")
	}
	if r := m.Rule("/pushercm.v1.ConnectionService/ListConnections"); r == nil || r.Limits().BurstLimit != 2 {
		t.Errorf("method override = %+v", r)
	}
	if set.Limiter("absent") != nil {
		t.Error("absent limiter is not nil")
	}

	bad := "limiters:\n  user:\n    burstLimt: 3\n"
	dec = yaml.NewDecoder(stringsReader(bad))
	dec.KnownFields(true)
	if err := dec.Decode(&Config{}); err == nil {
		t.Error("unknown key accepted")
	}
}

func TestConfigValidateRejectsBadOverride(t *testing.T) {
	cfg := DefaultConfig()
	p := cfg.Limiters[LimiterUser]
	p.Overrides = map[string]Limits{"x": {MessagesPerSecond: -3}}
	cfg.Limiters[LimiterUser] = p
	if err := cfg.Validate(); !errors.Is(err, ErrInvalidLimits) {
		t.Fatalf("Validate = %v, want ErrInvalidLimits", err)
	}
	if _, err := NewSet(cfg); !errors.Is(err, ErrInvalidLimits) {
		t.Fatalf("NewSet = %v, want ErrInvalidLimits", err)
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
}

// TestBurstThenSteady: a fresh key takes the whole burst at once, then one
// event per interval, with exact retry hints in between.
func TestBurstThenSteady(t *testing.T) {
	s := NewMemoryStore()
	r := mustRule(t, DefaultLimits()) // 10/s, burst 50, 600/60s
	now := t0
	for i := range 50 {
		d := take(t, s, "u", 1, now, r)
		if !d.Allowed || d.Remaining != 49-i {
			t.Fatalf("burst event %d: %+v", i, d)
		}
	}
	d := take(t, s, "u", 1, now, r)
	want := Decision{Allowed: false, Limit: 50, Remaining: 0, RetryAfter: 100 * ms, ResetTime: now.Add(100 * ms)}
	if d != want {
		t.Fatalf("after burst: %+v, want %+v", d, want)
	}
	// Steady state: exactly one token per 100 ms, none earlier.
	for i := range 20 {
		now = now.Add(100*ms - 1)
		if d := take(t, s, "u", 1, now, r); d.Allowed || d.RetryAfter != 1 {
			t.Fatalf("step %d one ns early: %+v", i, d)
		}
		now = now.Add(1)
		d := take(t, s, "u", 1, now, r)
		if !d.Allowed || d.Remaining != 0 || !d.ResetTime.Equal(now.Add(100*ms)) || d.Limit != 50 {
			t.Fatalf("step %d on time: %+v", i, d)
		}
	}
}

func TestRefill(t *testing.T) {
	s := NewMemoryStore()
	r := mustRule(t, DefaultLimits())
	take(t, s, "u", 50, t0, r)
	tests := []struct {
		name    string
		elapsed time.Duration
		want    int
	}{
		{"nothing yet", 99 * ms, 0},
		{"one token", 100 * ms, 1},
		{"half", 2500 * ms, 25},
		{"full", 5 * time.Second, 50},
		{"capped at burst", time.Hour, 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := s.Peek(context.Background(), "u", t0.Add(tc.elapsed), r)
			if d.Remaining != tc.want {
				t.Fatalf("Remaining after %v = %d, want %d (%+v)", tc.elapsed, d.Remaining, tc.want, d)
			}
		})
	}
}

// TestMinuteWindow: taking as fast as the bucket allows, the window admits
// exactly MessagesPerMinute and then nothing until it ends, although the
// bucket keeps refilling.
func TestMinuteWindow(t *testing.T) {
	s := NewMemoryStore()
	r := mustRule(t, DefaultLimits())
	start := t0
	now := start
	admitted := 0
	for now.Before(start.Add(60 * time.Second)) {
		d := take(t, s, "u", 1, now, r)
		if d.Allowed {
			admitted++
			if admitted > 600 {
				t.Fatalf("admitted %d > 600 in one window at %v: %+v", admitted, now.Sub(start), d)
			}
			continue // take again at the same instant
		}
		if admitted == 600 {
			// Spent: the refusal must point at the window's end exactly.
			wantWait := start.Add(60 * time.Second).Sub(now)
			if d.RetryAfter != wantWait || d.Limit != 600 || d.Remaining != 0 || !d.ResetTime.Equal(start.Add(60*time.Second)) {
				t.Fatalf("spent window at %v: %+v, want wait %v", now.Sub(start), d, wantWait)
			}
		}
		now = now.Add(10 * ms)
	}
	if admitted != 600 {
		t.Fatalf("admitted %d in the first window, want 600", admitted)
	}
	// Bucket full by now, yet one ns before the window ends nothing passes.
	end := start.Add(60 * time.Second)
	if d := take(t, s, "u", 1, end.Add(-1), r); d.Allowed || d.RetryAfter != 1 {
		t.Fatalf("1ns before reset: %+v", d)
	}
	d := take(t, s, "u", 1, end, r)
	if !d.Allowed || d.Remaining != 49 {
		t.Fatalf("at reset: %+v", d)
	}
}

// TestResetTimeBinding checks which limit Limit/ResetTime describe when allowed.
func TestResetTimeBinding(t *testing.T) {
	tests := []struct {
		name      string
		limits    Limits
		n         int
		wantLimit int
		wantRem   int
		wantReset time.Duration // from t0
	}{
		{"bucket binds: next token", DefaultLimits(), 1, 50, 49, 100 * ms},
		{"bucket binds after batch", DefaultLimits(), 10, 50, 40, 100 * ms},
		{"window binds: window end", Limits{MessagesPerSecond: 10, MessagesPerMinute: 5, BurstLimit: 50, WindowSize: time.Minute}, 2, 5, 3, time.Minute},
		{"fractional rate", Limits{MessagesPerSecond: 0.5, MessagesPerMinute: 600, BurstLimit: 3, WindowSize: time.Minute}, 1, 3, 2, 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewMemoryStore()
			d := take(t, s, "k", tc.n, t0, mustRule(t, tc.limits))
			want := Decision{Allowed: true, Limit: tc.wantLimit, Remaining: tc.wantRem, ResetTime: t0.Add(tc.wantReset)}
			if d != want {
				t.Fatalf("got %+v, want %+v", d, want)
			}
		})
	}
}

func TestAllowNBatch(t *testing.T) {
	s := NewMemoryStore()
	r := mustRule(t, DefaultLimits())
	if d := take(t, s, "u", 30, t0, r); !d.Allowed || d.Remaining != 20 {
		t.Fatalf("first 30: %+v", d)
	}
	d := take(t, s, "u", 30, t0, r)
	if d.Allowed || d.RetryAfter != time.Second || d.Remaining != 20 {
		t.Fatalf("second 30 should wait 10 tokens = 1s: %+v", d)
	}
	if d := take(t, s, "u", 20, t0, r); !d.Allowed {
		t.Fatalf("refused batch consumed tokens: %+v", d)
	}
	_, err := s.Take(context.Background(), "u", 51, t0, r)
	if !errors.Is(err, ErrExceedsCapacity) {
		t.Fatalf("51 > burst: err %v, want ErrExceedsCapacity", err)
	}
	_, err = s.Take(context.Background(), "u", 0, t0, r)
	if !errors.Is(err, ErrInvalidCount) {
		t.Fatalf("n=0: err %v, want ErrInvalidCount", err)
	}
	small := mustRule(t, Limits{MessagesPerSecond: 10, MessagesPerMinute: 5, BurstLimit: 50, WindowSize: time.Minute})
	if _, err := s.Take(context.Background(), "w", 6, t0, small); !errors.Is(err, ErrExceedsCapacity) {
		t.Fatalf("6 > window: err %v, want ErrExceedsCapacity", err)
	}
}

// TestRetryAfterExactProperty drives random takes at random times and checks
// every refusal: the same request RetryAfter-1ns later is refused, and
// RetryAfter later is admitted, computed on copies so the run goes on.
func TestRetryAfterExactProperty(t *testing.T) {
	rules := []Limits{
		DefaultLimits(),
		{MessagesPerSecond: 3, MessagesPerMinute: 20, BurstLimit: 7, WindowSize: 5 * time.Second},
		{MessagesPerSecond: 1000, MessagesPerMinute: 100, BurstLimit: 100, WindowSize: time.Second},
		{MessagesPerSecond: 0.7, MessagesPerMinute: 1000, BurstLimit: 4, WindowSize: time.Minute},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, l := range rules {
		r := mustRule(t, l)
		var e entry
		now := t0.UnixNano()
		refusals := 0
		for i := 0; i < 20000; i++ {
			now += rng.Int64N(int64(300 * ms))
			n := 1 + rng.Int64N(min(r.burst, r.perWindow))
			before := e
			d := decideV(&e, r, n, now, true)
			if d.Allowed {
				if d.RetryAfter != 0 {
					t.Fatalf("allowed with RetryAfter %v", d.RetryAfter)
				}
				continue
			}
			refusals++
			if e != before {
				t.Fatalf("refusal changed state: %+v -> %+v", before, e)
			}
			if !d.ResetTime.Equal(time.Unix(0, now).Add(d.RetryAfter)) {
				t.Fatalf("ResetTime %v != now+RetryAfter", d.ResetTime)
			}
			early, onTime := e, e
			if d.RetryAfter > 0 && decideV(&early, r, n, now+int64(d.RetryAfter)-1, true).Allowed {
				t.Fatalf("%+v: admitted 1ns before RetryAfter %v (state %+v, n %d)", l, d.RetryAfter, before, n)
			}
			if !decideV(&onTime, r, n, now+int64(d.RetryAfter), true).Allowed {
				t.Fatalf("%+v: refused at RetryAfter %v (state %+v, n %d)", l, d.RetryAfter, before, n)
			}
		}
		if refusals < 100 {
			t.Fatalf("%+v: only %d refusals, the property was barely exercised", l, refusals)
		}
	}
}

// TestNeverAllowedAfterWindowSpent: whatever the arrival pattern, no window
// admits more than MessagesPerMinute.
func TestNeverAllowedAfterWindowSpent(t *testing.T) {
	l := Limits{MessagesPerSecond: 50, MessagesPerMinute: 100, BurstLimit: 20, WindowSize: 10 * time.Second}
	r := mustRule(t, l)
	rng := rand.New(rand.NewPCG(3, 4))
	var e entry
	now := t0.UnixNano()
	winEnd, inWindow := int64(0), int64(0)
	for i := 0; i < 50000; i++ {
		now += rng.Int64N(int64(50 * ms))
		n := 1 + rng.Int64N(5)
		d := decideV(&e, r, n, now, true)
		if !d.Allowed {
			continue
		}
		if now >= winEnd {
			winEnd, inWindow = now+int64(l.WindowSize), 0
		}
		inWindow += n
		if inWindow > int64(l.MessagesPerMinute) {
			t.Fatalf("window admitted %d > %d", inWindow, l.MessagesPerMinute)
		}
	}
}

func TestPeekDoesNotConsume(t *testing.T) {
	s := NewMemoryStore()
	r := mustRule(t, DefaultLimits())
	ctx := context.Background()
	for range 100 {
		d, err := s.Peek(ctx, "u", t0, r)
		if err != nil || !d.Allowed || d.Remaining != 50 {
			t.Fatalf("peek fresh: %+v %v", d, err)
		}
	}
	if s.Len() != 0 {
		t.Fatalf("Peek created keys: Len %d", s.Len())
	}
	take(t, s, "u", 50, t0, r)
	d, _ := s.Peek(ctx, "u", t0, r)
	want := Decision{Allowed: false, Limit: 50, Remaining: 0, RetryAfter: 100 * ms, ResetTime: t0.Add(100 * ms)}
	if d != want {
		t.Fatalf("peek spent: %+v, want %+v", d, want)
	}
	if d := take(t, s, "u", 1, t0.Add(100*ms), r); !d.Allowed {
		t.Fatalf("peeks consumed a token: %+v", d)
	}
}

func TestLimiterOverridesAndCounters(t *testing.T) {
	clock := NewManualClock(t0)
	set, err := NewSet(Config{Limiters: map[string]Policy{
		LimiterPrincipal: {Limits: Limits{BurstLimit: 2}, Overrides: map[string]Limits{"batch-svc": {BurstLimit: 5}}},
		LimiterMethod:    {Unlimited: true, Overrides: map[string]Limits{"/svc/Expensive": {BurstLimit: 1}}},
	}}, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := set.Limiter(LimiterPrincipal)
	count := func(l *Limiter, key string) int {
		n := 0
		for range 10 {
			if d, _ := l.Allow(ctx, key); d.Allowed {
				n++
			}
		}
		return n
	}
	tests := []struct {
		name    string
		limiter *Limiter
		key     string
		want    int
	}{
		{"default principal", p, "svc-a", 2},
		{"other principal unaffected", p, "svc-b", 2},
		{"overridden principal", p, "batch-svc", 5},
		{"method without override is unlimited", set.Limiter(LimiterMethod), "/svc/Cheap", 10},
		{"overridden method", set.Limiter(LimiterMethod), "/svc/Expensive", 1},
		{"nil limiter admits all", set.Limiter("absent"), "x", 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := count(tc.limiter, tc.key); got != tc.want {
				t.Fatalf("admitted %d of 10, want %d", got, tc.want)
			}
		})
	}
	if _, err := p.AllowN(ctx, "svc-c", 3); !errors.Is(err, ErrExceedsCapacity) {
		t.Fatalf("AllowN over burst: %v", err)
	}
	snap := set.Snapshot()
	want := []Counters{
		{Limiter: LimiterMethod, Allowed: 1, Limited: 9},
		{Limiter: LimiterPrincipal, Allowed: 9, Limited: 22},
	}
	if len(snap) != len(want) {
		t.Fatalf("snapshot %+v", snap)
	}
	for i := range want {
		if snap[i] != want[i] {
			t.Errorf("snapshot[%d] = %+v, want %+v", i, snap[i], want[i])
		}
	}
	// Peek is not a decision and is not counted.
	if d, _ := p.Peek(ctx, "svc-a"); d.Allowed || d.Remaining != 0 {
		t.Errorf("peek svc-a: %+v", d)
	}
	if got := p.Counters(); got != want[1] {
		t.Errorf("Peek changed counters: %+v", got)
	}
	clock.Advance(time.Second) // default 10/s refills svc-a
	if d, _ := p.Allow(ctx, "svc-a"); !d.Allowed {
		t.Errorf("after refill: %+v", d)
	}
}

// countingStore is a Store that counts the takes it got.
type countingStore struct {
	*MemoryStore
	takes int
}

func (s *countingStore) Take(ctx context.Context, key string, n int, now time.Time, r *Rule) (Decision, error) {
	s.takes++
	return s.MemoryStore.Take(ctx, key, n, now, r)
}

// WithStore gives each limiter the store named for it; nil keeps memory.
func TestWithStore(t *testing.T) {
	stores := map[string]*countingStore{}
	cfg := DefaultConfig()
	set, err := NewSet(cfg, WithStore(func(name string) Store {
		if name == LimiterMethod {
			return nil
		}
		s := &countingStore{MemoryStore: NewMemoryStore()}
		stores[name] = s
		return s
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.Limiter(LimiterUser).Allow(context.Background(), "u"); err != nil {
		t.Fatal(err)
	}
	if stores[LimiterUser].takes != 1 || set.Limiter(LimiterUser).Store() != Store(stores[LimiterUser]) {
		t.Fatalf("the user limiter did not use its store (%d takes)", stores[LimiterUser].takes)
	}
	if _, ok := set.Limiter(LimiterMethod).Store().(*MemoryStore); !ok {
		t.Fatal("a nil store did not keep the MemoryStore")
	}
	if c := set.Limiter(LimiterUser).Counters(); c.Allowed != 1 {
		t.Fatalf("counters %+v, want one admission", c)
	}
	if err := (Config{Store: "disk"}).Validate(); !errors.Is(err, ErrInvalidLimits) {
		t.Fatalf("store disk: %v", err)
	}
}
