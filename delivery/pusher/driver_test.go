package pusher

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/milequest/pushercm/delivery"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// nbio (under the edge started by edge_test.go) keeps process-wide pools alive.
		goleak.IgnoreAnyFunction("github.com/lesismal/nbio/taskpool.(*TaskPool).run"),
		goleak.IgnoreAnyFunction("github.com/lesismal/nbio/timer.(*Timer).loop"),
		goleak.IgnoreAnyFunction("github.com/lesismal/nbio.(*Engine).Start.func1"),
		goleak.IgnoreAnyFunction("github.com/lesismal/nbio/taskpool.New.func3"),
	)
}

func TestPublishDeliversAndCounts(t *testing.T) {
	e := newEnv(t, nil)
	res, err := e.driver.Publish(context.Background(), delivery.Event{
		Channels: []string{"team-1", "presence-team-1", "nobody"}, Name: "activity", Data: `{"km":3}`, ExcludeSocketID: "123.456",
	})
	if err != nil {
		t.Fatal(err)
	}
	// subscription_count: team-1 3 + presence-team-1 2 + nobody 0.
	if res.DeliveredTo != 5 {
		t.Fatalf("DeliveredTo = %d, want 5", res.DeliveredTo)
	}
	e.backend.mu.Lock()
	got := e.backend.published
	e.backend.mu.Unlock()
	if len(got) != 1 || got[0].Event != "activity" || got[0].Data != `{"km":3}` || got[0].ExcludeSocketID != "123.456" || len(got[0].Channels) != 3 {
		t.Fatalf("published = %+v", got)
	}
}

func TestPublishSkipDeliveryCounts(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SkipDeliveryCounts = true })
	res, err := e.driver.Publish(context.Background(), ev("a", "team-1"))
	if err != nil || res.DeliveredTo != 0 {
		t.Fatalf("res = %+v, %v", res, err)
	}
}

func TestPublishSplitsChannels(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.EncryptionMasterKeyBase64 = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=" })
	channels := []string{"private-encrypted-a", "team-1"}
	for i := 0; i < 150; i++ {
		channels = append(channels, fmt.Sprintf("c%03d", i))
	}
	res, err := e.driver.Publish(context.Background(), delivery.Event{Channels: channels, Name: "n", Data: "{}"})
	if err != nil {
		t.Fatal(err)
	}
	if res.DeliveredTo != 3 {
		t.Fatalf("DeliveredTo = %d", res.DeliveredTo)
	}
	// One request for the encrypted channel, two for 151 plain channels (100 + 51).
	if n := len(e.proxy.requests()); n != 3 {
		t.Fatalf("requests = %d, want 3", n)
	}
	d := e.backend.deliveries()
	if d["private-encrypted-a|{}"] != 0 { // the data was encrypted by pusher-http-go
		t.Fatal("encrypted channel received plaintext")
	}
	if d["team-1|{}"] != 1 || d["c149|{}"] != 1 {
		t.Fatalf("deliveries = %v", d)
	}
}

func TestPublishBatchSplitsIntoTens(t *testing.T) {
	e := newEnv(t, nil)
	var events []delivery.Event
	for i := 0; i < 25; i++ {
		events = append(events, ev(fmt.Sprint(i), "team-1"))
	}
	events = append(events, ev("multi1", "team-1", "team-2"), ev("multi2", "presence-team-1", "team-2"))
	res, errs := e.driver.PublishBatch(context.Background(), events)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if res[0].DeliveredTo != 3 || res[25].DeliveredTo != 4 || res[26].DeliveredTo != 3 {
		t.Fatalf("results = %+v", res)
	}
	batches, triggers := 0, 0
	for _, r := range e.proxy.requests() {
		switch {
		case strings.HasSuffix(r, "/batch_events"):
			batches++
		case strings.HasSuffix(r, "/events"):
			triggers++
		}
	}
	if batches != 3 || triggers != 2 {
		t.Fatalf("batch requests = %d, trigger requests = %d; want 3 and 2", batches, triggers)
	}
	for k, n := range e.backend.deliveries() {
		if n != 1 {
			t.Fatalf("%s delivered %d times", k, n)
		}
	}
}

func TestPublishBatchFailureIsPerRequest(t *testing.T) {
	e := newEnv(t, nil)
	e.proxy.setRule(func(r *http.Request, body []byte) fault {
		if strings.Contains(string(body), "poison") {
			return fail400
		}
		return pass
	})
	var events []delivery.Event
	for i := 0; i < 20; i++ {
		events = append(events, ev(fmt.Sprint(i), "team-1"))
	}
	events[13].Data = "poison"
	_, errs := e.driver.PublishBatch(context.Background(), events)
	for i, err := range errs {
		inPoisonedRequest := i >= 10
		if inPoisonedRequest != (err != nil) {
			t.Fatalf("event %d: err = %v", i, err)
		}
		if err != nil && !errors.Is(err, delivery.ErrInvalid) {
			t.Fatalf("event %d: err = %v, want ErrInvalid", i, err)
		}
	}
	if n := e.backend.publishCount(); n != 10 {
		t.Fatalf("published %d events, want 10", n)
	}
}

func TestRetriesTransientFaults(t *testing.T) {
	tests := []struct {
		name   string
		faults []fault
	}{
		{"500", []fault{fail500}},
		{"503 then 429", []fault{fail503, fail429}},
		{"429", []fault{fail429}},
		{"three failures", []fault{fail500, fail503, fail429}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.proxy.setPlan(tc.faults...)
			res, err := e.driver.Publish(context.Background(), ev("x", "team-1"))
			if err != nil {
				t.Fatal(err)
			}
			if res.DeliveredTo != 3 {
				t.Fatalf("DeliveredTo = %d", res.DeliveredTo)
			}
			if n := len(e.proxy.requests()); n != len(tc.faults)+1 {
				t.Fatalf("requests = %d, want %d", n, len(tc.faults)+1)
			}
			if got := e.backend.deliveries()[`team-1|{"id":"x"}`]; got != 1 {
				t.Fatalf("delivered %d times", got)
			}
			st := e.driver.Stats()
			if st.Retries != uint64(len(tc.faults)) || st.Failures != uint64(len(tc.faults)) {
				t.Fatalf("stats = %+v", st)
			}
		})
	}
}

// TestRetriesTimeouts: queries are retried after timeouts and resets (publishes
// are not: see TestLostAnswerIsNotResent).
func TestRetriesTimeouts(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RequestTimeout = 200 * time.Millisecond })
	e.proxy.setPlan(hang, reset)
	if _, err := e.driver.Channels(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if n := len(e.proxy.requests()); n != 3 {
		t.Fatalf("requests = %d", n)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	e := newEnv(t, nil)
	e.proxy.setRule(func(*http.Request, []byte) fault { return fail500 })
	_, err := e.driver.Publish(context.Background(), ev("x", "team-1"))
	if !errors.Is(err, delivery.ErrDeliveryFailed) {
		t.Fatalf("err = %v, want ErrDeliveryFailed", err)
	}
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 500 {
		t.Fatalf("err = %v, want a 500 StatusError", err)
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}
	if got := e.sleeps.Delays(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delays = %v, want %v", got, want)
	}
	if n := len(e.proxy.requests()); n != 4 {
		t.Fatalf("requests = %d, want 1 + 3 retries", n)
	}
	if e.backend.publishCount() != 0 {
		t.Fatal("a failed event was delivered")
	}
}

// TestBackoffJitterRange: the production policy draws each delay from the
// upper half of the exponential ceiling, capped at MaxReconnectDelay.
func TestBackoffJitterRange(t *testing.T) {
	cfg := Config{ReconnectDelay: 100 * time.Millisecond, MaxReconnectDelay: time.Second, BackoffMultiplier: 2}
	var lowest, highest time.Duration = time.Hour, 0
	for range 200 {
		b := cfg.newBackOff()
		for retry := 0; retry < 6; retry++ {
			ceil := min(100*time.Millisecond<<retry, time.Second)
			got := b.NextBackOff()
			if got < ceil/2 || got > ceil {
				t.Fatalf("retry %d: %v outside [%v, %v]", retry, got, ceil/2, ceil)
			}
			if retry == 0 {
				lowest, highest = min(lowest, got), max(highest, got)
			}
		}
	}
	// Jittered, over most of the range.
	if lowest > 60*time.Millisecond || highest < 90*time.Millisecond {
		t.Fatalf("first delays spread over [%v, %v] only", lowest, highest)
	}
}

func TestClientErrorsAreNotRetried(t *testing.T) {
	tests := []struct {
		name  string
		fault fault
		want  error
	}{
		{"400", fail400, delivery.ErrInvalid},
		{"401", fail401, delivery.ErrDeliveryFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.proxy.setPlan(tc.fault)
			_, err := e.driver.Publish(context.Background(), ev("x", "team-1"))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if n := len(e.proxy.requests()); n != 1 {
				t.Fatalf("requests = %d, want 1 (no retry)", n)
			}
			if len(e.sleeps.Delays()) != 0 {
				t.Fatal("slept before giving up on a 4xx")
			}
		})
	}
}

func TestWrongSecretIsRejectedByTheAPI(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Secret = "wrong" })
	_, err := e.driver.Publish(context.Background(), ev("x", "team-1"))
	var se *StatusError
	if !errors.Is(err, delivery.ErrDeliveryFailed) || !errors.As(err, &se) || se.StatusCode != 401 {
		t.Fatalf("err = %v, want 401 ErrDeliveryFailed", err)
	}
	if len(e.proxy.requests()) != 1 || e.backend.publishCount() != 0 {
		t.Fatal("retried or delivered with a bad signature")
	}
}

func TestCallerDeadlineBoundsAttempts(t *testing.T) {
	e := newEnv(t, nil) // RequestTimeout 10s: only the caller's deadline can end the attempt
	e.proxy.setRule(func(*http.Request, []byte) fault { return hang })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := e.driver.Publish(ctx, ev("x", "team-1"))
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, delivery.ErrDeliveryFailed) {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("returned after %v; the deadline was 300ms", el)
	}
	if h := e.driver.Health(); h.ConsecutiveFailures != 0 {
		t.Fatalf("the caller's deadline counted as an upstream failure: %+v", h)
	}
}

func TestUnreachableIsUnavailable(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ReconnectAttempts = -1 })
	e.proxy.srv.Close() // nothing listens any more
	_, err := e.driver.Publish(context.Background(), ev("x", "team-1"))
	if !errors.Is(err, delivery.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestBreakerOpensFailsFastAndCloses(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.BreakerFailureThreshold = 3
		c.BreakerOpenTimeout = time.Second
	})
	e.proxy.setRule(func(*http.Request, []byte) fault { return fail500 })

	// Attempts 1-3 fail and open the breaker; the 4th attempt is refused.
	_, err := e.driver.Publish(context.Background(), ev("x", "team-1"))
	if !errors.Is(err, delivery.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable from the open breaker", err)
	}
	if n := len(e.proxy.requests()); n != 3 {
		t.Fatalf("requests = %d, want 3", n)
	}
	h := e.driver.Health()
	if h.Healthy || h.Breaker != delivery.BreakerOpen || h.ConsecutiveFailures != 3 || h.LastError == "" {
		t.Fatalf("health = %+v", h)
	}

	// While open: fail fast, no request goes out, for every call kind.
	for _, call := range []func() error{
		func() error { _, err := e.driver.Publish(context.Background(), ev("y", "team-1")); return err },
		func() error {
			_, errs := e.driver.PublishBatch(context.Background(), []delivery.Event{ev("z", "team-1")})
			return errs[0]
		},
		func() error { _, err := e.driver.SendToUser(context.Background(), "u1", "n", "{}"); return err },
		func() error { _, err := e.driver.Channels(context.Background(), ""); return err },
	} {
		if err := call(); !errors.Is(err, delivery.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	}
	if n := len(e.proxy.requests()); n != 3 {
		t.Fatalf("requests while open = %d", n-3)
	}
	if e.driver.Stats().BreakerRejections != 5 {
		t.Fatalf("stats = %+v", e.driver.Stats())
	}

	// After the open timeout one probe goes out; its failure re-opens the breaker.
	waitHalfOpen(t, e.driver)
	if _, err := e.driver.Publish(context.Background(), ev("p1", "team-1")); !errors.Is(err, delivery.ErrUnavailable) {
		t.Fatalf("failed probe err = %v", err)
	}
	if n := len(e.proxy.requests()); n != 4 {
		t.Fatalf("requests = %d, want exactly one probe", n)
	}

	// Upstream recovers; the next probe succeeds and closes the breaker.
	e.proxy.setRule(nil)
	waitHalfOpen(t, e.driver)
	res, err := e.driver.Publish(context.Background(), ev("p2", "team-1"))
	if err != nil || res.DeliveredTo != 3 {
		t.Fatalf("probe = %+v, %v", res, err)
	}
	if h := e.driver.Health(); !h.Healthy || h.Breaker != delivery.BreakerClosed || h.ConsecutiveFailures != 0 {
		t.Fatalf("health = %+v", h)
	}
	want := "[closed->open open->half-open half-open->open open->half-open half-open->closed]"
	if got := fmt.Sprint(e.transitions()); got != want {
		t.Fatalf("transitions = %s, want %s", got, want)
	}
	// Nothing that failed was delivered; the probe was delivered once.
	d := e.backend.deliveries()
	if len(d) != 1 || d[`team-1|{"id":"p2"}`] != 1 {
		t.Fatalf("deliveries = %v", d)
	}
}

func TestBreakerIgnoresClientErrors(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BreakerFailureThreshold = 1 })
	for i := 0; i < 3; i++ {
		e.proxy.setPlan(fail400)
		if _, err := e.driver.Publish(context.Background(), ev("x", "team-1")); !errors.Is(err, delivery.ErrInvalid) {
			t.Fatal(err)
		}
	}
	// Refused by pusher-http-go itself (no master key for an encrypted channel).
	if _, err := e.driver.Publish(context.Background(), ev("x", "private-encrypted-x")); !errors.Is(err, delivery.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	if h := e.driver.Health(); h.Breaker != delivery.BreakerClosed {
		t.Fatalf("health = %+v", h)
	}
}

func TestSendToUser(t *testing.T) {
	e := newEnv(t, nil)
	e.proxy.setPlan(fail500)
	if _, err := e.driver.SendToUser(context.Background(), "u-7", "achievement", `{"badge":"10k"}`); err != nil {
		t.Fatal(err)
	}
	e.backend.mu.Lock()
	defer e.backend.mu.Unlock()
	if fmt.Sprint(e.backend.users) != `[u-7/achievement/{"badge":"10k"}]` {
		t.Fatalf("users = %v", e.backend.users)
	}
}

func TestChannelQueries(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()

	all, err := e.driver.Channels(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(names(all)) != "[presence-team-1 team-1 team-2]" {
		t.Fatalf("channels = %+v", all)
	}
	pres, err := e.driver.Channels(ctx, "presence-")
	if err != nil {
		t.Fatal(err)
	}
	if len(pres) != 1 || pres[0].UserCount != 2 || !pres[0].Occupied {
		t.Fatalf("presence channels = %+v", pres)
	}

	ch, err := e.driver.Channel(ctx, "team-1")
	if err != nil || !ch.Occupied || ch.SubscriptionCount != 3 {
		t.Fatalf("channel = %+v, %v", ch, err)
	}
	ch, err = e.driver.Channel(ctx, "presence-team-1")
	if err != nil || !ch.Occupied || ch.UserCount != 2 {
		t.Fatalf("presence channel = %+v, %v", ch, err)
	}
	ch, err = e.driver.Channel(ctx, "empty")
	if err != nil || ch.Occupied {
		t.Fatalf("empty channel = %+v, %v", ch, err)
	}
	if _, err := e.driver.Channel(ctx, "bad name"); !errors.Is(err, delivery.ErrInvalid) {
		t.Fatalf("bad name err = %v", err)
	}

	members, err := e.driver.PresenceMembers(ctx, "presence-team-1")
	if err != nil || len(members) != 2 || members[0].UserID != "u1" {
		t.Fatalf("members = %+v, %v", members, err)
	}
	if _, err := e.driver.PresenceMembers(ctx, "team-1"); !errors.Is(err, delivery.ErrInvalid) {
		t.Fatalf("non-presence err = %v", err)
	}
}

func names(cs []delivery.ChannelInfo) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestPublisherOverPusherDeliversOnce(t *testing.T) {
	e := newEnv(t, nil)
	store, _ := delivery.NewMemoryStore(delivery.MemoryStoreConfig{})
	p := delivery.NewPublisher(e.driver, delivery.WithIdempotencyStore(store))
	ctx := context.Background()

	// First try fails after retries (all 5xx): nothing delivered, key released.
	e.proxy.setPlan(fail500, fail500, fail500, fail500)
	if _, err := p.Publish(ctx, ev("order-1", "team-1")); !errors.Is(err, delivery.ErrDeliveryFailed) {
		t.Fatalf("err = %v", err)
	}
	// Client retry: transient faults, then delivered.
	e.proxy.setPlan(fail429, fail503)
	out, err := p.Publish(ctx, ev("order-1", "team-1"))
	if err != nil || out.Duplicate || out.DeliveredTo != 3 {
		t.Fatalf("out = %+v, %v", out, err)
	}
	// Repeats (single and batch) are duplicates and never reach Pusher.
	before := len(e.proxy.requests())
	out, err = p.Publish(ctx, ev("order-1", "team-1"))
	if err != nil || !out.Duplicate {
		t.Fatalf("repeat = %+v, %v", out, err)
	}
	br, _ := p.PublishBatch(ctx, []delivery.Event{ev("order-1", "team-1"), ev("order-2", "team-2")})
	if !br[0].Outcome.Duplicate || br[1].Err != nil || br[1].Outcome.DeliveredTo != 1 {
		t.Fatalf("batch = %+v", br)
	}
	if n := len(e.proxy.requests()) - before; n != 1 {
		t.Fatalf("requests for repeats = %d, want 1 (order-2 only)", n)
	}
	for k, n := range e.backend.deliveries() {
		if n != 1 {
			t.Fatalf("%s delivered %d times", k, n)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{AppID: "1", Key: "k", Secret: "s"}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr bool
	}{
		{"minimal", func(*Config) {}, false},
		{"missing app", func(c *Config) { c.AppID = "" }, true},
		{"missing secret", func(c *Config) { c.Secret = "" }, true},
		{"bad scheme", func(c *Config) { c.Scheme = "ftp" }, true},
		{"upper-case scheme", func(c *Config) { c.Scheme = "HTTP" }, false},
		{"host with scheme", func(c *Config) { c.Host = "http://x" }, true},
		{"bad master key", func(c *Config) { c.EncryptionMasterKeyBase64 = "c2hvcnQ=" }, true},
		{"multiplier below 1", func(c *Config) { c.BackoffMultiplier = 0.5 }, true},
		{"max below base", func(c *Config) { c.ReconnectDelay = time.Second; c.MaxReconnectDelay = time.Millisecond }, true},
		{"retries disabled", func(c *Config) { c.ReconnectAttempts = -1 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mutate(&c)
			err := c.Validate()
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, ErrConfig)) {
				t.Fatalf("Validate() = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
	d := Config{}.WithDefaults()
	if d.ReconnectAttempts != 3 || d.ReconnectDelay != 100*time.Millisecond || d.MaxReconnectDelay != 5*time.Second ||
		d.BackoffMultiplier != 2 || d.Scheme != "https" || d.RequestTimeout != 5*time.Second {
		t.Fatalf("defaults = %+v", d)
	}
}

func TestParseStatusError(t *testing.T) {
	tests := []struct {
		in   string
		code int
		ok   bool
	}{
		{"Status Code: 400 - {\"error\":\"x\"}", 400, true},
		{"Status Code: 503 - ", 503, true},
		{"Status Code: abc - x", 0, false},
		{"dial tcp: connection refused", 0, false},
	}
	for _, tc := range tests {
		se, ok := parseStatusError(errors.New(tc.in))
		if ok != tc.ok || (ok && se.StatusCode != tc.code) {
			t.Errorf("%q: got %+v, %v", tc.in, se, ok)
		}
	}
}
