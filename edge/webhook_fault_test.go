package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/milequest/pushercm/edge/webhook"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/protocol"
)

// countingSink counts the events the edge hands to the webhook senders (one
// target each, so that each target's counters can be checked on their own).
type countingSink struct {
	n  atomic.Int64
	ss []*webhook.Sender
}

// Notify counts e once every sender has taken it, so a count seen means the
// senders' stats include it.
func (c *countingSink) Notify(e protocol.WebhookEvent) {
	for _, s := range c.ss {
		s.Notify(e)
	}
	c.n.Add(1)
}

// waitCount waits until the sink has taken n events: the edge hands webhooks on
// after it answered the socket, so a client's frame can come first.
func (c *countingSink) waitCount(t *testing.T, n int64, what string) {
	t.Helper()
	pushertest.Eventually(t, what+" webhook events", func() bool { return c.n.Load() >= n })
	if got := c.n.Load(); got != n {
		t.Fatalf("%d webhook events, want %s", got, what)
	}
}

// faultReceiver is a webhook endpoint that answers with answer after its first
// request has been noted on arrived.
type faultReceiver struct {
	srv      *httptest.Server
	requests atomic.Int64
	arrived  chan struct{}
}

func newFaultReceiver(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *faultReceiver {
	f := &faultReceiver{arrived: make(chan struct{}, 1)}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the body: only then does the server notice the client hanging
		// up and cancel r.Context().
		_, _ = io.Copy(io.Discard, r.Body)
		f.requests.Add(1)
		select {
		case f.arrived <- struct{}{}:
		default:
		}
		answer(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *faultReceiver) waitArrival(t *testing.T) {
	t.Helper()
	select {
	case <-f.arrived:
	case <-time.After(waitFor):
		t.Fatalf("no request reached %s", f.srv.URL)
	}
}

// TestWebhookReceiverFaults: outgoing webhooks to a slow receiver, a failing one
// (500) and one that never answers (each attempt times out). Failed requests are
// retried until RetryFor, the queues stay bounded (the excess is dropped and
// counted), the edge keeps accepting sockets and delivering events meanwhile,
// the counters add up, and neither the edge's shutdown nor the senders' hang on
// a receiver.
func TestWebhookReceiverFaults(t *testing.T) {
	gate := make(chan struct{}) // the slow receiver answers one request per value
	slow := newFaultReceiver(t, func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-gate:
		case <-r.Context().Done():
		}
	})
	failing := newFaultReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	hanging := newFaultReceiver(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })

	const queue = 2
	newSender := func(r *faultReceiver, timeout time.Duration) *webhook.Sender {
		s, err := webhook.New(webhook.Config{
			Key: testKey, Secret: testSecret, Targets: []webhook.Target{{URL: r.srv.URL}},
			QueueSize: queue, Workers: 1, LeaveDelay: -1,
			RetryFor: time.Second, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
			RequestTimeout: timeout,
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	slowS, failS, hangS := newSender(slow, waitFor), newSender(failing, waitFor), newSender(hanging, 100*time.Millisecond)
	senders := []*webhook.Sender{slowS, failS, hangS}
	sink := &countingSink{ss: senders}
	s := startServer(t, testConfig(), WithWebhookSink(sink))
	// Every event offered is sent, failed, dropped (queue full, or abandoned at
	// close) or still waiting.
	balanced := func(st webhook.Stats) bool {
		return int64(st.Sent+st.Failed+st.Dropped)+st.Queued == sink.n.Load()
	}

	// The first channel_occupied takes each target's only worker...
	var cs []*tclient
	c := connect(t, s)
	c.subscribeOK("hook-0", "")
	cs = append(cs, c)
	for _, r := range []*faultReceiver{slow, failing, hanging} {
		r.waitArrival(t)
	}
	// ...so of the next nine, queue fit and the rest are dropped, while the edge
	// goes on accepting sockets and delivering events.
	for i := 1; i < 10; i++ {
		c := connect(t, s)
		c.subscribeOK("hook-"+strconv.Itoa(i), "")
		cs = append(cs, c)
	}
	sink.waitCount(t, 10, "10 channel_occupied")
	for i, ws := range senders {
		if st := ws.Stats(); st.Accepted != 1+queue || st.Dropped != 10-1-queue || st.Queued != 1+queue {
			t.Fatalf("target %d: stats %+v: want %d accepted and waiting, %d dropped", i, st, 1+queue, 10-1-queue)
		}
	}
	for i, c := range cs {
		ch := "hook-" + strconv.Itoa(i)
		if n, err := s.Publish(context.Background(), Message{Channels: []string{ch}, Event: "e", Data: "d"}); err != nil || n != 1 {
			t.Fatalf("publish to %s: delivered %d, %v", ch, n, err)
		}
		c.expect("e", ch)
	}

	// The slow receiver gets there in the end: one request per event, no retry.
	for range 1 + queue {
		gate <- struct{}{}
	}
	st := waitWebhookStats(t, slowS, "the slow target's events sent", func(st webhook.Stats) bool { return st.Sent == 1+queue })
	if st.Requests != 1+queue || st.Retries != 0 || st.Failed != 0 || !balanced(st) {
		t.Fatalf("slow target: stats %+v", st)
	}
	// The failing and hanging ones retry each batch for RetryFor, then give up.
	for i, ws := range []*webhook.Sender{failS, hangS} {
		st := waitWebhookStats(t, ws, "batches given up", func(st webhook.Stats) bool { return st.Failed == 1+queue })
		if st.Sent != 0 || st.Queued != 0 || st.Retries < 1+queue || st.Requests != st.Retries+1+queue || !balanced(st) {
			t.Fatalf("target %d: stats %+v: want every batch retried, then failed", i+1, st)
		}
	}
	if n := failing.requests.Load(); n < 2*(1+queue) {
		t.Fatalf("the failing receiver got %d requests for %d events", n, 1+queue)
	}

	// Shutdown with a request stuck at the slow receiver and the others failing:
	// the edge's channel_vacated webhooks queue or drop without blocking it, and
	// each sender's Close gives up at its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("edge shutdown: %v", err)
	}
	sink.waitCount(t, 20, "10 channel_occupied and 10 channel_vacated")
	for i, ws := range senders {
		cctx, ccancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := ws.Close(cctx)
		ccancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("target %d: Close = %v, want DeadlineExceeded (a request is stuck)", i, err)
		}
		if st := ws.Stats(); st.Queued != 0 || !balanced(st) {
			t.Fatalf("target %d after close: stats %+v, %d events offered", i, st, sink.n.Load())
		}
	}
}

func waitWebhookStats(t *testing.T, s *webhook.Sender, what string, ok func(webhook.Stats) bool) webhook.Stats {
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
