package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	pusher "github.com/pusher/pusher-http-go/v5"
	"go.uber.org/goleak"

	"github.com/milequest/pushercm/edge/webhook"
	"github.com/milequest/pushercm/internal/pushertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testKey    = "278d425bdf160c739803"
	testSecret = "7ad3773142a6692b25b8"
	waitFor    = 10 * time.Second // generous: the box is shared
)

// receiver is a webhook endpoint that verifies every request with pusher-http-go.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	client pusher.Client

	mu       sync.Mutex
	hooks    []*pusher.Webhook
	headers  []http.Header
	invalid  int
	status   func(n int) int // status for the n-th request (0-based); nil = 200
	requests int
	arrived  chan struct{} // one value per request, buffered
	block    chan struct{} // when non-nil, handlers wait for it to close
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{t: t, client: pusher.Client{Key: testKey, Secret: testSecret}, arrived: make(chan struct{}, 1000)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	n := r.requests
	r.requests++
	block := r.block
	status := http.StatusOK
	if r.status != nil {
		status = r.status(n)
	}
	hook, err := r.client.Webhook(req.Header, body)
	if err != nil {
		r.invalid++
	} else if status < 300 {
		r.hooks = append(r.hooks, hook)
		r.headers = append(r.headers, req.Header.Clone())
	}
	r.mu.Unlock()
	r.arrived <- struct{}{}
	if block != nil {
		select {
		case <-block:
		case <-req.Context().Done():
		}
	}
	w.WriteHeader(status)
}

func (r *receiver) events() []pusher.WebhookEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []pusher.WebhookEvent
	for _, h := range r.hooks {
		out = append(out, h.Events...)
	}
	return out
}

func (r *receiver) waitArrivals(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(waitFor)
	for i := 0; i < n; i++ {
		select {
		case <-r.arrived:
		case <-deadline:
			t.Fatalf("only %d of %d requests arrived", i, n)
		}
	}
}

func newSender(t *testing.T, cfg webhook.Config) *webhook.Sender {
	t.Helper()
	cfg.Key, cfg.Secret = testKey, testSecret
	s, err := webhook.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

func closeSender(t *testing.T, s *webhook.Sender) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func waitStats(t *testing.T, s *webhook.Sender, what string, ok func(webhook.Stats) bool) webhook.Stats {
	t.Helper()
	var st webhook.Stats
	pushertest.Eventually(t, what, func() error {
		if st = s.Stats(); !ok(st) {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	return st
}

func TestSignatureVector(t *testing.T) {
	// PUSHER-PROTOCOL.md §6: this body and secret give this signature, and GO accepts it.
	body, err := webhook.Encode(time.UnixMilli(1327078148132), []webhook.Event{{Name: webhook.ChannelOccupied, Channel: "test-channel"}})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test-channel"}]}`
	if string(body) != want {
		t.Fatalf("body\n got %s\nwant %s", body, want)
	}
	r := newReceiver(t)
	hdr := http.Header{"X-Pusher-Key": {testKey}, "X-Pusher-Signature": {"5dd6562a9f744b72a688bcdfea41c14c2c56d12c44c99e32c08face4cc1e8aeb"}}
	if _, err := r.client.Webhook(hdr, body); err != nil {
		t.Fatalf("pusher-http-go rejected the vector: %v", err)
	}
}

func TestDeliveredWebhooksVerifyWithPusherHTTPGo(t *testing.T) {
	r := newReceiver(t)
	s := newSender(t, webhook.Config{Targets: []webhook.Target{{URL: r.srv.URL}}, LeaveDelay: -1})
	sent := []webhook.Event{
		{Name: webhook.ChannelOccupied, Channel: "presence-room"},
		{Name: webhook.MemberAdded, Channel: "presence-room", UserID: "42"},
		{Name: webhook.ClientEvent, Channel: "presence-room", Event: "client-hi", Data: `{"a":1}`, SocketID: "123.456", UserID: "42"},
		{Name: webhook.CacheMiss, Channel: "cache-x"},
		{Name: webhook.MemberRemoved, Channel: "presence-room", UserID: "42"},
		{Name: webhook.ChannelVacated, Channel: "presence-room"},
	}
	for _, e := range sent {
		s.Notify(e)
	}
	closeSender(t, s)

	r.mu.Lock()
	invalid, nhooks := r.invalid, len(r.hooks)
	headers := r.headers
	r.mu.Unlock()
	if invalid != 0 {
		t.Fatalf("%d requests failed pusher-http-go Webhook()", invalid)
	}
	if nhooks != len(sent) {
		t.Fatalf("got %d requests, want %d (one event per request by default)", nhooks, len(sent))
	}
	for _, h := range headers {
		if got := h["Content-Type"]; !slices.Equal(got, []string{"application/json"}) {
			t.Fatalf("Content-Type = %q, want exactly application/json", got)
		}
	}
	got := r.events()
	for _, want := range sent {
		found := false
		for _, g := range got {
			if g == (pusher.WebhookEvent{Name: want.Name, Channel: want.Channel, Event: want.Event, Data: want.Data, SocketID: want.SocketID, UserID: want.UserID}) {
				found = true
			}
		}
		if !found {
			t.Errorf("event %+v not received; got %+v", want, got)
		}
	}
	st := s.Stats()
	if st.Sent != uint64(len(sent)) || st.Queued != 0 || st.Failed != 0 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	r.mu.Lock()
	for _, h := range r.hooks {
		if h.TimeMs == 0 {
			t.Errorf("time_ms missing")
		}
	}
	r.mu.Unlock()
}

func TestBatching(t *testing.T) {
	r := newReceiver(t)
	s := newSender(t, webhook.Config{
		Targets:  []webhook.Target{{URL: r.srv.URL}},
		MaxBatch: 5, BatchWindow: time.Minute, // the batch fills long before the window
		Workers: 1, LeaveDelay: -1,
	})
	for i := 0; i < 5; i++ {
		s.Notify(webhook.Event{Name: webhook.CacheMiss, Channel: "cache-" + string(rune('a'+i))})
	}
	r.waitArrivals(t, 1)
	closeSender(t, s)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.hooks) != 1 || len(r.hooks[0].Events) != 5 {
		t.Fatalf("want one request with 5 events, got %d requests", len(r.hooks))
	}
}

func TestBatchWindowAloneTurnsBatchingOn(t *testing.T) {
	r := newReceiver(t)
	s := newSender(t, webhook.Config{
		Targets:     []webhook.Target{{URL: r.srv.URL}},
		BatchWindow: time.Second, // MaxBatch left zero: batching on, up to 100 events
		Workers:     1, LeaveDelay: -1,
	})
	for i := 0; i < 3; i++ {
		s.Notify(webhook.Event{Name: webhook.CacheMiss, Channel: "cache-" + string(rune('a'+i))})
	}
	r.waitArrivals(t, 1)
	closeSender(t, s)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.hooks) != 1 || len(r.hooks[0].Events) != 3 {
		t.Fatalf("want one request with 3 events, got %d requests", len(r.hooks))
	}
}

func TestRetryThenSuccess(t *testing.T) {
	r := newReceiver(t)
	r.status = func(n int) int {
		if n < 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}
	s := newSender(t, webhook.Config{
		Targets:        []webhook.Target{{URL: r.srv.URL}},
		InitialBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		RetryFor: time.Minute, LeaveDelay: -1,
	})
	s.Notify(webhook.Event{Name: webhook.ChannelOccupied, Channel: "c"})
	st := waitStats(t, s, "sent", func(st webhook.Stats) bool { return st.Sent == 1 })
	if st.Requests != 3 || st.Retries != 2 || st.Failed != 0 {
		t.Fatalf("stats %+v: want 3 requests, 2 retries", st)
	}
	if got := r.events(); len(got) != 1 || got[0].Channel != "c" {
		t.Fatalf("events %+v", got)
	}
}

func TestGiveUpAfterRetryBound(t *testing.T) {
	r := newReceiver(t)
	r.status = func(int) int { return http.StatusServiceUnavailable }
	s := newSender(t, webhook.Config{
		Targets:        []webhook.Target{{URL: r.srv.URL}},
		InitialBackoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		RetryFor: 100 * time.Millisecond, LeaveDelay: -1,
	})
	s.Notify(webhook.Event{Name: webhook.ChannelOccupied, Channel: "c"})
	st := waitStats(t, s, "failed", func(st webhook.Stats) bool { return st.Failed == 1 })
	if st.Sent != 0 || st.Requests < 2 || st.Queued != 0 {
		t.Fatalf("stats %+v: want several attempts then one failure", st)
	}
}

func TestSingleAttemptWhenRetryDisabled(t *testing.T) {
	r := newReceiver(t)
	r.status = func(int) int { return http.StatusBadGateway }
	s := newSender(t, webhook.Config{Targets: []webhook.Target{{URL: r.srv.URL}}, RetryFor: -1, LeaveDelay: -1})
	s.Notify(webhook.Event{Name: webhook.ChannelOccupied, Channel: "c"})
	st := waitStats(t, s, "failed", func(st webhook.Stats) bool { return st.Failed == 1 })
	if st.Requests != 1 {
		t.Fatalf("stats %+v: want exactly one attempt", st)
	}
}

func TestDropsCountedWhenQueueFull(t *testing.T) {
	r := newReceiver(t)
	block := make(chan struct{})
	r.block = block
	s := newSender(t, webhook.Config{
		Targets: []webhook.Target{{URL: r.srv.URL}},
		Workers: 1, QueueSize: 2, LeaveDelay: -1,
	})
	s.Notify(webhook.Event{Name: webhook.CacheMiss, Channel: "c0"})
	r.waitArrivals(t, 1) // the only worker is now stuck in the first request
	for i := 1; i <= 5; i++ {
		s.Notify(webhook.Event{Name: webhook.CacheMiss, Channel: "c" + string(rune('0'+i))})
	}
	st := s.Stats()
	if st.Dropped != 3 || st.Accepted != 3 || st.Queued != 3 {
		t.Fatalf("stats %+v: want 3 accepted (1 in flight + 2 queued), 3 dropped", st)
	}
	close(block)
	closeSender(t, s)
	if st := s.Stats(); st.Sent != 3 || st.Queued != 0 {
		t.Fatalf("after close: %+v", st)
	}
}

func TestLeaveDelay(t *testing.T) {
	tests := []struct {
		name          string
		delay         time.Duration
		events        []webhook.Event
		waitDelivered int // requests to wait for before Close (0 = close at once)
		want          []string
		wantCancelled uint64
	}{
		{
			name:  "vacate then re-occupy cancels both",
			delay: time.Minute,
			events: []webhook.Event{
				{Name: webhook.ChannelVacated, Channel: "c"},
				{Name: webhook.ChannelOccupied, Channel: "c"},
			},
			wantCancelled: 1,
		},
		{
			name:  "member leaves and rejoins: nothing sent",
			delay: time.Minute,
			events: []webhook.Event{
				{Name: webhook.MemberRemoved, Channel: "presence-c", UserID: "1"},
				{Name: webhook.MemberAdded, Channel: "presence-c", UserID: "1"},
			},
			wantCancelled: 1,
		},
		{
			name:  "another user joining does not cancel a leave",
			delay: time.Minute,
			events: []webhook.Event{
				{Name: webhook.MemberRemoved, Channel: "presence-c", UserID: "1"},
				{Name: webhook.MemberAdded, Channel: "presence-c", UserID: "2"},
			},
			// member_added goes at once; Close releases the held member_removed.
			want: []string{"member_added:2", "member_removed:1"},
		},
		{
			name:  "another channel occupied does not cancel a vacate",
			delay: time.Minute,
			events: []webhook.Event{
				{Name: webhook.ChannelVacated, Channel: "a"},
				{Name: webhook.ChannelOccupied, Channel: "b"},
			},
			want: []string{"channel_occupied:b", "channel_vacated:a"},
		},
		{
			name:          "vacate is delivered after the delay",
			delay:         20 * time.Millisecond,
			events:        []webhook.Event{{Name: webhook.ChannelVacated, Channel: "c"}},
			waitDelivered: 1,
			want:          []string{"channel_vacated:c"},
		},
		{
			name:  "occupy without a held vacate is sent",
			delay: time.Minute,
			events: []webhook.Event{
				{Name: webhook.ChannelOccupied, Channel: "c"},
			},
			want: []string{"channel_occupied:c"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newReceiver(t)
			s := newSender(t, webhook.Config{Targets: []webhook.Target{{URL: r.srv.URL}}, LeaveDelay: tc.delay})
			for _, e := range tc.events {
				s.Notify(e)
			}
			if tc.waitDelivered > 0 {
				r.waitArrivals(t, tc.waitDelivered)
			}
			closeSender(t, s)
			var got []string
			for _, e := range r.events() {
				k := e.Name + ":" + e.Channel
				if e.UserID != "" {
					k = e.Name + ":" + e.UserID
				}
				got = append(got, k)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("delivered %q, want %q", got, tc.want)
			}
			if st := s.Stats(); st.Cancelled != tc.wantCancelled || st.Held != 0 {
				t.Fatalf("stats %+v, want cancelled %d", st, tc.wantCancelled)
			}
		})
	}
}

// TestLeaveDelayConfirm: a held leave whose delay ends is sent only if
// Confirm says it stands (on a cluster: the channel is still empty, the
// member still gone, after a rejoin on another node).
func TestLeaveDelayConfirm(t *testing.T) {
	r := newReceiver(t)
	var asked []string
	var mu sync.Mutex
	s := newSender(t, webhook.Config{Targets: []webhook.Target{{URL: r.srv.URL}}, LeaveDelay: 20 * time.Millisecond,
		Confirm: func(e webhook.Event) bool {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, e.Name+":"+e.Channel)
			return e.Channel != "back"
		}})
	s.Notify(webhook.Event{Name: webhook.ChannelVacated, Channel: "back"})
	s.Notify(webhook.Event{Name: webhook.ChannelVacated, Channel: "gone"})
	s.Notify(webhook.Event{Name: webhook.MemberRemoved, Channel: "back", UserID: "1"})
	r.waitArrivals(t, 1)
	pushertest.Eventually(t, "the three held leaves asked about", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(asked) != 3 {
			return fmt.Errorf("asked %q", asked)
		}
		return nil
	})
	closeSender(t, s)
	got := r.events()
	if len(got) != 1 || got[0].Name != webhook.ChannelVacated || got[0].Channel != "gone" {
		t.Fatalf("delivered %+v, want only channel_vacated of gone", got)
	}
	if st := s.Stats(); st.Cancelled != 2 || st.Held != 0 {
		t.Fatalf("stats %+v, want 2 cancelled by Confirm", st)
	}
}

func TestTargetsAndFilters(t *testing.T) {
	all, clientOnly := newReceiver(t), newReceiver(t)
	s := newSender(t, webhook.Config{
		Targets: []webhook.Target{
			{URL: all.srv.URL},
			{URL: clientOnly.srv.URL, EventTypes: []string{webhook.ClientEvent}},
		},
		LeaveDelay: -1,
	})
	s.Notify(webhook.Event{Name: webhook.ChannelOccupied, Channel: "private-c"})
	s.Notify(webhook.Event{Name: webhook.ClientEvent, Channel: "private-c", Event: "client-x", Data: "{}", SocketID: "1.2"})
	closeSender(t, s)
	if n := len(all.events()); n != 2 {
		t.Fatalf("unfiltered target got %d events, want 2", n)
	}
	got := clientOnly.events()
	if len(got) != 1 || got[0].Name != webhook.ClientEvent {
		t.Fatalf("filtered target got %+v", got)
	}
	if st := s.Stats(); st.Sent != 3 {
		t.Fatalf("stats %+v, want 3 sent (per target)", st)
	}
}

func TestCloseAbandonsRetriesAtDeadline(t *testing.T) {
	r := newReceiver(t)
	r.status = func(int) int { return http.StatusInternalServerError }
	s := newSender(t, webhook.Config{
		Targets:        []webhook.Target{{URL: r.srv.URL}},
		InitialBackoff: time.Hour, RetryFor: 24 * time.Hour, LeaveDelay: -1,
	})
	s.Notify(webhook.Event{Name: webhook.ChannelOccupied, Channel: "c"})
	r.waitArrivals(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want DeadlineExceeded", err)
	}
	if st := s.Stats(); st.Dropped != 1 || st.Queued != 0 {
		t.Fatalf("stats %+v: the abandoned event counts as dropped", st)
	}
	if err := s.Close(context.Background()); !errors.Is(err, webhook.ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
	s.Notify(webhook.Event{Name: webhook.ChannelOccupied, Channel: "late"})
	if st := s.Stats(); st.Dropped != 2 {
		t.Fatalf("Notify after Close must count a drop: %+v", st)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  webhook.Config
	}{
		{"no key", webhook.Config{Secret: "s", Targets: []webhook.Target{{URL: "http://127.0.0.1/"}}}},
		{"no secret", webhook.Config{Key: "k", Targets: []webhook.Target{{URL: "http://127.0.0.1/"}}}},
		{"no targets", webhook.Config{Key: "k", Secret: "s"}},
		{"relative url", webhook.Config{Key: "k", Secret: "s", Targets: []webhook.Target{{URL: "/hook"}}}},
		{"ftp url", webhook.Config{Key: "k", Secret: "s", Targets: []webhook.Target{{URL: "ftp://h/x"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := webhook.New(tc.cfg); !errors.Is(err, webhook.ErrInvalidConfig) {
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}
