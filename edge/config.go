package edge

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/lesismal/llib/std/crypto/tls"

	"github.com/milequest/pushercm/edge/clientip"
	"github.com/milequest/pushercm/edge/httpapi"
	"github.com/milequest/pushercm/protocol"
)

// Config configures a Server for one Pusher app. Zero values take the documented
// defaults; Validate reports what cannot be defaulted.
type Config struct {
	// AppID, Key and Secret identify the app. Required. Clients connect to /app/{Key};
	// the HTTP API answers at /apps/{AppID}.
	AppID, Key, Secret string

	// Limits are Pusher's limits; zero fields take Pusher's defaults (see
	// protocol.Limits). Limits.MaxConnections (default 5000, negative = unlimited) refuses
	// further sockets with 4004 and counts them as CONNECTION_POOL_EXHAUSTED.
	Limits protocol.Limits

	// ActivityTimeout is sent to clients as activity_timeout (whole seconds, at least 1)
	// and is how long the server lets a client stay silent before pinging it.
	// Default 120 s, as Pusher.
	ActivityTimeout time.Duration
	// PongTimeout is how long a pinged client has to answer before it is closed with
	// 4201. Default 30 s.
	PongTimeout time.Duration

	// AllowedOrigins, when not empty, is the list of accepted Origin headers: exact
	// values ("https://app.example.com"), "*" for any, or "*.example.com" style
	// suffixes (protocol.OriginAllowed). Requests without an Origin header
	// (non-browser clients) are accepted.
	// Refused sockets get 4009. Empty = any origin.
	AllowedOrigins []string

	// ClientEventsEnabled accepts client-* events on private and presence channels.
	// Default false, as on Pusher.
	ClientEventsEnabled bool
	// UserAuthEnabled accepts pusher:signin. Default false: signin is answered with
	// pusher:error 4009 (the socket stays open).
	UserAuthEnabled bool
	// UserAuthTimeout, when > 0, closes with 4009 connections that neither sign in nor
	// join a private/presence channel within it (Pusher's "authorized connections").
	// Default 0 = off.
	UserAuthTimeout time.Duration

	// CacheTTL is how long a cache channel keeps its last event. Default 30 min (Pusher).
	CacheTTL time.Duration
	// MaxCacheChannels bounds the cache channels holding an event. When full, a
	// publish to another cache channel evicts the entry nearest to expiry (the
	// one written longest ago), counted in Stats.CacheEvicted; its channel then
	// answers cache_miss. An entry holds at most an event name and
	// Limits.MaxPayloadBytes of data. Default 10000.
	MaxCacheChannels int

	// WriteQueueBytes bounds the bytes queued for one client that the kernel has not
	// accepted yet. A client over it is a slow consumer: it is sent close 4100 and
	// dropped after CloseGrace. Default 256 KiB (about 25 full-size events).
	WriteQueueBytes int
	// PublishHoldMax bounds how long a publish to a congested channel waits
	// before it returns (see CongestedPercent): a channel whose subscribers
	// cannot keep up slows its publishers down rather than lose the
	// subscribers. After it the publish returns all the same, and a socket
	// whose queue then overflows is closed as a slow consumer. Default
	// 500 ms; negative: publishes are never held.
	PublishHoldMax time.Duration
	// CongestedPercent is the share of a channel's subscribers on this
	// server whose outbound queue must be past half of WriteQueueBytes for
	// the channel to count as congested (at least 8 sockets whatever the
	// share, so one or two slow clients never hold a channel's publishers:
	// they are closed with 4100). Default 10; 1 to 100.
	CongestedPercent int
	// FlushInterval is the shortest time between two write rounds of a flusher.
	// While publishing is heavy, every frame queued for a socket within it goes
	// out in one write, so sockets are written at most once per interval instead
	// of once per event; that adds at most FlushInterval to delivery, and nothing
	// while rounds are further apart than that. Default 0: every round starts as
	// soon as there is something to write.
	FlushInterval time.Duration
	// NoIOUring writes every socket with write(2). By default, on Linux kernels that
	// allow it, the flushers send a fan-out's writes through io_uring, one syscall
	// per batch of up to 128 sockets instead of one per socket.
	NoIOUring bool
	// MaxFrameBytes bounds an inbound WebSocket message. Larger messages are answered
	// with pusher:error and dropped; messages over 4x this close the socket with 1009.
	// Default 32 KiB (a 10 KB event fully JSON-escaped fits).
	MaxFrameBytes int
	// CloseGrace is how long a socket we closed may take to read our close frame before
	// the TCP connection is cut, counted from when the frame is written (at the latest
	// FlushInterval after the close). Default 2 s.
	CloseGrace time.Duration
	// DrainRate is how many clients per second Shutdown closes with 4200. Default 2000.
	DrainRate int
	// HandshakeTimeout bounds the HTTP upgrade. Default 10 s.
	HandshakeTimeout time.Duration
	// ConnectionsPerIPPerSecond, when > 0, limits new sockets per client address (a
	// token bucket with one second of burst). Refused sockets get 4100. Default 0 = no
	// limit.
	ConnectionsPerIPPerSecond int
	// MaxConnectionsPerIP bounds the open sockets of one client address (an
	// IPv6 client counts with its /64), so that one address cannot take the
	// whole pool. Over it a socket is refused like a full pool (4004) and counted
	// as RefusedIPConnections. Default 0 = unlimited, so embedding programs and
	// load tools are not limited by surprise; pushercm's configuration turns it
	// on (edge.maxConnectionsPerIp, 256).
	MaxConnectionsPerIP int
	// TrustedProxies are the proxies (CIDR prefixes or single addresses) whose
	// X-Forwarded-For or Forwarded headers name the client; see package
	// clientip. The resolved address is the one the per-IP limits count, logs
	// show and ConnectionInfo.RemoteAddr reports. Empty: every peer is the client.
	TrustedProxies []string
	// MaxSubscriptionsPerUser, when > 0, bounds the channels a signed-in user holds
	// across all of the user's sockets (each socket's subscriptions count). Over it the
	// subscription is refused with pusher:subscription_error LimitReached/4100; the
	// socket stays open. Sockets that have not signed in are bounded per connection only.
	// Default 0 = no per-user bound.
	MaxSubscriptionsPerUser int
	// Pollers is the number of event-loop (epoll) goroutines. Default 1: socket writes
	// are done by flusher goroutines (one per CPU), so one poller is enough for reads.
	Pollers int

	// MaxHeaderBytes bounds the head of an HTTP request (request line and
	// header lines) on the listener; a longer head is answered 431 while it is
	// still arriving. Default 32 KiB.
	MaxHeaderBytes int
	// MaxAPIBodyBytes bounds a Pusher HTTP API request body; a longer one is
	// answered 413 before it is read. Default 1 MiB (httpapi.DefaultMaxRequestBytes):
	// a batch of 10 events of 10 KB, fully JSON-escaped, fits.
	MaxAPIBodyBytes int64

	// HTTPAPIDisabled does not mount the Pusher HTTP API at /apps/.
	HTTPAPIDisabled bool
	// TimestampWindow is passed to the HTTP API (0 = 600 s, negative disables).
	TimestampWindow time.Duration

	// Logger receives connection errors (Debug) and server problems (Warn/Error).
	// Default: discard.
	Logger *slog.Logger
	// TLS, when set, serves wss:// and https:// instead of ws:// and http://.
	// It is nbio's fork of crypto/tls (the event loop decrypts in place);
	// set GetCertificate to rotate certificates without a restart. TLS
	// sockets are written through the event loop, never by io_uring, which
	// would bypass the encryption.
	TLS *tls.Config
}

// Defaults.
const (
	DefaultActivityTimeout  = 120 * time.Second
	DefaultPongTimeout      = 30 * time.Second
	DefaultCacheTTL         = 30 * time.Minute
	DefaultWriteQueueBytes  = 256 << 10
	DefaultMaxFrameBytes    = 32 << 10
	DefaultCloseGrace       = 2 * time.Second
	DefaultDrainRate        = 2000
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMaxHeaderBytes   = 32 << 10
	DefaultMaxCacheChannels = 10000
	DefaultPublishHoldMax   = 500 * time.Millisecond
	DefaultCongestedPercent = 10
)

func (c Config) withDefaults() Config {
	c.Limits = c.Limits.WithDefaults()
	if c.ActivityTimeout <= 0 {
		c.ActivityTimeout = DefaultActivityTimeout
	}
	if c.PongTimeout <= 0 {
		c.PongTimeout = DefaultPongTimeout
	}
	if c.CacheTTL <= 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.WriteQueueBytes <= 0 {
		c.WriteQueueBytes = DefaultWriteQueueBytes
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.PublishHoldMax == 0 {
		c.PublishHoldMax = DefaultPublishHoldMax
	}
	if c.CongestedPercent <= 0 {
		c.CongestedPercent = DefaultCongestedPercent
	}
	if c.CloseGrace <= 0 {
		c.CloseGrace = DefaultCloseGrace
	}
	if c.DrainRate <= 0 {
		c.DrainRate = DefaultDrainRate
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.MaxCacheChannels <= 0 {
		c.MaxCacheChannels = DefaultMaxCacheChannels
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxAPIBodyBytes <= 0 {
		c.MaxAPIBodyBytes = httpapi.DefaultMaxRequestBytes
	}
	if c.Pollers <= 0 {
		c.Pollers = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports configuration errors, wrapping ErrConfig.
func (c Config) Validate() error {
	if c.AppID == "" || c.Key == "" || c.Secret == "" {
		return fmt.Errorf("%w: AppID, Key and Secret are required", ErrConfig)
	}
	for _, f := range []struct {
		name string
		v    string
	}{{"AppID", c.AppID}, {"Key", c.Key}} {
		for i := 0; i < len(f.v); i++ {
			if !protocol.ValidChannelChar(f.v[i]) {
				return fmt.Errorf("%w: %s %q has characters outside [A-Za-z0-9_\\-=@,.;]", ErrConfig, f.name, f.v)
			}
		}
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("%w: %s", ErrConfig, err.Error())
	}
	if c.WriteQueueBytes < 0 || c.MaxFrameBytes < 0 || c.DrainRate < 0 || c.Pollers < 0 || c.MaxConnectionsPerIP < 0 || c.MaxHeaderBytes < 0 || c.MaxAPIBodyBytes < 0 || c.ConnectionsPerIPPerSecond < 0 || c.MaxSubscriptionsPerUser < 0 {
		return fmt.Errorf("%w: sizes and rates must not be negative", ErrConfig)
	}
	if _, err := clientip.New(c.TrustedProxies); err != nil {
		return fmt.Errorf("%w: TrustedProxies: %s", ErrConfig, err.Error())
	}
	if c.CongestedPercent < 0 || c.CongestedPercent > 100 {
		return fmt.Errorf("%w: CongestedPercent must be 1 to 100", ErrConfig)
	}
	if c.UserAuthTimeout < 0 {
		return fmt.Errorf("%w: UserAuthTimeout must not be negative", ErrConfig)
	}
	return nil
}
