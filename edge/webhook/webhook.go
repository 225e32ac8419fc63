package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/milequest/pushercm/protocol"
)

// Event names, re-exported from protocol for callers that only import webhook. Notify
// accepts any name; these are the ones the edge emits.
const (
	ChannelOccupied   = protocol.WebhookChannelOccupied
	ChannelVacated    = protocol.WebhookChannelVacated
	MemberAdded       = protocol.WebhookMemberAdded
	MemberRemoved     = protocol.WebhookMemberRemoved
	ClientEvent       = protocol.WebhookClientEvent
	CacheMiss         = protocol.WebhookCacheMiss
	SubscriptionCount = protocol.WebhookSubscriptionCount
)

// Event is one entry of a webhook's "events" array. All fields are strings on the wire
// because pusher-http-go decodes them into strings; Data is passed through untouched
// (encrypted channel payloads stay encrypted).
type Event = protocol.WebhookEvent

// Target is one receiver of webhooks.
type Target struct {
	// URL is the absolute http(s) URL the events are POSTed to.
	URL string
	// EventTypes limits the events sent to this target by Event.Name. Empty means all.
	EventTypes []string
}

// Config configures a Sender. Zero values take the documented defaults.
type Config struct {
	// Key is the app key sent in X-Pusher-Key. Required.
	Key string
	// Secret is the app secret that signs bodies (X-Pusher-Signature). Required.
	Secret string
	// Targets are the receivers; each gets every event its filter accepts. At least one.
	Targets []Target

	// MaxBatch is the most events per request. Default 1 (one event per request, the
	// shape Pusher uses when batching is off) unless BatchWindow is set, then 100.
	MaxBatch int
	// BatchWindow is how long a worker holding the first event of a batch waits for more
	// before sending. Zero means no batching unless MaxBatch > 1, in which case it
	// defaults to 50 ms (soketi's batching window); negative means "send what is already
	// queued, never wait".
	BatchWindow time.Duration
	// QueueSize bounds the events waiting per target. Default 10000. Events that do not
	// fit are dropped and counted: a slow receiver must never stall the edge.
	QueueSize int
	// Workers is the number of concurrent requests per target. Default 4. A failing
	// request retries on its worker, so this is also how many retrying batches a target
	// can hold before its queue starts to fill.
	Workers int

	// RetryFor bounds how long a batch is retried after its first attempt. Default 5
	// minutes (Pusher's documented retry period). Negative means a single attempt.
	RetryFor time.Duration
	// InitialBackoff is the wait before the first retry; it doubles each time. Default 1 s.
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between retries. Default 60 s.
	MaxBackoff time.Duration
	// RequestTimeout bounds one HTTP attempt. Default 10 s.
	RequestTimeout time.Duration

	// LeaveDelay holds channel_vacated and member_removed so that a quick re-occupy or
	// re-join cancels both events. Default 3 s (Pusher's delay); negative disables it.
	LeaveDelay time.Duration
	// Confirm, when set, is asked when a held leave's delay ends: false drops
	// it (counted as Cancelled). A node of a cluster sets it to ask the
	// cluster whether the channel is empty, or the member gone, still: a
	// quick rejoin on another node sends its channel_occupied or member_added
	// from there, and this node's held leave must then not follow it. Nil
	// sends every held leave that no join on this Sender cancelled.
	Confirm func(Event) bool

	// HTTPClient sends the requests. Default: a client with its own transport, closed by
	// Close so that no keep-alive goroutines outlive the Sender.
	HTTPClient *http.Client
	// UserAgent is sent with every request. Default "pushercm-webhooks/1".
	UserAgent string
	// Now is the clock for time_ms. Default time.Now.
	Now func() time.Time
	// Logger receives give-ups and drops at Warn level. Default: discard.
	Logger *slog.Logger
}

// Errors returned by New and Close.
var (
	ErrInvalidConfig = errors.New("webhook: invalid config")
	ErrClosed        = errors.New("webhook: sender closed")
)

const (
	defaultBatchMax       = 100
	defaultBatchWindow    = 50 * time.Millisecond
	defaultQueueSize      = 10000
	defaultWorkers        = 4
	defaultRetryFor       = 5 * time.Minute
	defaultInitialBackoff = time.Second
	defaultMaxBackoff     = 60 * time.Second
	defaultRequestTimeout = 10 * time.Second
	defaultLeaveDelay     = 3 * time.Second
	defaultUserAgent      = "pushercm-webhooks/1"
	maxResponseDrain      = 64 << 10
)

func (c Config) withDefaults() Config {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 1
		if c.BatchWindow != 0 {
			c.MaxBatch = defaultBatchMax
		}
	}
	if c.BatchWindow == 0 && c.MaxBatch > 1 {
		c.BatchWindow = defaultBatchWindow
	}
	if c.QueueSize <= 0 {
		c.QueueSize = defaultQueueSize
	}
	if c.Workers <= 0 {
		c.Workers = defaultWorkers
	}
	if c.RetryFor == 0 {
		c.RetryFor = defaultRetryFor
	}
	if c.InitialBackoff <= 0 {
		c.InitialBackoff = defaultInitialBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = defaultMaxBackoff
	}
	if c.MaxBackoff < c.InitialBackoff {
		c.MaxBackoff = c.InitialBackoff
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = defaultRequestTimeout
	}
	if c.LeaveDelay == 0 {
		c.LeaveDelay = defaultLeaveDelay
	}
	if c.UserAgent == "" {
		c.UserAgent = defaultUserAgent
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports configuration errors, wrapped around ErrInvalidConfig.
func (c Config) Validate() error {
	if c.Key == "" || c.Secret == "" {
		return fmt.Errorf("%w: key and secret are required", ErrInvalidConfig)
	}
	if len(c.Targets) == 0 {
		return fmt.Errorf("%w: at least one target URL is required", ErrInvalidConfig)
	}
	for i, t := range c.Targets {
		u, err := url.Parse(t.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: target %d: %q is not an absolute http(s) URL", ErrInvalidConfig, i, t.URL)
		}
	}
	return nil
}

// Stats are cumulative counters plus the current backlog. Event counts are per target:
// one event sent to two targets counts twice.
type Stats struct {
	Accepted  uint64 // events queued for a target
	Sent      uint64 // events acknowledged with a 2xx
	Failed    uint64 // events given up after the retry bound
	Dropped   uint64 // events not queued (queue full, sender closed) or abandoned by Close
	Filtered  uint64 // events no target wanted
	Cancelled uint64 // leave/join pairs cancelled by the leave delay (one per pair), and held leaves Confirm dropped
	Requests  uint64 // HTTP attempts, retries included
	Retries   uint64 // attempts after the first for a batch
	Queued    int64  // events waiting or in flight now
	Held      int    // leave events currently held by the leave delay
}

// Sender delivers webhooks. It is safe for concurrent use.
type Sender struct {
	cfg     Config
	client  *http.Client
	ownHTTP bool
	targets []*target

	mu     sync.RWMutex // guards closed and the target queues against close
	closed bool

	heldMu sync.Mutex
	held   map[string]*heldEvent

	ctx    context.Context // cancelled when Close gives up waiting
	cancel context.CancelFunc
	wg     sync.WaitGroup

	accepted, sent, failed, dropped, filtered, cancelled, requests, retries atomic.Uint64
	queued                                                                  atomic.Int64
}

type target struct {
	url   string
	types map[string]bool // nil = all
	q     chan Event
}

type heldEvent struct {
	ev    Event
	timer *time.Timer
}

// New validates cfg and starts the delivery workers.
func New(cfg Config) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Sender{cfg: cfg, client: cfg.HTTPClient, held: make(map[string]*heldEvent)}
	if s.client == nil {
		// Own transport so Close can drop its idle connections (and their goroutines).
		s.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		s.ownHTTP = true
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, tc := range cfg.Targets {
		t := &target{url: tc.URL, q: make(chan Event, cfg.QueueSize)}
		if len(tc.EventTypes) > 0 {
			t.types = make(map[string]bool, len(tc.EventTypes))
			for _, n := range tc.EventTypes {
				t.types[n] = true
			}
		}
		s.targets = append(s.targets, t)
		for range cfg.Workers {
			s.wg.Add(1)
			go s.worker(t)
		}
	}
	return s, nil
}

// Notify queues e for delivery without blocking. Leave events are held for
// Config.LeaveDelay; a join matching a held leave cancels both.
func (s *Sender) Notify(e Event) {
	if s.cfg.LeaveDelay > 0 {
		switch e.Name {
		case ChannelVacated, MemberRemoved:
			if s.hold(e) {
				return
			}
		case ChannelOccupied, MemberAdded:
			if s.cancelHeld(e) {
				return
			}
		}
	}
	s.enqueue(e)
}

// heldKey pairs a leave with the join that cancels it.
func heldKey(e Event) string {
	kind := "c"
	if e.Name == MemberAdded || e.Name == MemberRemoved {
		kind = "m"
	}
	return kind + "\x00" + e.Channel + "\x00" + e.UserID
}

// hold keeps a leave event back for the leave delay. It reports false when the sender is
// closed (the caller then enqueues, which counts the drop).
func (s *Sender) hold(e Event) bool {
	key := heldKey(e)
	h := &heldEvent{ev: e}
	s.heldMu.Lock()
	if s.held == nil { // closed
		s.heldMu.Unlock()
		return false
	}
	prev := s.held[key]
	s.held[key] = h
	h.timer = time.AfterFunc(s.cfg.LeaveDelay, func() { s.release(key, h) })
	s.heldMu.Unlock()
	if prev != nil && prev.timer.Stop() {
		// Two leaves without a join in between: the first one is real.
		s.enqueue(prev.ev)
	}
	return true
}

func (s *Sender) release(key string, h *heldEvent) {
	s.heldMu.Lock()
	if s.held == nil || s.held[key] != h {
		s.heldMu.Unlock()
		return // cancelled, replaced, or flushed by Close
	}
	delete(s.held, key)
	s.heldMu.Unlock()
	if s.cfg.Confirm != nil && !s.cfg.Confirm(h.ev) {
		s.cancelled.Add(1)
		return
	}
	s.enqueue(h.ev)
}

func (s *Sender) cancelHeld(e Event) bool {
	key := heldKey(e)
	s.heldMu.Lock()
	h := s.held[key]
	if h != nil {
		delete(s.held, key)
	}
	s.heldMu.Unlock()
	if h == nil {
		return false
	}
	h.timer.Stop() // if it already fired, release sees the entry gone and does nothing
	s.cancelled.Add(1)
	return true
}

func (s *Sender) enqueue(e Event) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	wanted := false
	for _, t := range s.targets {
		if t.types != nil && !t.types[e.Name] {
			continue
		}
		wanted = true
		if s.closed {
			s.dropped.Add(1)
			continue
		}
		select {
		case t.q <- e:
			s.accepted.Add(1)
			s.queued.Add(1)
		default:
			if d := s.dropped.Add(1); d&(d-1) == 0 {
				// Log on powers of two so a flood of drops does not flood the log.
				s.cfg.Logger.Warn("webhook queue full, dropping events", "url", t.url, "dropped_total", d)
			}
		}
	}
	if !wanted {
		s.filtered.Add(1)
	}
}

// Stats returns the counters.
func (s *Sender) Stats() Stats {
	s.heldMu.Lock()
	held := len(s.held)
	s.heldMu.Unlock()
	return Stats{
		Accepted:  s.accepted.Load(),
		Sent:      s.sent.Load(),
		Failed:    s.failed.Load(),
		Dropped:   s.dropped.Load(),
		Filtered:  s.filtered.Load(),
		Cancelled: s.cancelled.Load(),
		Requests:  s.requests.Load(),
		Retries:   s.retries.Load(),
		Queued:    s.queued.Load(),
		Held:      held,
	}
}

// Close stops intake, releases held leave events, and waits for the queues to drain.
// When ctx ends first, retries are abandoned, what is left is counted as dropped, and
// ctx's error is returned after the workers have exited. Close is idempotent; later
// calls return ErrClosed.
func (s *Sender) Close(ctx context.Context) error {
	s.heldMu.Lock()
	if s.held == nil {
		s.heldMu.Unlock()
		return ErrClosed
	}
	held := s.held
	s.held = nil
	s.heldMu.Unlock()
	for _, h := range held {
		h.timer.Stop()
		s.enqueue(h.ev) // the process is going away: these leaves are real
	}

	s.mu.Lock()
	s.closed = true
	for _, t := range s.targets {
		close(t.q)
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.cancel()
		<-done
	}
	s.cancel()
	if s.ownHTTP {
		s.client.CloseIdleConnections()
	}
	return err
}

func (s *Sender) worker(t *target) {
	defer s.wg.Done()
	batch := make([]Event, 0, s.cfg.MaxBatch)
	for {
		e, ok := <-t.q
		if !ok {
			return
		}
		batch = append(batch[:0], e)
		open := s.fill(t, &batch)
		s.deliver(t, batch)
		if !open {
			return
		}
	}
}

// fill adds queued events to batch up to MaxBatch, waiting at most BatchWindow. It
// reports false once the queue is closed and drained.
func (s *Sender) fill(t *target, batch *[]Event) bool {
	if s.cfg.MaxBatch <= 1 {
		return true
	}
	var timeout <-chan time.Time
	if s.cfg.BatchWindow > 0 {
		timer := time.NewTimer(s.cfg.BatchWindow)
		defer timer.Stop()
		timeout = timer.C
	}
	for len(*batch) < s.cfg.MaxBatch {
		if timeout == nil {
			select {
			case e, ok := <-t.q:
				if !ok {
					return false
				}
				*batch = append(*batch, e)
			default:
				return true
			}
			continue
		}
		select {
		case e, ok := <-t.q:
			if !ok {
				return false
			}
			*batch = append(*batch, e)
		case <-timeout:
			return true
		case <-s.ctx.Done():
			return true
		}
	}
	return true
}

// Encode builds the request body for events created at t.
func Encode(t time.Time, events []Event) ([]byte, error) {
	return json.Marshal(protocol.WebhookBody{TimeMs: t.UnixMilli(), Events: events})
}

func (s *Sender) deliver(t *target, batch []Event) {
	n := uint64(len(batch))
	defer s.queued.Add(-int64(n))
	if s.ctx.Err() != nil {
		s.dropped.Add(n)
		return
	}
	start := s.cfg.Now()
	body, err := Encode(start, batch)
	if err != nil { // cannot happen for string fields; count it rather than panic
		s.failed.Add(n)
		s.cfg.Logger.Warn("webhook encode failed", "err", err)
		return
	}
	sig := protocol.WebhookSignature(s.cfg.Secret, body)
	deadline := time.Now().Add(s.cfg.RetryFor)
	backoff := s.cfg.InitialBackoff
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			s.retries.Add(1)
		}
		status, err := s.post(t.url, body, sig)
		if err == nil && status >= 200 && status < 300 {
			s.sent.Add(n)
			return
		}
		if s.ctx.Err() != nil {
			s.dropped.Add(n)
			return
		}
		// Equal jitter: half the backoff fixed, half random, so retries from many
		// workers do not land on the receiver in lockstep.
		wait := backoff/2 + rand.N(backoff/2+1)
		if s.cfg.RetryFor < 0 || time.Now().Add(wait).After(deadline) {
			s.failed.Add(n)
			s.cfg.Logger.Warn("webhook delivery failed, giving up",
				"url", t.url, "events", n, "attempts", attempt+1, "status", status, "err", err)
			return
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-s.ctx.Done():
			timer.Stop()
			s.dropped.Add(n)
			return
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
	}
}

func (s *Sender) post(u string, body []byte, sig string) (int, error) {
	s.requests.Add(1)
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	// Assigned directly: the Node SDK compares Content-Type byte for byte.
	req.Header["Content-Type"] = []string{protocol.WebhookContentType}
	req.Header.Set(protocol.WebhookHeaderKey, s.cfg.Key)
	req.Header.Set(protocol.WebhookHeaderSignature, sig)
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseDrain))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
