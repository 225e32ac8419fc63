package pusher

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/edge/httpapi"
	"github.com/milequest/pushercm/internal/pushertest"
)

const (
	testAppID  = "42"
	testKey    = "test-key"
	testSecret = "test-secret"
)

// recordingBackend is the realtime side behind a real edge/httpapi handler: it records
// what was published and answers channel state from a fixed table.
type recordingBackend struct {
	mu        sync.Mutex
	published []httpapi.Message
	users     []string // SendToUser targets
	subs      map[string]int
	members   map[string][]httpapi.Member
}

func newRecordingBackend() *recordingBackend {
	return &recordingBackend{
		subs: map[string]int{"team-1": 3, "presence-team-1": 2, "team-2": 1},
		members: map[string][]httpapi.Member{
			"presence-team-1": {{UserID: "u1", UserInfo: []byte(`{"name":"A"}`)}, {UserID: "u2"}},
		},
	}
}

func (b *recordingBackend) Publish(_ context.Context, m httpapi.Message) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.published = append(b.published, m)
	n := 0
	for _, ch := range m.Channels {
		n += b.subs[ch]
	}
	return n, nil
}

func (b *recordingBackend) SendToUser(_ context.Context, userID, event, data string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.users = append(b.users, userID+"/"+event+"/"+data)
	return 1, nil
}

func (b *recordingBackend) Channels(_ context.Context, prefix string) ([]httpapi.ChannelInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []httpapi.ChannelInfo
	for name, n := range b.subs {
		if strings.HasPrefix(name, prefix) {
			out = append(out, b.infoLocked(name, n))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (b *recordingBackend) infoLocked(name string, n int) httpapi.ChannelInfo {
	return httpapi.ChannelInfo{Name: name, Occupied: n > 0, SubscriptionCount: n, UserCount: len(b.members[name])}
}

func (b *recordingBackend) Channel(_ context.Context, name string) (httpapi.ChannelInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, ok := b.subs[name]
	if !ok {
		return httpapi.ChannelInfo{Name: name}, nil
	}
	return b.infoLocked(name, n), nil
}

func (b *recordingBackend) PresenceMembers(_ context.Context, channel string) ([]httpapi.Member, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.members[channel]
	if !ok {
		return nil, httpapi.ErrNotFound
	}
	return m, nil
}

func (b *recordingBackend) TerminateUser(context.Context, string) (int, error) { return 0, nil }

// deliveries counts how many times each (channel, event data) pair was published,
// and each SendToUser ("user id/event/data").
func (b *recordingBackend) deliveries() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int{}
	for _, m := range b.published {
		for _, ch := range m.Channels {
			out[ch+"|"+m.Data]++
		}
	}
	for _, u := range b.users {
		out["user "+u]++
	}
	return out
}

func (b *recordingBackend) publishCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.published)
}

// fault is what the proxy does with one request.
type fault int

const (
	pass          fault = iota
	fail500             // 500 without forwarding
	fail503             // 503 without forwarding
	fail429             // 429 without forwarding
	fail429After2       // 429 with Retry-After: 2, without forwarding
	fail400             // 400 without forwarding
	fail401             // 401 without forwarding
	reset               // TCP reset after reading the request, without forwarding
	hang                // never answer until the client gives up, without forwarding
	acceptReset         // forward (the API takes the request), then reset instead of answering
	acceptHang          // forward (the API takes the request), then never answer
)

// faultProxy sits between the driver and the API and injects faults. Requests take
// faults from plan in order; when the plan is empty, rule decides (default pass).
type faultProxy struct {
	t      *testing.T
	srv    *httptest.Server
	target *httputil.ReverseProxy

	mu    sync.Mutex
	plan  []fault
	rule  func(r *http.Request, body []byte) fault
	seen  []string      // method + path of every request
	conns atomic.Int64  // TCP connections accepted
	hold  chan struct{} // when set, passing requests wait for it to close
}

func newFaultProxy(t *testing.T, upstream string) *faultProxy {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{t: t, target: httputil.NewSingleHostReverseProxy(u)}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			p.conns.Add(1)
		}
	}
	p.srv.Start()
	t.Cleanup(p.srv.Close)
	return p
}

func (p *faultProxy) host() string { return strings.TrimPrefix(p.srv.URL, "http://") }

func (p *faultProxy) setPlan(f ...fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.plan = append([]fault(nil), f...)
}

func (p *faultProxy) setRule(r func(*http.Request, []byte) fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rule = r
}

func (p *faultProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

func (p *faultProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	p.mu.Lock()
	p.seen = append(p.seen, r.Method+" "+r.URL.Path)
	f := pass
	switch {
	case len(p.plan) > 0:
		f, p.plan = p.plan[0], p.plan[1:]
	case p.rule != nil:
		f = p.rule(r, body)
	}
	p.mu.Unlock()

	p.mu.Lock()
	hold := p.hold
	p.mu.Unlock()
	switch f {
	case pass:
		if hold != nil {
			<-hold
		}
		p.target.ServeHTTP(w, r)
	case fail429After2:
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":"slow down","code":429}`) // the client may already be gone
	case fail500, fail503, fail429, fail400, fail401:
		code := map[fault]int{fail500: 500, fail503: 503, fail429: 429, fail400: 400, fail401: 401}[f]
		w.WriteHeader(code)
		_, _ = io.WriteString(w, `{"error":"injected","code":0}`) // the client may already be gone
	case reset:
		p.reset(w)
	case acceptReset, acceptHang:
		// The API accepts and delivers; its answer is lost on the way back.
		p.target.ServeHTTP(httptest.NewRecorder(), r)
		if f == acceptReset {
			p.reset(w)
			return
		}
		<-r.Context().Done()
	case hang:
		<-r.Context().Done()
	}
}

// reset ends the request's connection with a TCP reset.
func (p *faultProxy) reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		p.t.Errorf("hijack: %v", err)
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		if err := tc.SetLinger(0); err != nil { // RST instead of FIN
			p.t.Errorf("set linger: %v", err)
		}
	}
	_ = conn.Close() // the reset is the point; its outcome does not matter
}

// waitHalfOpen waits until the breaker's open timeout has passed (real time:
// gobreaker reads the clock itself) and it lets a probe through.
func waitHalfOpen(t *testing.T, d *Driver) {
	t.Helper()
	pushertest.Eventually(t, "the breaker to let a probe through", func() error {
		if h := d.Health(); h.Breaker != delivery.BreakerHalfOpen {
			return fmt.Errorf("breaker not half-open: %+v", h)
		}
		return nil
	})
}

// exactBackOff is cfg's retry policy without jitter: every delay is the
// upper bound of the production range.
func exactBackOff(cfg Config) func() backoff.BackOff {
	cfg = cfg.WithDefaults()
	return func() backoff.BackOff {
		return &backoff.ExponentialBackOff{InitialInterval: cfg.ReconnectDelay, Multiplier: cfg.BackoffMultiplier, MaxInterval: cfg.MaxReconnectDelay}
	}
}

// sleepRecorder replaces the backoff sleep: it records the delay and returns at once.
type sleepRecorder struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (s *sleepRecorder) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.delays = append(s.delays, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepRecorder) Delays() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.delays...)
}

type env struct {
	backend *recordingBackend
	api     *httptest.Server
	proxy   *faultProxy
	driver  *Driver
	sleeps  *sleepRecorder
	changes []string
	chMu    sync.Mutex
}

func (e *env) transitions() []string {
	e.chMu.Lock()
	defer e.chMu.Unlock()
	return append([]string(nil), e.changes...)
}

// newEnv starts a real Pusher HTTP API (edge/httpapi, verifying every signature) behind
// a fault proxy, and a driver pointed at the proxy.
func newEnv(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	e := &env{backend: newRecordingBackend(), sleeps: &sleepRecorder{}}
	e.api = httptest.NewServer(httpapi.New(httpapi.Config{AppID: testAppID, Key: testKey, Secret: testSecret}, e.backend))
	t.Cleanup(e.api.Close)
	e.proxy = newFaultProxy(t, e.api.URL)
	cfg := Config{
		AppID: testAppID, Key: testKey, Secret: testSecret,
		Host: e.proxy.host(), Scheme: "http",
		RequestTimeout:          10 * time.Second,
		ReconnectAttempts:       3,
		ReconnectDelay:          100 * time.Millisecond,
		MaxReconnectDelay:       300 * time.Millisecond,
		BackoffMultiplier:       2,
		BreakerFailureThreshold: 100, // tests of the breaker lower it
		BreakerOpenTimeout:      30 * time.Second,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	d, err := New(cfg,
		withSleep(e.sleeps.Sleep),
		withBackOff(exactBackOff(cfg)), // the upper bound of the jitter range: deterministic
		withBreakerObserver(func(from, to delivery.BreakerState) {
			e.chMu.Lock()
			e.changes = append(e.changes, string(from)+"->"+string(to))
			e.chMu.Unlock()
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	e.driver = d
	return e
}

func ev(id string, channels ...string) delivery.Event {
	return delivery.Event{ID: id, Channels: channels, Name: "activity", Data: `{"id":"` + id + `"}`}
}
