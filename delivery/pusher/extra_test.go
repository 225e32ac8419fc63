package pusher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/milequest/pushercm/delivery"
)

func TestConnectionsAreReused(t *testing.T) {
	e := newEnv(t, nil)
	for i := 0; i < 20; i++ {
		if _, err := e.driver.Publish(context.Background(), ev(fmt.Sprint(i), "team-1")); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.proxy.conns.Load(); n != 1 {
		t.Fatalf("20 sequential publishes opened %d connections, want 1 (keep-alive)", n)
	}
}

func TestConcurrentPublishes(t *testing.T) {
	e := newEnv(t, nil)
	// Every event's first request fails, alternately with a 503 and a 429 (the rule
	// runs under the proxy's lock).
	seen := map[string]bool{}
	var n int
	e.proxy.setRule(func(_ *http.Request, body []byte) fault {
		if seen[string(body)] {
			return pass
		}
		seen[string(body)] = true
		n++
		if n%2 == 0 {
			return fail503
		}
		return fail429
	})
	const workers = 40
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Go(func() {
			if _, err := e.driver.Publish(context.Background(), ev(fmt.Sprint(i), "team-1")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	d := e.backend.deliveries()
	for i := 0; i < workers; i++ {
		if got := d[fmt.Sprintf(`team-1|{"id":"%d"}`, i)]; got != 1 {
			t.Fatalf("event %d delivered %d times", i, got)
		}
	}
}

func TestConfigFromYAML(t *testing.T) {
	const doc = `
appId: "123"
key: k
secret: s
host: 127.0.0.1:6001
scheme: http
requestTimeout: 2s
reconnectAttempts: 5
reconnectDelay: 50ms
maxReconnectDelay: 3s
backoffMultiplier: 1.5
breakerFailureThreshold: 7
breakerOpenTimeout: 20s
skipDeliveryCounts: true
`
	var c Config
	dec := yaml.NewDecoder(bytes.NewBufferString(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	want := Config{AppID: "123", Key: "k", Secret: "s", Host: "127.0.0.1:6001", Scheme: "http",
		RequestTimeout: 2 * time.Second, ReconnectAttempts: 5, ReconnectDelay: 50 * time.Millisecond,
		MaxReconnectDelay: 3 * time.Second, BackoffMultiplier: 1.5, BreakerFailureThreshold: 7,
		BreakerOpenTimeout: 20 * time.Second, SkipDeliveryCounts: true}
	if c != want {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	dec = yaml.NewDecoder(bytes.NewBufferString("appID: x\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err == nil {
		t.Fatal("a mis-cased key was accepted")
	}
}

func TestDisabledBreakerNeverOpens(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BreakerFailureThreshold = -1; c.ReconnectAttempts = -1 })
	e.proxy.setRule(func(*http.Request, []byte) fault { return fail500 })
	for i := 0; i < 5; i++ {
		if _, err := e.driver.Publish(context.Background(), ev("x", "team-1")); !errors.Is(err, delivery.ErrDeliveryFailed) {
			t.Fatalf("err = %v", err)
		}
	}
	if h := e.driver.Health(); h.Breaker != delivery.BreakerNone || !h.Healthy {
		t.Fatalf("health = %+v", h)
	}
	if n := len(e.proxy.requests()); n != 5 {
		t.Fatalf("requests = %d, want 5 (no retries, no breaker)", n)
	}
}

func FuzzParseStatusError(f *testing.F) {
	f.Add("Status Code: 400 - bad")
	f.Add("Status Code: 9999 - x")
	f.Add("Status Code: - ")
	f.Fuzz(func(t *testing.T, s string) {
		se, ok := parseStatusError(errors.New(s))
		if ok && (se.StatusCode < 100 || se.StatusCode > 999) {
			t.Fatalf("accepted status %d", se.StatusCode)
		}
		cls, _ := classify(errors.New(s))
		if ok && se.Temporary() != (cls == classRetryable) {
			t.Fatalf("classification disagrees for %q", s)
		}
	})
}

func TestRetryAfterIsHonoured(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxReconnectDelay = 5 * time.Second })
	e.proxy.setPlan(fail429After2, fail429After2)
	if _, err := e.driver.Publish(context.Background(), ev("x", "team-1")); err != nil {
		t.Fatal(err)
	}
	// Backoff alone would be 100ms then 200ms; Retry-After: 2 wins both times.
	if got := fmt.Sprint(e.sleeps.Delays()); got != "[2s 2s]" {
		t.Fatalf("delays = %s", got)
	}

	// MaxReconnectDelay caps it.
	e = newEnv(t, nil) // max 300ms
	e.proxy.setPlan(fail429After2)
	if _, err := e.driver.Publish(context.Background(), ev("x", "team-1")); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(e.sleeps.Delays()); got != "[300ms]" {
		t.Fatalf("capped delays = %s", got)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{"0", 0},
		{"-1", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	}
	for _, tc := range tests {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestBatchRefusedBySDKIsSplit(t *testing.T) {
	e := newEnv(t, nil) // no encryption master key
	var events []delivery.Event
	for i := 0; i < 10; i++ {
		events = append(events, ev(fmt.Sprint(i), "team-1"))
	}
	events[4] = ev("enc", "private-encrypted-x")
	_, errs := e.driver.PublishBatch(context.Background(), events)
	for i, err := range errs {
		if (i == 4) != (err != nil) {
			t.Fatalf("event %d: err = %v", i, err)
		}
	}
	if !errors.Is(errs[4], delivery.ErrInvalid) {
		t.Fatalf("encrypted event err = %v", errs[4])
	}
	for k, n := range e.backend.deliveries() {
		if n != 1 {
			t.Fatalf("%s delivered %d times", k, n)
		}
	}
	if n := e.backend.publishCount(); n != 9 {
		t.Fatalf("published %d, want 9", n)
	}
}

func TestHalfOpenLetsOneProbeThrough(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.BreakerFailureThreshold = 1
		c.BreakerOpenTimeout = time.Second
		c.ReconnectAttempts = -1
	})
	ctx := context.Background()
	e.proxy.setPlan(fail500)
	if _, err := e.driver.Publish(ctx, ev("open", "team-1")); err == nil {
		t.Fatal("want an error")
	}
	if h := e.driver.Health(); h.Breaker != delivery.BreakerOpen {
		t.Fatalf("health = %+v", h)
	}
	waitHalfOpen(t, e.driver)

	// The probe is held at the proxy until every other caller has been refused.
	gate := make(chan struct{})
	arrived := make(chan struct{})
	var once sync.Once
	e.proxy.setRule(func(*http.Request, []byte) fault {
		once.Do(func() { close(arrived) })
		return pass
	})
	e.proxy.mu.Lock()
	e.proxy.hold = gate
	e.proxy.mu.Unlock()

	probeErr := make(chan error, 1)
	go func() {
		_, err := e.driver.Publish(ctx, ev("probe", "team-1"))
		probeErr <- err
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the probe never reached the proxy")
	}
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Go(func() {
			if _, err := e.driver.Publish(ctx, ev(fmt.Sprint("other", i), "team-1")); !errors.Is(err, delivery.ErrUnavailable) {
				t.Errorf("concurrent call during the probe: %v", err)
			}
		})
	}
	wg.Wait()
	close(gate)
	if err := <-probeErr; err != nil {
		t.Fatal(err)
	}
	if h := e.driver.Health(); h.Breaker != delivery.BreakerClosed {
		t.Fatalf("health = %+v", h)
	}
	if n := e.backend.publishCount(); n != 1 {
		t.Fatalf("published %d events, want only the probe", n)
	}
}
