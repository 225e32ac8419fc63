package pusher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	pushersdk "github.com/pusher/pusher-http-go/v5"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/protocol"
)

// Name is the driver's name in health reports and configuration.
const Name = "pusher"

// maxBatchPerRequest is Pusher's limit of events per batch_events request on
// multi-tenant clusters.
const maxBatchPerRequest = 10

// maxChannelsPerRequest is Pusher's limit of channels per trigger.
const maxChannelsPerRequest = 100

// Driver delivers through the Pusher HTTP API with pusher-http-go. It is safe for
// concurrent use. See the package documentation for retries, the breaker and counts.
type Driver struct {
	cfg       Config
	base      pushersdk.Client // template; copied per attempt with its own HTTP client
	pool      *http.Transport
	transport http.RoundTripper // pool wrapped with otelhttp
	breaker   *breaker
	sleep     func(context.Context, time.Duration) error
	backOff   func() backoff.BackOff

	requests, retries, failures, rejected atomic.Uint64
}

// Option configures a Driver.
type Option func(*options)

type options struct {
	tp       trace.TracerProvider
	base     http.RoundTripper
	sleep    func(context.Context, time.Duration) error
	backOff  func() backoff.BackOff
	onChange func(from, to delivery.BreakerState)
}

// WithTracerProvider sets the tracer provider of the HTTP client spans (default global).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tp = tp } }

// withSleep replaces the backoff sleep (tests record the delays instead of waiting).
// It must return ctx.Err() when ctx ends first.
func withSleep(f func(ctx context.Context, d time.Duration) error) Option {
	return func(o *options) { o.sleep = f }
}

// withBackOff replaces the retry delays: f returns a fresh policy for each
// call's retries (tests use one without jitter).
func withBackOff(f func() backoff.BackOff) Option { return func(o *options) { o.backOff = f } }

// withBreakerObserver is called on every breaker state change (for metrics and logs). It
// runs under the breaker's lock: it must be quick and must not call the driver.
func withBreakerObserver(f func(from, to delivery.BreakerState)) Option {
	return func(o *options) { o.onChange = f }
}

// New returns a driver for cfg.
func New(cfg Config, opts ...Option) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	o := options{
		sleep:   sleepCtx,
		backOff: cfg.newBackOff,
	}
	for _, f := range opts {
		f(&o)
	}
	d := &Driver{
		cfg: cfg,
		base: pushersdk.Client{
			AppID:                     cfg.AppID,
			Key:                       cfg.Key,
			Secret:                    cfg.Secret,
			Host:                      cfg.Host,
			Secure:                    cfg.Scheme == "https",
			Cluster:                   cfg.Cluster,
			EncryptionMasterKeyBase64: cfg.EncryptionMasterKeyBase64,
		},
		sleep:   o.sleep,
		backOff: o.backOff,
	}
	if cfg.EncryptionMasterKeyBase64 != "" {
		// pusher-http-go decodes and caches the key on first use, writing to the Client.
		// Warm it here, on the template, so per-attempt copies share the decoded key and
		// never write to shared state.
		_, _ = d.base.AuthorizePrivateChannel([]byte("channel_name=private-encrypted-warmup&socket_id=1.1"))
	}
	base := o.base
	if base == nil {
		d.pool = &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:   true,
			MaxIdleConns:        cfg.MaxIdleConnsPerHost * 2,
			MaxIdleConnsPerHost: cfg.MaxIdleConnsPerHost,
			IdleConnTimeout:     cfg.IdleConnTimeout,
			TLSHandshakeTimeout: 5 * time.Second,
		}
		base = d.pool
	}
	otelOpts := []otelhttp.Option{otelhttp.WithSpanNameFormatter(spanName)}
	if o.tp != nil {
		otelOpts = append(otelOpts, otelhttp.WithTracerProvider(o.tp))
	}
	d.transport = otelhttp.NewTransport(base, otelOpts...)
	threshold := cfg.BreakerFailureThreshold
	d.breaker = newBreaker(threshold, cfg.BreakerOpenTimeout, o.onChange)
	return d, nil
}

// Close releases idle pooled connections.
func (d *Driver) Close() error {
	if d.pool != nil {
		d.pool.CloseIdleConnections()
	}
	return nil
}

// Stats are the driver's counters, for metrics.
type Stats struct {
	Requests          uint64 // HTTP attempts made
	Retries           uint64 // attempts that were retries
	Failures          uint64 // attempts that failed retryably (network, 5xx, 429)
	BreakerRejections uint64 // calls refused while the breaker was open
}

// Stats returns the counters.
func (d *Driver) Stats() Stats {
	return Stats{
		Requests:          d.requests.Load(),
		Retries:           d.retries.Load(),
		Failures:          d.failures.Load(),
		BreakerRejections: d.rejected.Load(),
	}
}

// Health implements delivery.Driver.
func (d *Driver) Health() delivery.Health {
	state, failures, lastErr, since := d.breaker.snapshot()
	return delivery.Health{
		Driver:              Name,
		Healthy:             state != delivery.BreakerOpen,
		Breaker:             state,
		ConsecutiveFailures: failures,
		LastError:           lastErr,
		Since:               since,
	}
}

// Publish implements delivery.Driver. Channels are sent in requests of at most 100
// (Pusher's limit); private-encrypted- channels each go alone because pusher-http-go
// encrypts per channel. An event split over several requests is not atomic: when a later
// request fails, the error is returned and DeliveredTo counts the earlier requests.
// Through delivery.Publisher (at most 100 channels) an event without encrypted channels
// is always one request.
func (d *Driver) Publish(ctx context.Context, e delivery.Event) (delivery.Result, error) {
	if len(e.Channels) == 0 {
		return delivery.Result{}, fmt.Errorf("%w: no channels", delivery.ErrInvalid)
	}
	total := 0
	for _, group := range splitChannels(e.Channels) {
		n, err := d.trigger(ctx, group, e)
		if err != nil {
			return delivery.Result{DeliveredTo: total}, err
		}
		total += n
	}
	return delivery.Result{DeliveredTo: total}, nil
}

func (d *Driver) trigger(ctx context.Context, channels []string, e delivery.Event) (int, error) {
	params := pushersdk.TriggerParams{}
	if e.ExcludeSocketID != "" {
		sid := e.ExcludeSocketID
		params.SocketID = &sid
	}
	if info := d.infoFor(channels...); info != "" {
		params.Info = &info
	}
	var list *pushersdk.TriggerChannelsList
	err := d.do(ctx, "trigger", func(c *pushersdk.Client) error {
		l, err := c.TriggerMultiWithParams(channels, e.Name, e.Data, params)
		if cls, _ := classify(err); cls == classBadBody {
			// Pusher accepted the event (2xx); only the counts are unreadable. Retrying
			// would deliver it twice.
			return nil
		}
		list = l
		return err
	})
	if err != nil {
		return 0, err
	}
	n := 0
	if list != nil {
		for _, item := range list.Channels {
			n += count(item.SubscriptionCount, item.UserCount)
		}
	}
	return n, nil
}

// count prefers subscription_count (connections, like the embedded driver's count) and
// falls back to user_count (distinct users) where only that is reported.
func count(subs, users *int) int {
	switch {
	case subs != nil:
		return *subs
	case users != nil:
		return *users
	}
	return 0
}

// infoFor is the trigger's info attribute list: subscription_count for every channel,
// plus user_count when a presence channel is among them (Pusher reports user_count only
// for presence channels and omits it for the others).
func (d *Driver) infoFor(channels ...string) string {
	if d.cfg.SkipDeliveryCounts {
		return ""
	}
	for _, ch := range channels {
		if kind, _ := protocol.KindOf(ch); kind == protocol.KindPresence {
			return "subscription_count,user_count"
		}
	}
	return "subscription_count"
}

func splitChannels(channels []string) [][]string {
	var groups [][]string
	var plain []string
	for _, ch := range channels {
		if kind, _ := protocol.KindOf(ch); kind == protocol.KindPrivateEncrypted {
			groups = append(groups, []string{ch})
			continue
		}
		plain = append(plain, ch)
	}
	for len(plain) > 0 {
		n := min(len(plain), maxChannelsPerRequest)
		groups = append(groups, plain[:n:n])
		plain = plain[n:]
	}
	return groups
}

// PublishBatch implements delivery.Driver. Single-channel events travel in batch_events
// requests of up to 10; events with several channels are triggered one by one (a Pusher
// batch item has one channel, and splitting an event across items would make its
// delivery partial on failure). Requests run with BatchConcurrency in parallel. A failed
// request fails exactly the events it carried.
func (d *Driver) PublishBatch(ctx context.Context, events []delivery.Event) ([]delivery.Result, []error) {
	results := make([]delivery.Result, len(events))
	errs := make([]error, len(events))
	var jobs []func()
	var singles []int
	for i, e := range events {
		if len(e.Channels) == 1 {
			singles = append(singles, i)
			continue
		}
		jobs = append(jobs, func() { results[i], errs[i] = d.Publish(ctx, events[i]) })
	}
	for len(singles) > 0 {
		n := min(len(singles), maxBatchPerRequest)
		chunk := singles[:n:n]
		singles = singles[n:]
		jobs = append(jobs, func() { d.batchChunk(ctx, events, chunk, results, errs) })
	}
	if len(jobs) == 1 {
		jobs[0]()
		return results, errs
	}
	sem := make(chan struct{}, d.cfg.BatchConcurrency)
	var wg sync.WaitGroup
	for _, job := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			job()
		})
	}
	wg.Wait()
	return results, errs
}

func (d *Driver) batchChunk(ctx context.Context, events []delivery.Event, idx []int, results []delivery.Result, errs []error) {
	batch := make([]pushersdk.Event, len(idx))
	for j, i := range idx {
		e := events[i]
		item := pushersdk.Event{Channel: e.Channels[0], Name: e.Name, Data: e.Data}
		if e.ExcludeSocketID != "" {
			sid := e.ExcludeSocketID
			item.SocketID = &sid
		}
		if info := d.infoFor(e.Channels[0]); info != "" {
			item.Info = &info
		}
		batch[j] = item
	}
	var list *pushersdk.TriggerBatchChannelsList
	err := d.do(ctx, "batch_events", func(c *pushersdk.Client) error {
		l, err := c.TriggerBatch(batch)
		if cls, _ := classify(err); cls == classBadBody {
			return nil // accepted; counts unreadable (see trigger)
		}
		list = l
		return err
	})
	if errors.Is(err, errNotSent) && len(idx) > 1 {
		// pusher-http-go refused the whole batch before sending it (e.g. one event on an
		// encrypted channel without a master key, or over the size limit once
		// encrypted). Nothing went out, so sending the events one by one is safe and
		// confines the failure to the events that cause it.
		for _, i := range idx {
			results[i], errs[i] = d.Publish(ctx, events[i])
		}
		return
	}
	for j, i := range idx {
		if err != nil {
			errs[i] = err
			continue
		}
		if list != nil && j < len(list.Batch) {
			results[i].DeliveredTo = count(list.Batch[j].SubscriptionCount, list.Batch[j].UserCount)
		}
	}
}

// SendToUser implements delivery.Driver with pusher-http-go's SendToUser (a trigger on
// #server-to-user-{id}). The SDK asks no info for it, so DeliveredTo is always 0.
func (d *Driver) SendToUser(ctx context.Context, userID, name, data string) (delivery.Result, error) {
	err := d.do(ctx, "send_to_user", func(c *pushersdk.Client) error {
		err := c.SendToUser(userID, name, data)
		if cls, _ := classify(err); cls == classBadBody {
			return nil
		}
		return err
	})
	return delivery.Result{}, err
}

// Channels implements delivery.Driver (GET /channels). user_count is asked only with a
// presence- prefix, as Pusher requires; other channels report no counts.
func (d *Driver) Channels(ctx context.Context, prefix string) ([]delivery.ChannelInfo, error) {
	params := pushersdk.ChannelsParams{}
	if prefix != "" {
		params.FilterByPrefix = &prefix
	}
	if strings.HasPrefix(prefix, "presence-") {
		info := "user_count"
		params.Info = &info
	}
	var list *pushersdk.ChannelsList
	err := d.do(ctx, "channels", func(c *pushersdk.Client) (err error) {
		list, err = c.Channels(params)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]delivery.ChannelInfo, 0, len(list.Channels))
	for name, item := range list.Channels {
		if delivery.Hidden(name) {
			continue
		}
		out = append(out, delivery.ChannelInfo{Name: name, Occupied: true, UserCount: item.UserCount})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Channel implements delivery.Driver (GET /channels/{name}), asking user_count for
// presence channels and subscription_count for the others (unless SkipDeliveryCounts).
func (d *Driver) Channel(ctx context.Context, name string) (delivery.ChannelInfo, error) {
	ch, err := protocol.ParseChannel(name, 0)
	if err != nil {
		return delivery.ChannelInfo{}, fmt.Errorf("%w: %w", delivery.ErrInvalid, err)
	}
	if delivery.Hidden(name) {
		return delivery.ChannelInfo{Name: name}, nil
	}
	params := pushersdk.ChannelParams{}
	var info string
	switch {
	case ch.IsPresence():
		info = "user_count"
	case !d.cfg.SkipDeliveryCounts:
		info = "subscription_count"
	}
	if info != "" {
		params.Info = &info
	}
	var got *pushersdk.Channel
	err = d.do(ctx, "channel", func(c *pushersdk.Client) (err error) {
		got, err = c.Channel(name, params)
		return err
	})
	if err != nil {
		return delivery.ChannelInfo{}, err
	}
	return delivery.ChannelInfo{
		Name:              name,
		Occupied:          got.Occupied,
		SubscriptionCount: got.SubscriptionCount,
		UserCount:         got.UserCount,
	}, nil
}

// PresenceMembers implements delivery.Driver (GET /channels/{name}/users). Pusher
// returns ids only, so UserInfo is nil.
func (d *Driver) PresenceMembers(ctx context.Context, channel string) ([]delivery.Member, error) {
	ch, err := protocol.ParseChannel(channel, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", delivery.ErrInvalid, err)
	}
	if !ch.IsPresence() {
		return nil, fmt.Errorf("%w: %q is not a presence channel", delivery.ErrInvalid, channel)
	}
	var users *pushersdk.Users
	err = d.do(ctx, "channel_users", func(c *pushersdk.Client) (err error) {
		users, err = c.GetChannelUsers(channel)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]delivery.Member, len(users.List))
	for i, u := range users.List {
		out[i] = delivery.Member{UserID: u.ID}
	}
	return out, nil
}

// do runs one API call with the retry policy and the breaker. Every attempt gets its own
// pusher-http-go client copy whose HTTP client shares the pooled transport and carries
// the attempt's context (the SDK has no context parameter), so the caller's deadline and
// cancellation bound the attempt and otelhttp spans are children of the caller's span.
func (d *Driver) do(ctx context.Context, op string, fn func(*pushersdk.Client) error) error {
	var last error
	lastConnect := false
	retries := max(d.cfg.ReconnectAttempts, 0)
	var delays backoff.BackOff // made at the first retry: most calls never need one
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return giveUp(op, err, last, lastConnect)
		}
		record, ok := d.breaker.allow()
		if !ok {
			d.rejected.Add(1)
			_, _, lastErr, _ := d.breaker.snapshot()
			return fmt.Errorf("%w: %s: circuit breaker open (last upstream error: %s)", delivery.ErrUnavailable, op, lastErr)
		}
		d.requests.Add(1)
		if attempt > 0 {
			d.retries.Add(1)
		}
		actx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
		var info attemptInfo
		err := fn(d.client(actx, op, &info))
		cancel()
		cls, err := classify(err)
		switch cls {
		case classOK:
			record(outcomeSuccess, nil)
			return nil
		case classPermanent:
			record(outcomeSuccess, nil) // the upstream is up; the request was bad
			return mapStatus(op, err)
		case classBadBody:
			record(outcomeSuccess, nil)
			return fmt.Errorf("%w: %s: unexpected response: %w", delivery.ErrUnavailable, op, err)
		case classClientSide:
			record(outcomeIgnore, nil)
			return fmt.Errorf("%w: %s: %w: %w", delivery.ErrInvalid, op, errNotSent, err)
		}
		if ctx.Err() != nil {
			// The caller gave up; that says nothing about the upstream.
			record(outcomeIgnore, nil)
			return giveUp(op, ctx.Err(), err, isConnectError(err))
		}
		d.failures.Add(1)
		record(outcomeFailure, err)
		var se *StatusError
		if info.sent.Load() && !errors.As(err, &se) && changesUpstream(op) {
			// The request may have reached the API, which did not answer (reset,
			// timeout): it may have delivered the event, and with no idempotency key
			// in Pusher's API a retry could deliver it again. (The transport itself
			// resends a request that was provably not written on a reused connection.)
			return fmt.Errorf("%w: %s: %v", delivery.ErrOutcomeUnknown, op, err) //nolint:errorlint // an attempt timeout is not the caller's deadline
		}
		last, lastConnect = err, isConnectError(err)
		if delays == nil {
			delays = d.backOff()
		}
		delay := delays.NextBackOff()
		if attempt >= retries {
			if errors.As(err, &se) && se.StatusCode == http.StatusTooManyRequests {
				return &delivery.UpstreamRateLimit{RetryAfter: max(info.retryAfter, delay), Cause: giveUp(op, nil, last, lastConnect)}
			}
			return giveUp(op, nil, last, lastConnect)
		}
		if info.retryAfter > delay {
			// The server said when to come back (429/503 Retry-After); earlier retries
			// would only be refused again. MaxReconnectDelay still bounds the wait.
			delay = min(info.retryAfter, d.cfg.MaxReconnectDelay)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay {
			return giveUp(op, context.DeadlineExceeded, last, lastConnect)
		}
		if err := d.sleep(ctx, delay); err != nil {
			return giveUp(op, err, last, lastConnect)
		}
	}
}

// changesUpstream reports whether op publishes (and so must not be repeated when
// its outcome is unknown); queries are safe to repeat.
func changesUpstream(op string) bool {
	switch op {
	case "trigger", "batch_events", "send_to_user":
		return true
	}
	return false
}

// newBackOff is the retry delay policy of c: before retry n (from 0),
// ReconnectDelay·BackoffMultiplier^n capped at MaxReconnectDelay, drawn
// uniformly from its upper half [d/2, d]. cenkalti/backoff jitters by
// ±RandomizationFactor around its interval, so the interval is 3/4 of d and
// the factor 1/3.
func (c Config) newBackOff() backoff.BackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval:     c.ReconnectDelay * 3 / 4,
		RandomizationFactor: 1.0 / 3,
		Multiplier:          c.BackoffMultiplier,
		MaxInterval:         c.MaxReconnectDelay * 3 / 4,
	}
}

func giveUp(op string, ctxErr, last error, lastConnect bool) error {
	sentinel := delivery.ErrDeliveryFailed
	if lastConnect {
		sentinel = delivery.ErrUnavailable
	}
	var se *StatusError
	switch {
	case last == nil:
		return fmt.Errorf("%w: %s: %w", sentinel, op, ctxErr)
	case ctxErr != nil:
		// last is text only: wrapping it would let an attempt's own timeout read as
		// the caller's context error.
		return fmt.Errorf("%w: %s: %w (last error: %v)", sentinel, op, ctxErr, last) //nolint:errorlint // deliberate, see above
	case errors.As(last, &se):
		return fmt.Errorf("%w: %s after retries: %w", sentinel, op, se)
	default:
		// %v, not %w: an attempt timeout is not the caller's deadline and must not
		// read as context.DeadlineExceeded.
		return fmt.Errorf("%w: %s after retries: %v", sentinel, op, last) //nolint:errorlint // deliberate, see above
	}
}

func mapStatus(op string, err error) error {
	var se *StatusError
	if !errors.As(err, &se) {
		return fmt.Errorf("%w: %s: %w", delivery.ErrDeliveryFailed, op, err)
	}
	switch se.StatusCode {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return fmt.Errorf("%w: %s: %w", delivery.ErrInvalid, op, se)
	case http.StatusNotFound:
		return fmt.Errorf("%w: %s: %w", delivery.ErrNotFound, op, se)
	default:
		// 401/403 and the rest: a configuration or account problem; not retried.
		return fmt.Errorf("%w: %s: %w", delivery.ErrDeliveryFailed, op, se)
	}
}

type opKey struct{}

// errNotSent marks errors of requests that pusher-http-go refused before sending.
var errNotSent = errors.New("request not sent")

// client returns a per-attempt copy of the template client.
func (d *Driver) client(ctx context.Context, op string, info *attemptInfo) *pushersdk.Client {
	c := d.base
	c.HTTPClient = &http.Client{Transport: ctxTransport{ctx: context.WithValue(ctx, opKey{}, op), rt: d.transport, info: info}}
	return &c
}

// attemptInfo is what the transport saw of one attempt's response that pusher-http-go
// does not pass on (it reports only status and body).
type attemptInfo struct {
	retryAfter time.Duration
	sent       atomic.Bool // a connection was obtained: the request may have reached the API
}

// ctxTransport gives requests built by pusher-http-go (with http.NewRequest, no context)
// the attempt's context, and notes the Retry-After header of 429 and 503 answers.
type ctxTransport struct {
	ctx  context.Context
	rt   http.RoundTripper
	info *attemptInfo
}

func (t ctxTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := t.ctx
	if t.info != nil {
		// Noted when the connection is handed over, before anything is written: the
		// transport reports a write error only after the response may already have
		// failed, so "the request may have gone out" is the only safe reading.
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) {
			t.info.sent.Store(true)
		}})
	}
	resp, err := t.rt.RoundTrip(r.WithContext(ctx))
	if err == nil && t.info != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		t.info.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return resp, err
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or malformed.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// spanName keeps channel names (unbounded) out of span names.
func spanName(_ string, r *http.Request) string {
	if op, ok := r.Context().Value(opKey{}).(string); ok {
		return "pusher." + op
	}
	return "pusher " + r.Method
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
