package edge

import (
	"sync"
	"time"

	"github.com/milequest/pushercm/edge/httpapi"
	"github.com/milequest/pushercm/protocol"
	"github.com/milequest/pushercm/ratelimit"
)

// clientEventLimiter decides whether a connection may send one more client event.
// Rejected events get pusher:error 4301 and the socket stays open. Implementations must
// be safe for concurrent use and must not block.
type clientEventLimiter interface {
	AllowClientEvent(socketID, userID string) bool
}

// connectionLimiter decides whether a new WebSocket from remoteIP is accepted (e.g. new
// connections per IP per second). remoteIP is the client's address key
// (clientip.Client.Key: behind trusted proxies the forwarded address, IPv6 by its
// /64). Refused sockets get 4100 (retry after back-off) and are counted as
// RATE_LIMITED.
type connectionLimiter interface {
	AllowConnection(remoteIP string) bool
}

// ConnectionPool is a connection cap shared beyond this server: the cluster's
// cluster.maxConnections. AcquireConnection is asked once per socket that
// passed the server's own caps (Limits.MaxConnections, MaxConnectionsPerIP),
// on the upgrade's goroutine, so it may take one network round trip; false
// refuses the socket with 4004 and counts it as CONNECTION_POOL_EXHAUSTED,
// like the server's own cap. ReleaseConnection is called once for every
// acquired socket when it is removed, possibly on the event loop: it must not
// block.
type ConnectionPool interface {
	AcquireConnection() bool
	ReleaseConnection()
}

// WebhookSink receives webhook events (channel_occupied/vacated, member_added/removed,
// client_event, cache_miss) as they happen. *webhook.Sender satisfies it. Notify must
// not block: it is called on the connection's event-loop goroutine.
type WebhookSink interface {
	Notify(protocol.WebhookEvent)
}

// Metrics observes the hot path for telemetry. Methods must be cheap and non-blocking.
type Metrics interface {
	// Published is called once per Publish/SendToUser with the connections the event
	// is queued for and the time the call took: validation, encoding the frame once and
	// posting it to the outbox (the fan-out to the sockets and their writes follow
	// asynchronously; see WriteObserver).
	Published(delivered int, elapsed time.Duration)
}

// DeliveryObserver is optional: in a cluster, when the Metrics value also
// implements it, Publish reports Published(0, elapsed) on the publishing node
// and every node reports Delivered with the sockets it queued a received
// event for, so that each node counts its own deliveries.
type DeliveryObserver interface {
	Delivered(n int)
}

// WriteObserver is optional: when the Metrics value also implements it, every socket
// write reports how long its oldest frame waited since it was queued (the publish to
// socket-write latency) and how many frames the write carried (coalescing).
type WriteObserver interface {
	Written(wait time.Duration, frames int)
}

// Option customises a Server beyond Config.
type Option func(*options)

type options struct {
	clientEvents clientEventLimiter
	connections  connectionLimiter
	webhooks     WebhookSink
	httpLimiter  httpapi.Limiter
	metrics      Metrics
	cluster      Cluster
	pool         ConnectionPool
	now          func() time.Time
}

// withClientEventLimiter replaces the built-in per-connection token bucket
// (Limits.ClientEventsPerSecond) with l.
func withClientEventLimiter(l clientEventLimiter) Option {
	return func(o *options) { o.clientEvents = l }
}

// withConnectionLimiter refuses new connections l does not allow. Default: none.
func withConnectionLimiter(l connectionLimiter) Option {
	return func(o *options) { o.connections = l }
}

// WithConnectionPool caps connections with p as well as with the server's own
// limits (see ConnectionPool). Default: none.
func WithConnectionPool(p ConnectionPool) Option {
	return func(o *options) { o.pool = p }
}

// WithHTTPLimiter limits the Pusher HTTP API: refused requests are answered 429 with
// Retry-After (see httpapi.Limiter).
func WithHTTPLimiter(l httpapi.Limiter) Option {
	return func(o *options) { o.httpLimiter = l }
}

// WithWebhookSink sends webhook events to w. Default: none.
func WithWebhookSink(w WebhookSink) Option {
	return func(o *options) { o.webhooks = w }
}

// WithMetrics reports hot-path observations to m.
func WithMetrics(m Metrics) Option {
	return func(o *options) { o.metrics = m }
}

// ipLimiter is the built-in connectionLimiter: a ratelimit.Bucket per remote
// IP with one second of burst, dropped by the sweeper once full again, so
// memory follows the active addresses only.
type ipLimiter struct {
	perSecond int
	now       func() time.Time
	mu        sync.Mutex
	buckets   map[string]*ratelimit.Bucket
}

func newIPLimiter(perSecond int, now func() time.Time) *ipLimiter {
	// Above one per nanosecond nothing is limited anyway, and a Bucket set
	// past that admits everything and never reads as full, so never expires.
	perSecond = min(perSecond, 1_000_000_000)
	return &ipLimiter{perSecond: perSecond, now: now, buckets: make(map[string]*ratelimit.Bucket)}
}

func (l *ipLimiter) AllowConnection(ip string) bool {
	l.mu.Lock()
	b := l.buckets[ip]
	if b == nil {
		b = new(ratelimit.Bucket)
		b.Init(float64(l.perSecond), l.perSecond)
		l.buckets[ip] = b
	}
	l.mu.Unlock()
	return b.Allow(l.now())
}

// expire forgets the addresses whose buckets are full again at now: a new
// bucket would be the same.
func (l *ipLimiter) expire(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ip, b := range l.buckets {
		if b.Tokens(now) >= l.perSecond {
			delete(l.buckets, ip)
		}
	}
}
