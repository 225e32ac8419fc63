package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/cluster"
	"github.com/milequest/pushercm/delivery"
	pusherdriver "github.com/milequest/pushercm/delivery/pusher"
	"github.com/milequest/pushercm/edge/clientip"
	"github.com/milequest/pushercm/health"
	"github.com/milequest/pushercm/ratelimit"
)

// Drivers.
const (
	DriverEmbedded = "embedded"
	DriverPusher   = "pusher"
)

// Dev-mode credentials, used by `--dev` for every secret that is not set.
const (
	DevAppID     = "app-id"
	DevAppKey    = "app-key"
	DevAppSecret = "app-secret"
	DevJWTSecret = "dev-jwt-secret-change-me-0123456789"
	// DevEncryptionMasterKeyBase64 is the well-known 32-byte master key for
	// private-encrypted- channels in dev mode (base64).
	DevEncryptionMasterKeyBase64 = "ZGV2LWVuY3J5cHRpb24ta2V5LWNoYW5nZS1tZS0wMTI="
	// DevServiceSecret signs dev service tokens (jwt.service.secret): a key
	// of their own, so a dev user token never passes as a service token.
	DevServiceSecret = "dev-service-secret-change-me-0123456789"
)

// ErrDevSecret is wrapped by Validate's error when a published development
// secret is configured without --dev: anyone can read those values (they are
// in the source and the README), so a production process must not trust them.
var ErrDevSecret = errors.New("a published development secret is only allowed with --dev")

// Config is every setting of a pushercm process. The YAML keys are the
// camelCase field tags; environment variables and flags override a subset
// (see Env). The zero value is not usable: start from Default.
type Config struct {
	// Driver chooses delivery: "embedded" (default; the built-in Pusher
	// protocol server) or "pusher" (Pusher Channels via its HTTP API).
	// PUSHERCM_DRIVER.
	Driver string `yaml:"driver"`
	// Dev fills unset secrets with well-known development values, enables
	// client events and user sign-in, and logs loudly that it did. Never in
	// production. PUSHERCM_DEV, --dev.
	Dev bool `yaml:"dev"`

	GRPC GRPC `yaml:"grpc"`
	// HTTP is the realtime listener: WebSocket, Pusher HTTP API, auth
	// endpoints, webhook ingest.
	HTTP HTTP `yaml:"http"`
	// Ops is the operations listener: /metrics, /healthz, /readyz.
	Ops Ops `yaml:"ops"`
	Log Log `yaml:"log"`
	// Demo is the demo app at /demo/ on the realtime listener.
	Demo Demo `yaml:"demo"`

	// Pusher holds the app credentials (used by both drivers: the embedded
	// server serves this app) and the pusher driver's HTTP settings.
	Pusher pusherdriver.Config `yaml:"pusher"`
	JWT    JWT                 `yaml:"jwt"`
	// ChannelRules are the channel authorization rules (first match wins).
	ChannelRules authz.RulesConfig `yaml:"channelRules"`
	// RateLimit configures the per-principal and per-user limiters of the
	// gRPC API.
	RateLimit ratelimit.Config `yaml:"rateLimit"`
	// Idempotency configures how long event ids are remembered.
	Idempotency delivery.MemoryStoreConfig `yaml:"idempotency"`
	// Edge configures the embedded realtime server.
	Edge Edge `yaml:"edge"`
	// Redis is the shared engine of a cluster; unset means one node.
	Redis Redis `yaml:"redis"`
	// Cluster configures this node's part in a cluster (used only when
	// Redis is set).
	Cluster Cluster `yaml:"cluster"`
	// Health holds the thresholds of the health verdict (GetHealthStatus,
	// grpc.health.v1, /readyz); see health.Thresholds for each default.
	Health health.Thresholds `yaml:"health"`
	// ShutdownDelay is how long the process goes on serving after it turned
	// NOT_SERVING (grpc.health.v1, /readyz 503, GetHealthStatus unhealthy)
	// and before it closes its listeners, so that load balancers stop
	// routing to it first; calls and new connections still succeed
	// meanwhile. Default 0: the listeners close at once, right for a laptop
	// or a single instance (a health Watch may then end, UNAVAILABLE, before
	// its NOT_SERVING update is sent). Behind a load balancer that follows readiness
	// (Kubernetes), set it a little above the probe period times its failure
	// threshold (e.g. 5s-10s) and keep the termination grace period above
	// shutdownDelay + shutdownTimeout. PUSHERCM_SHUTDOWN_DELAY,
	// --shutdown-delay.
	ShutdownDelay time.Duration `yaml:"shutdownDelay"`
	// ShutdownTimeout bounds each graceful part of shutdown, counted from
	// the end of ShutdownDelay: the gRPC graceful stop and the WebSocket
	// drain run side by side, each within it; after it, remaining RPCs and
	// connections are cut. Default 15s.
	ShutdownTimeout time.Duration `yaml:"shutdownTimeout"`
	// GC tunes the garbage collector for `serve`.
	GC GC `yaml:"gc"`
}

// GC tunes the garbage collector of the serving process.
type GC struct {
	// HeapFloorMiB is the heap goal, in MiB, kept while the process
	// allocates fast for its live heap: while what it allocates would
	// start the collector more than 10 times a second at its own GOGC,
	// GOGC is raised so that the heap may reach this size before a
	// collection; once the rate falls, GOGC goes back and one collection
	// returns the garbage (internal/gcfloor). A publish-heavy node with a
	// small live heap then spends a few percent of its CPU collecting
	// instead of a seventh, for up to this much more memory while busy; an
	// idle node, or one whose live heap is already past half the floor,
	// is unchanged. Default 0: 64 MiB. -1: off. GOGC=off turns it off
	// too; GOMEMLIMIT still applies. PUSHERCM_GC_HEAP_FLOOR_MIB.
	HeapFloorMiB int `yaml:"heapFloorMiB"`
}

// DefaultHeapFloorMiB is GC.HeapFloorMiB's default.
const DefaultHeapFloorMiB = 64

// maxHeapFloorMiB bounds gc.heapFloorMiB (64 GiB).
const maxHeapFloorMiB = 64 << 10

// HeapFloorBytes resolves HeapFloorMiB: 0 when off.
func (g GC) HeapFloorBytes() uint64 {
	switch {
	case g.HeapFloorMiB < 0:
		return 0
	case g.HeapFloorMiB == 0:
		return DefaultHeapFloorMiB << 20
	}
	return uint64(g.HeapFloorMiB) << 20
}

// GRPC configures the gRPC listener.
type GRPC struct {
	// Addr to listen on. Default ":50051". PUSHERCM_GRPC_ADDR, --grpc-addr.
	Addr string `yaml:"addr"`
	// MaxRecvMsgBytes bounds a request message. Default 4 MiB (a batch of
	// 100 events of 10 KB fits with room to spare).
	MaxRecvMsgBytes int `yaml:"maxRecvMsgBytes"`
	// MaxSendMsgBytes bounds a response message. Default 16 MiB (large
	// connection listings).
	MaxSendMsgBytes int `yaml:"maxSendMsgBytes"`
	// Reflection serves grpc.reflection so grpcurl can list services.
	// Default true.
	Reflection *bool     `yaml:"reflection"`
	Keepalive  Keepalive `yaml:"keepalive"`
	// StreamWorkers is how many goroutines are kept to run incoming calls
	// (grpc-go's NumStreamWorkers, an option grpc-go marks experimental). A
	// call that finds one free runs on its already-grown stack instead of
	// starting a goroutine whose stack grows again on every call; a call
	// that finds none free gets a goroutine of its own, as without workers,
	// so no call waits for a worker. Default 0: 64, or 8 per GOMAXPROCS
	// when that is more (a publisher's usual concurrency, so most calls find
	// one; idle, each is a parked goroutine with its stack). -1: none (a
	// new goroutine per call, grpc-go's default).
	StreamWorkers int `yaml:"streamWorkers"`
	// TLS for gRPC, with optional mTLS. PUSHERCM_GRPC_TLS_CERT_FILE,
	// PUSHERCM_GRPC_TLS_KEY_FILE, PUSHERCM_GRPC_TLS_CLIENT_CA_FILE.
	TLS GRPCTLS `yaml:"tls"`
}

// maxStreamWorkers bounds grpc.streamWorkers: each is a goroutine started
// with the server.
const maxStreamWorkers = 100000

// StreamWorkerCount resolves StreamWorkers for the server: 0 is 64, or 8
// per GOMAXPROCS when that is more; -1 is none.
func (g GRPC) StreamWorkerCount() int {
	switch {
	case g.StreamWorkers < 0:
		return 0
	case g.StreamWorkers == 0:
		return max(64, 8*runtime.GOMAXPROCS(0))
	}
	return g.StreamWorkers
}

// Keepalive is the server's keepalive policy and enforcement.
type Keepalive struct {
	// Time after which the server pings an idle client. Default 2h.
	Time time.Duration `yaml:"time"`
	// Timeout waiting for the ping's ack before closing. Default 20s.
	Timeout time.Duration `yaml:"timeout"`
	// MinTime is the shortest client ping interval tolerated; clients that
	// ping more often get GOAWAY (too_many_pings). Default 10s.
	MinTime time.Duration `yaml:"minTime"`
	// PermitWithoutStream lets clients ping with no active RPC. Default true
	// (long-lived publisher connections idle between events).
	PermitWithoutStream *bool `yaml:"permitWithoutStream"`
	// MaxConnectionIdle closes connections idle this long. Zero: never.
	MaxConnectionIdle time.Duration `yaml:"maxConnectionIdle"`
}

// HTTP configures the realtime listener.
type HTTP struct {
	// Addr to listen on. Default ":6001". PUSHERCM_HTTP_ADDR, --http-addr.
	Addr string `yaml:"addr"`
	// AllowedOrigins for WebSocket upgrades and CORS on the auth
	// endpoints. Empty: any origin (Pusher's behaviour).
	AllowedOrigins []string `yaml:"allowedOrigins"`
	// MaxHeaderBytes bounds the head of a request (request line and
	// headers); a longer one is answered 431 while it arrives. Default 32
	// KiB: twice Node's default and what nginx's default buffers take, room
	// for large cookies and proxy headers. Request bodies have fixed
	// per-route limits (16 KiB on the auth endpoints, edge.maxApiBodyBytes
	// on the HTTP API, 1 MiB on webhook ingest).
	MaxHeaderBytes int `yaml:"maxHeaderBytes"`
	// TrustedProxies are the load balancers and reverse proxies (CIDR
	// prefixes or single addresses) allowed to name the client in
	// X-Forwarded-For or, without it, RFC 7239 Forwarded. From them the
	// right-most address that is not itself a trusted proxy is the client:
	// the address the per-IP limits count, logs show and GetConnection
	// reports. Headers from any other peer are ignored. Empty: the TCP peer
	// is the client, so behind a proxy every client shares its limits.
	// Comma separated in PUSHERCM_HTTP_TRUSTED_PROXIES.
	TrustedProxies []string `yaml:"trustedProxies"`
	// BrowserUserInfoKeys are the user_info keys a browser may set through
	// /pusher/auth and /pusher/user-auth (for example an avatar). The token's
	// claims win over them, and rule expressions never see them. Empty (the
	// default): user_info comes from the token alone. The gRPC
	// AuthService, called by the trusted web app, is not limited by this.
	BrowserUserInfoKeys []string `yaml:"browserUserInfoKeys"`
	// TLS makes the listener wss:// and https:// (WebSocket, HTTP API, auth
	// endpoints). PUSHERCM_HTTP_TLS_CERT_FILE, PUSHERCM_HTTP_TLS_KEY_FILE.
	TLS TLS `yaml:"tls"`
}

// Ops configures the operations listener.
type Ops struct {
	// Addr to listen on. Default ":9464". PUSHERCM_OPS_ADDR, --ops-addr.
	Addr string `yaml:"addr"`
	// Pprof serves Go's profiler at /debug/pprof/ on this listener. Default
	// false; it exposes internals, so only turn it on where the ops port is
	// private.
	Pprof bool `yaml:"pprof"`
	// Console serves the operator console at /console/ on this listener.
	// Default false. Every figure and action of the console goes through
	// ConnectionService and BroadcastService with the caller's service
	// token, so it shows nothing a token could not read over gRPC.
	// PUSHERCM_OPS_CONSOLE.
	Console bool `yaml:"console"`
	// TLS serves /metrics, /healthz and /readyz over HTTPS.
	// PUSHERCM_OPS_TLS_CERT_FILE, PUSHERCM_OPS_TLS_KEY_FILE.
	TLS TLS `yaml:"tls"`
}

// Demo configures the demo app.
type Demo struct {
	// Enabled serves the Mile Quest demo page at /demo/ on the realtime
	// listener. Default: on with --dev, off otherwise. Outside dev mode the
	// page has no way to get a user token (the token endpoint exists only in
	// dev mode), so it is only useful behind an app that hands tokens out.
	// PUSHERCM_DEMO_ENABLED.
	Enabled *bool `yaml:"enabled"`
}

// Log configures logging.
type Log struct {
	// Level is DEBUG, INFO (default), WARN or ERROR. DEBUG logs every RPC.
	// PUSHERCM_LOG_LEVEL, --log-level.
	Level string `yaml:"level"`
	// Format is "text" (default) or "json". PUSHERCM_LOG_FORMAT.
	Format string `yaml:"format"`
}

// JWT configures token verification: user tokens (channel authorization,
// sign-in) with the keys below, service tokens (gRPC callers) with Service.
type JWT struct {
	// Secret is the HMAC key for HS256/384/512 tokens. PUSHERCM_JWT_SECRET.
	Secret string `yaml:"secret"`
	// PublicKeyFile is a PEM file of RSA, EC or Ed25519 public keys.
	// PUSHERCM_JWT_PUBLIC_KEY_FILE.
	PublicKeyFile string `yaml:"publicKeyFile"`
	// JWKSURL is fetched, cached and refreshed. PUSHERCM_JWT_JWKS_URL.
	JWKSURL string `yaml:"jwksUrl"`
	// JWKSFile is a JWK set on disk, re-read on SIGHUP.
	// PUSHERCM_JWT_JWKS_FILE.
	JWKSFile string `yaml:"jwksFile"`
	// Issuer, when set, must equal the token's iss. PUSHERCM_JWT_ISSUER.
	Issuer string `yaml:"issuer"`
	// Audience, when set, must be among the token's aud. Comma separated in
	// PUSHERCM_JWT_AUDIENCE.
	Audience []string `yaml:"audience"`
	// Algorithms accepted; empty means those the keys imply. "none" is
	// never accepted. PUSHERCM_JWT_ALGORITHMS (comma separated).
	Algorithms []string `yaml:"algorithms"`
	// Leeway tolerated on exp and nbf. Default 30s.
	Leeway time.Duration `yaml:"leeway"`
	// Claims names the identity claims for other identity providers.
	Claims authz.ClaimNames `yaml:"claims"`
	// JWKSRefresh is how often a JWKS URL is refetched. Default 10m.
	JWKSRefresh time.Duration `yaml:"jwksRefresh"`
	// Service is the trust of service tokens. Leeway, Claims and JWKSRefresh
	// above apply to both.
	Service ServiceJWT `yaml:"service"`
}

// ServiceJWT configures the verification of service tokens, the bearer
// tokens of gRPC callers. It is separate from the user-token trust so that
// whoever can mint user tokens (the web app's backend, an identity provider)
// cannot mint service scopes: a user token never passes as a service token,
// whatever claims it carries. Required without --dev (--dev fills Secret with
// DevServiceSecret).
type ServiceJWT struct {
	// Secret is the HMAC key of HS* service tokens; at least 32 bytes and
	// different from jwt.secret. PUSHERCM_JWT_SERVICE_SECRET.
	Secret string `yaml:"secret"`
	// PublicKeyFile is a PEM file of service-token public keys.
	// PUSHERCM_JWT_SERVICE_PUBLIC_KEY_FILE.
	PublicKeyFile string `yaml:"publicKeyFile"`
	// JWKSURL is the service tokens' key set. PUSHERCM_JWT_SERVICE_JWKS_URL.
	JWKSURL string `yaml:"jwksUrl"`
	// JWKSFile is a JWK set on disk. PUSHERCM_JWT_SERVICE_JWKS_FILE.
	JWKSFile string `yaml:"jwksFile"`
	// Issuer, when set, must equal a service token's iss.
	// PUSHERCM_JWT_SERVICE_ISSUER.
	Issuer string `yaml:"issuer"`
	// Audience, when set, must be among a service token's aud. Required
	// (and disjoint from jwt.audience) when the service keys are the user
	// keys (the same public key file, JWKS URL or file: one identity
	// provider signing both). Comma separated in PUSHERCM_JWT_SERVICE_AUDIENCE.
	Audience []string `yaml:"audience"`
	// Algorithms accepted; empty means those the keys imply.
	// PUSHERCM_JWT_SERVICE_ALGORITHMS (comma separated).
	Algorithms []string `yaml:"algorithms"`
}

func (s ServiceJWT) hasKeySource() bool {
	return s.Secret != "" || s.PublicKeyFile != "" || s.JWKSURL != "" || s.JWKSFile != ""
}

// Edge configures the embedded realtime server's behaviour. Pusher's limits
// are the defaults.
type Edge struct {
	// ActivityTimeout sent to clients (how long they stay silent before
	// pinging). Default 120s.
	ActivityTimeout time.Duration `yaml:"activityTimeout"`
	// PongTimeout is how long a pinged client has to answer before it is
	// closed with 4201. Default 30s.
	PongTimeout time.Duration `yaml:"pongTimeout"`
	// MaxConnections refused over with 4004. Default 5000.
	MaxConnections int `yaml:"maxConnections"`
	// ClientEvents enables client- events on private and presence
	// channels. Default false (on in --dev).
	ClientEvents *bool `yaml:"clientEvents"`
	// ClientEventsPerSecond per connection; over it, pusher:error 4301.
	// Default 10.
	ClientEventsPerSecond int `yaml:"clientEventsPerSecond"`
	// UserAuthentication enables pusher:signin. Default false (on in --dev).
	UserAuthentication *bool `yaml:"userAuthentication"`
	// IOUring sends fan-out writes through io_uring on Linux kernels that allow
	// it (one syscall per batch of sockets instead of one each). Default true;
	// false writes every socket with write(2).
	IOUring *bool `yaml:"ioUring"`
	// FlushInterval is the shortest time between two socket write rounds of
	// the edge. Under heavy publishing everything queued for a socket within
	// it goes out in one write (fewer syscalls, at most this much added
	// delay); when publishes are further apart it adds nothing. Default 0.
	FlushInterval time.Duration `yaml:"flushInterval"`
	// PublishHoldMax bounds how long a publish to a congested channel waits
	// before it returns: a channel whose subscribers on a node cannot keep
	// up (congestedPercent of them past half their write queue) slows its
	// publishers down, on every node, rather than lose the subscribers. After
	// it the publish returns all the same and subscribers that still cannot
	// keep up are closed with 4100. Default 500ms; 0 never holds.
	// PUSHERCM_EDGE_PUBLISH_HOLD_MAX.
	PublishHoldMax time.Duration `yaml:"publishHoldMax"`
	// CongestedPercent is the share of a channel's subscribers on a node
	// that must lag (past half their write queue) for the channel to count
	// as congested there, and at least 8 sockets: one or two slow clients
	// never hold the publishers, they are closed with 4100. Default 10; 1 to
	// 100. PUSHERCM_EDGE_CONGESTED_PERCENT.
	CongestedPercent int `yaml:"congestedPercent"`
	// SubscriptionsPerConnection bounds channels per connection. Default 100.
	SubscriptionsPerConnection int `yaml:"subscriptionsPerConnection"`
	// SubscriptionsPerUser bounds channels per signed-in user across all of
	// the user's connections. Zero: unlimited.
	SubscriptionsPerUser int `yaml:"subscriptionsPerUser"`
	// MaxConnectionsPerIP bounds the open connections of one client
	// address (see http.trustedProxies; IPv6 counts by /64); over it a
	// socket is refused with 4004 and counted as
	// CONNECTIONS_PER_IP_EXHAUSTED. Default 256: about 5% of the default
	// pool, so one address cannot take it, while an office or campus
	// behind one NAT (a few hundred people with a tab or two) still fits.
	// Raise it for carrier-grade NAT audiences. Zero: unlimited.
	MaxConnectionsPerIP int `yaml:"maxConnectionsPerIp"`
	// ConnectionsPerIPPerSecond bounds new connections from one address
	// (4100, pusher-js retries after a back-off). Zero (default):
	// unlimited. It stays off by default: maxConnectionsPerIp already
	// bounds what one address holds, and a rate would refuse a NAT'd
	// office whose clients all reconnect at once after a drain (4200).
	ConnectionsPerIPPerSecond int `yaml:"connectionsPerIpPerSecond"`
	// MaxPayloadBytes bounds event data. Default 10240.
	MaxPayloadBytes int `yaml:"maxPayloadBytes"`
	// MaxChannelsPerEvent bounds channels of one trigger. Default 100.
	MaxChannelsPerEvent int `yaml:"maxChannelsPerEvent"`
	// MaxBatchSize bounds events of one batch_events call. Default 10.
	MaxBatchSize int `yaml:"maxBatchSize"`
	// MaxEventNameLength. Default 200.
	MaxEventNameLength int `yaml:"maxEventNameLength"`
	// MaxChannelNameLength. Default 164.
	MaxChannelNameLength int `yaml:"maxChannelNameLength"`
	// MaxPresenceMembers per presence channel. Default 100.
	MaxPresenceMembers int `yaml:"maxPresenceMembers"`
	// MaxMemberInfoBytes bounds a presence member's user_info. Default 1024.
	MaxMemberInfoBytes int `yaml:"maxMemberInfoBytes"`
	// MaxFrameBytes bounds one inbound WebSocket frame. Default 64 KiB.
	MaxFrameBytes int `yaml:"maxFrameBytes"`
	// CacheTTL is how long cache channels keep their last event. Default 30m.
	CacheTTL time.Duration `yaml:"cacheTtl"`
	// MaxCacheChannels bounds the cache channels holding an event; when
	// full, a publish to another one evicts the entry nearest to expiry
	// (that channel then answers cache_miss). An entry holds up to
	// maxPayloadBytes of data, so the default 10000 is at most about 100 MiB
	// at the default 10 KB, and far less for typical events.
	MaxCacheChannels int `yaml:"maxCacheChannels"`
	// MaxAPIBodyBytes bounds a Pusher HTTP API request body: a longer one
	// is answered 413 before it is read. Default 1 MiB, room for a batch of
	// maxBatchSize events of maxPayloadBytes fully JSON-escaped at the
	// defaults; raise it with those.
	MaxAPIBodyBytes int64 `yaml:"maxApiBodyBytes"`
	// HTTPRequestsPerSecond bounds the HTTP API per app (429 over it).
	// Zero: unlimited.
	HTTPRequestsPerSecond int `yaml:"httpRequestsPerSecond"`
	// Webhooks posted by the embedded server.
	Webhooks Webhooks `yaml:"webhooks"`
}

// Webhooks configures outgoing webhooks of the embedded server.
type Webhooks struct {
	// URLs receive every webhook. Empty: webhooks off.
	URLs []string `yaml:"urls"`
	// BatchWindow collects events into one request. Zero: one event per
	// request, as Pusher does by default.
	BatchWindow time.Duration `yaml:"batchWindow"`
	// RetryFor bounds retries of a failed delivery. Default 5m.
	RetryFor time.Duration `yaml:"retryFor"`
	// QueueSize bounds events waiting to be sent; beyond it they are
	// dropped and counted. Default 10000.
	QueueSize int `yaml:"queueSize"`
}

// Redis is the shared engine of a cluster (DESIGN §6). With neither URL nor
// ClusterAddrs set the process is one node, exactly as without this section.
type Redis struct {
	// URL is redis://[user:password@]host:port[/db], or rediss:// for TLS.
	// PUSHERCM_REDIS_URL.
	URL string `yaml:"url"`
	// ClusterAddrs are the seed addresses (host:port) of a Redis Cluster;
	// URL's credentials and TLS still apply. Channels' keys spread over
	// its masters, and so do publications: sharded pub/sub (SPUBLISH,
	// SSUBSCRIBE; Redis 7 or later). PUSHERCM_REDIS_CLUSTER_ADDRS (comma
	// separated).
	ClusterAddrs []string `yaml:"clusterAddrs"`
	// Prefix starts every key and pub/sub channel, so two apps or two
	// environments on one Redis never see each other. Default "pushercm".
	// PUSHERCM_REDIS_PREFIX.
	Prefix string `yaml:"prefix"`
}

// Enabled is true when a Redis is configured: the node is part of a cluster.
func (r Redis) Enabled() bool { return r.URL != "" || len(r.ClusterAddrs) > 0 }

// Cluster is this node's part in a cluster.
type Cluster struct {
	// NodeID names this node; default the host name plus a random suffix,
	// so a restarted process is a new node. PUSHERCM_CLUSTER_NODE_ID.
	NodeID string `yaml:"nodeId"`
	// Heartbeat is how often the node refreshes its registration. Default
	// 2s. PUSHERCM_CLUSTER_HEARTBEAT.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// NodeTTL is how long a node that stopped heartbeating still counts as
	// alive; after it, its members, counts and connections are removed.
	// Default 10s; at least twice Heartbeat. PUSHERCM_CLUSTER_NODE_TTL.
	NodeTTL time.Duration `yaml:"nodeTtl"`
	// MaxConnections caps the sockets of the whole cluster (0 = none); the
	// node's own edge.maxConnections still applies.
	// PUSHERCM_CLUSTER_MAX_CONNECTIONS.
	MaxConnections int `yaml:"maxConnections"`
	// HistorySize is how many of a channel's latest events Redis keeps so
	// that a node that missed some (a reconnect, a burst it could not take)
	// catches up. Default 1000.
	HistorySize int `yaml:"historySize"`
	// HistoryTTL is how long a channel's history outlives its last event.
	// Default 5m.
	HistoryTTL time.Duration `yaml:"historyTtl"`
	// QueueSize bounds the events received from Redis and waiting for local
	// delivery; past it they are caught up from the history. Default 65536.
	QueueSize int `yaml:"queueSize"`
	// RedisDown is the health verdict while Redis is unreachable: degraded
	// (default: local sockets are served, publishes are refused) or
	// unhealthy (load balancers stop routing to the node).
	RedisDown string `yaml:"redisDown"`
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Driver: DriverEmbedded,
		GRPC: GRPC{
			Addr:            ":50051",
			MaxRecvMsgBytes: 4 << 20,
			MaxSendMsgBytes: 16 << 20,
			Keepalive: Keepalive{
				Time:    2 * time.Hour,
				Timeout: 20 * time.Second,
				MinTime: 10 * time.Second,
			},
			TLS: GRPCTLS{TLS: TLS{ReloadInterval: defaultTLSReloadInterval}},
		},
		HTTP:        HTTP{Addr: ":6001", MaxHeaderBytes: 32 << 10, TLS: TLS{ReloadInterval: defaultTLSReloadInterval}},
		Ops:         Ops{Addr: ":9464", TLS: TLS{ReloadInterval: defaultTLSReloadInterval}},
		Log:         Log{Level: "INFO", Format: "text"},
		Pusher:      pusherdriver.Config{Cluster: pusherdriver.DefaultCluster},
		JWT:         JWT{Leeway: 30 * time.Second, JWKSRefresh: 10 * time.Minute},
		RateLimit:   ratelimit.DefaultConfig(),
		Idempotency: delivery.MemoryStoreConfig{}.WithDefaults(),
		Edge: Edge{
			ActivityTimeout:            120 * time.Second,
			PongTimeout:                30 * time.Second,
			MaxConnections:             5000,
			MaxConnectionsPerIP:        256,
			ClientEventsPerSecond:      10,
			SubscriptionsPerConnection: 100,
			MaxPayloadBytes:            10 * 1024,
			MaxChannelsPerEvent:        100,
			MaxBatchSize:               10,
			MaxEventNameLength:         200,
			MaxChannelNameLength:       164,
			MaxPresenceMembers:         100,
			MaxMemberInfoBytes:         1024,
			MaxFrameBytes:              64 << 10,
			CacheTTL:                   30 * time.Minute,
			MaxCacheChannels:           10000,
			MaxAPIBodyBytes:            1 << 20,
			PublishHoldMax:             500 * time.Millisecond,
			CongestedPercent:           10,
			Webhooks:                   Webhooks{RetryFor: 5 * time.Minute, QueueSize: 10000},
		},
		Health:          health.DefaultThresholds(),
		ShutdownTimeout: 15 * time.Second,
	}
}

// Bool reads an optional boolean with its default.
func Bool(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// Decode reads YAML into c. Unknown keys and values of the wrong type are
// errors naming the setting's YAML path and line
// (`edge.maxConnections: want a number, got "lots" (line 3)`); an unknown
// key suggests the known key nearest to it.
func Decode(r io.Reader, c *Config) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	if doc.Kind == 0 {
		return nil // an empty file sets nothing
	}
	if err := checkNode(&doc, reflect.TypeOf(c).Elem()); err != nil {
		return err
	}
	// checkNode catches what users get wrong; yaml.v3's own strict decode
	// stays the final word on anything it does not model.
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// DecodeFile reads the YAML file at path into c.
func DecodeFile(path string, c *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if err := Decode(bytes.NewReader(b), c); err != nil {
		return fmt.Errorf("config file %s:\n%w", path, err)
	}
	return nil
}

// ApplyDev fills what --dev promises. It reports which settings it filled
// so the caller can say so loudly.
func (c *Config) ApplyDev() (filled []string) {
	if !c.Dev {
		return nil
	}
	set := func(p *string, v, name string) {
		if *p == "" {
			*p = v
			filled = append(filled, name)
		}
	}
	set(&c.Pusher.AppID, DevAppID, "pusher.appId")
	set(&c.Pusher.Key, DevAppKey, "pusher.key")
	set(&c.Pusher.Secret, DevAppSecret, "pusher.secret")
	if c.JWT.Secret == "" && c.JWT.PublicKeyFile == "" && c.JWT.JWKSURL == "" && c.JWT.JWKSFile == "" {
		c.JWT.Secret = DevJWTSecret
		filled = append(filled, "jwt.secret")
	}
	if c.Pusher.EncryptionMasterKeyBase64 == "" {
		c.Pusher.EncryptionMasterKeyBase64 = DevEncryptionMasterKeyBase64
		filled = append(filled, "pusher.encryptionMasterKeyBase64")
	}
	if c.Demo.Enabled == nil {
		t := true
		c.Demo.Enabled = &t
		filled = append(filled, "demo.enabled")
	}
	if !c.JWT.Service.hasKeySource() {
		c.JWT.Service.Secret = DevServiceSecret
		filled = append(filled, "jwt.service.secret")
	}
	if c.Edge.ClientEvents == nil {
		t := true
		c.Edge.ClientEvents = &t
		filled = append(filled, "edge.clientEvents")
	}
	if c.Edge.UserAuthentication == nil {
		t := true
		c.Edge.UserAuthentication = &t
		filled = append(filled, "edge.userAuthentication")
	}
	return filled
}

// Validate checks every setting and names the first bad key. It runs
// before any listener opens.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if !slices.Contains([]string{DriverEmbedded, DriverPusher}, c.Driver) {
		bad("driver", "%q is not a driver (embedded or pusher)", c.Driver)
	}
	for key, addr := range map[string]string{"grpc.addr": c.GRPC.Addr, "http.addr": c.HTTP.Addr, "ops.addr": c.Ops.Addr} {
		if addr == "" || !strings.Contains(addr, ":") {
			bad(key, "%q is not a host:port address", addr)
		}
	}
	if c.HTTP.MaxHeaderBytes < 1024 {
		bad("http.maxHeaderBytes", "must be at least 1024")
	}
	if _, err := clientip.New(c.HTTP.TrustedProxies); err != nil {
		bad("http.trustedProxies", "%v", err)
	}
	if c.GRPC.MaxRecvMsgBytes <= 0 {
		bad("grpc.maxRecvMsgBytes", "must be positive")
	}
	if c.GRPC.MaxSendMsgBytes <= 0 {
		bad("grpc.maxSendMsgBytes", "must be positive")
	}
	if c.GC.HeapFloorMiB < -1 || c.GC.HeapFloorMiB > maxHeapFloorMiB {
		bad("gc.heapFloorMiB", "must be -1 (off), 0 (%d) or a size in MiB up to %d, got %d", DefaultHeapFloorMiB, maxHeapFloorMiB, c.GC.HeapFloorMiB)
	}
	if c.GRPC.StreamWorkers < -1 || c.GRPC.StreamWorkers > maxStreamWorkers {
		bad("grpc.streamWorkers", "must be -1 (none), 0 (64, or 8 per GOMAXPROCS) or a count up to %d, got %d", maxStreamWorkers, c.GRPC.StreamWorkers)
	}
	if c.GRPC.Keepalive.MinTime < 0 || c.GRPC.Keepalive.Time < 0 || c.GRPC.Keepalive.Timeout < 0 {
		bad("grpc.keepalive", "durations must not be negative")
	}
	if _, err := ParseLevel(c.Log.Level); err != nil {
		bad("log.level", "%v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "%q is not text or json", c.Log.Format)
	}
	if c.Pusher.AppID == "" {
		bad("pusher.appId", "required (PUSHER_APP_ID), or run with --dev")
	}
	if c.Pusher.Key == "" {
		bad("pusher.key", "required (NEXT_PUBLIC_PUSHER_KEY or PUSHER_KEY), or run with --dev")
	}
	if c.Pusher.Secret == "" {
		bad("pusher.secret", "required (PUSHER_SECRET), or run with --dev")
	}
	if c.Pusher.Scheme != "" && c.Pusher.Scheme != "http" && c.Pusher.Scheme != "https" {
		bad("pusher.scheme", "%q is not http or https", c.Pusher.Scheme)
	}
	if c.Driver == DriverPusher {
		if err := c.Pusher.Validate(); err != nil {
			bad("pusher", "%v", err)
		}
	}
	if c.JWT.Secret == "" && c.JWT.PublicKeyFile == "" && c.JWT.JWKSURL == "" && c.JWT.JWKSFile == "" {
		bad("jwt", "no key source: set PUSHERCM_JWT_SECRET, PUSHERCM_JWT_PUBLIC_KEY_FILE, PUSHERCM_JWT_JWKS_URL or PUSHERCM_JWT_JWKS_FILE, or run with --dev")
	}
	if !c.Dev {
		for _, dev := range []struct{ key, val, dev string }{
			{"pusher.secret", c.Pusher.Secret, DevAppSecret},
			{"jwt.secret", c.JWT.Secret, DevJWTSecret},
			{"jwt.service.secret", c.JWT.Service.Secret, DevServiceSecret},
			{"pusher.encryptionMasterKeyBase64", c.Pusher.EncryptionMasterKeyBase64, DevEncryptionMasterKeyBase64},
		} {
			if dev.val == dev.dev {
				errs = append(errs, fmt.Errorf("%s: %w; set a secret of your own", dev.key, ErrDevSecret))
			}
		}
	}
	if c.JWT.Secret != "" && len(c.JWT.Secret) < 32 {
		bad("jwt.secret", "must be at least 32 bytes for HS256")
	}
	for _, a := range c.JWT.Algorithms {
		if !slices.Contains(authz.SupportedAlgorithms, a) {
			bad("jwt.algorithms", "%q is not supported (%s)", a, strings.Join(authz.SupportedAlgorithms, ", "))
		}
	}
	if err := c.JWT.validateService(); err != nil {
		errs = append(errs, err)
	}
	if c.JWT.Leeway < 0 || c.JWT.Leeway > 5*time.Minute {
		bad("jwt.leeway", "must be between 0 and 5m")
	}
	if err := c.RateLimit.Validate(); err != nil {
		bad("rateLimit", "%v", err)
	}
	if err := c.Idempotency.WithDefaults().Validate(); err != nil {
		bad("idempotency", "%v", err)
	}
	if err := c.Edge.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Health.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.validateCluster(); err != nil {
		errs = append(errs, err)
	}
	if err := c.validateTLS(); err != nil {
		errs = append(errs, err)
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdownTimeout", "must be positive")
	}
	if c.ShutdownDelay < 0 {
		bad("shutdownDelay", "must not be negative")
	}
	return errors.Join(errs...)
}

// validateService checks that service tokens have a trust of their own.
func (j *JWT) validateService() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	s := j.Service
	if !s.hasKeySource() {
		bad("jwt.service", "no key source for service tokens: set PUSHERCM_JWT_SERVICE_SECRET, PUSHERCM_JWT_SERVICE_PUBLIC_KEY_FILE, PUSHERCM_JWT_SERVICE_JWKS_URL or PUSHERCM_JWT_SERVICE_JWKS_FILE (gRPC callers' tokens are not verified with the user-token keys), or run with --dev")
	}
	if s.Secret != "" && len(s.Secret) < 32 {
		bad("jwt.service.secret", "must be at least 32 bytes for HS256")
	}
	if s.Secret != "" && s.Secret == j.Secret {
		bad("jwt.service.secret", "must differ from jwt.secret: whoever holds the user-token secret could mint service tokens")
	}
	var shared []string
	for _, k := range []struct{ name, user, svc string }{
		{"publicKeyFile", j.PublicKeyFile, s.PublicKeyFile},
		{"jwksUrl", j.JWKSURL, s.JWKSURL},
		{"jwksFile", j.JWKSFile, s.JWKSFile},
	} {
		if k.svc != "" && k.svc == k.user {
			shared = append(shared, k.name)
		}
	}
	if len(shared) > 0 {
		disjoint := len(s.Audience) > 0 && len(j.Audience) > 0
		for _, a := range s.Audience {
			if slices.Contains(j.Audience, a) {
				disjoint = false
			}
		}
		if !disjoint {
			bad("jwt.service.audience", "the service keys are the user keys (%s): set jwt.service.audience and jwt.audience to values with none in common, so that a user token cannot pass as a service token", strings.Join(shared, ", "))
		}
	}
	for _, a := range s.Algorithms {
		if !slices.Contains(authz.SupportedAlgorithms, a) {
			bad("jwt.service.algorithms", "%q is not supported (%s)", a, strings.Join(authz.SupportedAlgorithms, ", "))
		}
	}
	return errors.Join(errs...)
}

func (e *Edge) validate() error {
	var errs []error
	positive := map[string]int{
		"edge.maxConnections":             e.MaxConnections,
		"edge.clientEventsPerSecond":      e.ClientEventsPerSecond,
		"edge.subscriptionsPerConnection": e.SubscriptionsPerConnection,
		"edge.maxPayloadBytes":            e.MaxPayloadBytes,
		"edge.maxChannelsPerEvent":        e.MaxChannelsPerEvent,
		"edge.maxBatchSize":               e.MaxBatchSize,
		"edge.maxEventNameLength":         e.MaxEventNameLength,
		"edge.maxChannelNameLength":       e.MaxChannelNameLength,
		"edge.maxPresenceMembers":         e.MaxPresenceMembers,
		"edge.maxMemberInfoBytes":         e.MaxMemberInfoBytes,
		"edge.maxFrameBytes":              e.MaxFrameBytes,
		"edge.maxCacheChannels":           e.MaxCacheChannels,
		"edge.webhooks.queueSize":         e.Webhooks.QueueSize,
	}
	for _, k := range sortedKeys(positive) {
		if positive[k] <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", k))
		}
	}
	nonNegative := map[string]int{
		"edge.subscriptionsPerUser":      e.SubscriptionsPerUser,
		"edge.connectionsPerIpPerSecond": e.ConnectionsPerIPPerSecond,
		"edge.maxConnectionsPerIp":       e.MaxConnectionsPerIP,
		"edge.httpRequestsPerSecond":     e.HTTPRequestsPerSecond,
	}
	for _, k := range sortedKeys(nonNegative) {
		if nonNegative[k] < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative", k))
		}
	}
	if e.ActivityTimeout < time.Second {
		errs = append(errs, errors.New("edge.activityTimeout: must be at least 1s"))
	}
	if e.PongTimeout < 100*time.Millisecond {
		errs = append(errs, errors.New("edge.pongTimeout: must be at least 100ms"))
	}
	if e.PublishHoldMax < 0 {
		errs = append(errs, errors.New("edge.publishHoldMax: must not be negative"))
	}
	if e.CongestedPercent < 1 || e.CongestedPercent > 100 {
		errs = append(errs, errors.New("edge.congestedPercent: must be 1 to 100"))
	}
	if e.MaxAPIBodyBytes <= 0 {
		errs = append(errs, errors.New("edge.maxApiBodyBytes: must be positive"))
	}
	if e.CacheTTL <= 0 {
		errs = append(errs, errors.New("edge.cacheTtl: must be positive"))
	}
	for i, u := range e.Webhooks.URLs {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			errs = append(errs, fmt.Errorf("edge.webhooks.urls[%d]: %q is not an http(s) URL", i, u))
		}
	}
	if e.Webhooks.RetryFor < 0 || e.Webhooks.BatchWindow < 0 {
		errs = append(errs, errors.New("edge.webhooks: durations must not be negative"))
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Redacted is the text that replaces a secret in Effective.
const Redacted = "REDACTED"

// Effective is c as the process will use it, for printing: optional
// switches resolved to their defaults, and secrets (the Pusher app secret,
// the encryption master key, the JWT secret, passwords in URLs) replaced by
// Redacted.
func (c Config) Effective() Config {
	hide := func(s string) string {
		if s == "" {
			return ""
		}
		return Redacted
	}
	on := func(p *bool, def bool) *bool { v := Bool(p, def); return &v }
	c.Pusher = c.Pusher.WithDefaults()
	c.Pusher.Secret = hide(c.Pusher.Secret)
	c.Pusher.EncryptionMasterKeyBase64 = hide(c.Pusher.EncryptionMasterKeyBase64)
	c.JWT.Secret = hide(c.JWT.Secret)
	c.JWT.Service.Secret = hide(c.JWT.Service.Secret)
	c.Redis.URL = redactURL(c.Redis.URL)
	c.JWT.JWKSURL = redactURL(c.JWT.JWKSURL)
	c.JWT.Service.JWKSURL = redactURL(c.JWT.Service.JWKSURL)
	c.Edge.Webhooks.URLs = slices.Clone(c.Edge.Webhooks.URLs)
	for i, u := range c.Edge.Webhooks.URLs {
		c.Edge.Webhooks.URLs[i] = redactURL(u)
	}
	c.GRPC.Reflection = on(c.GRPC.Reflection, true)
	c.GRPC.Keepalive.PermitWithoutStream = on(c.GRPC.Keepalive.PermitWithoutStream, true)
	c.Edge.ClientEvents = on(c.Edge.ClientEvents, false)
	c.Edge.UserAuthentication = on(c.Edge.UserAuthentication, false)
	c.Edge.IOUring = on(c.Edge.IOUring, true)
	c.ChannelRules.Builtins = on(c.ChannelRules.Builtins, true)
	return c
}

// redactURL hides a URL's password; a string that does not parse is
// hidden whole, since it may be a secret pasted in the wrong place.
func redactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return Redacted
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), Redacted)
	}
	return u.String()
}

// ClusterConfig is the shared engine's configuration from redis.* and
// cluster.*, defaults filled (the zero Config when no Redis is set).
func (c *Config) ClusterConfig() cluster.Config {
	if !c.Redis.Enabled() {
		return cluster.Config{}
	}
	return cluster.Config{
		URL: c.Redis.URL, ClusterAddrs: c.Redis.ClusterAddrs, Prefix: c.Redis.Prefix,
		NodeID: c.Cluster.NodeID, Heartbeat: c.Cluster.Heartbeat, NodeTTL: c.Cluster.NodeTTL,
		HistorySize: c.Cluster.HistorySize, HistoryTTL: c.Cluster.HistoryTTL, QueueSize: c.Cluster.QueueSize,
	}.WithDefaults()
}

// RateLimitStore is where the gRPC rate limits keep their buckets:
// rateLimit.store, else redis when a Redis is configured, else memory.
func (c *Config) RateLimitStore() string {
	if c.RateLimit.Store != "" {
		return c.RateLimit.Store
	}
	if c.Redis.Enabled() {
		return ratelimit.StoreRedis
	}
	return ratelimit.StoreMemory
}

// Cluster health verdicts while Redis is unreachable (cluster.redisDown).
const (
	RedisDownDegraded  = "degraded"
	RedisDownUnhealthy = "unhealthy"
)

func (c *Config) validateCluster() error {
	if c.Cluster.RedisDown != "" && c.Cluster.RedisDown != RedisDownDegraded && c.Cluster.RedisDown != RedisDownUnhealthy {
		return fmt.Errorf("cluster.redisDown: %q is not degraded or unhealthy", c.Cluster.RedisDown)
	}
	if c.Cluster.MaxConnections < 0 {
		return errors.New("cluster.maxConnections: must not be negative (0 = no cap)")
	}
	if !c.Redis.Enabled() {
		if c.RateLimit.Store == ratelimit.StoreRedis {
			return errors.New("rateLimit.store: redis needs redis.url (or redis.clusterAddrs)")
		}
		return nil
	}
	if c.Driver != DriverEmbedded {
		return fmt.Errorf("redis: cluster mode needs the embedded driver (driver is %q); hosted Pusher is already shared", c.Driver)
	}
	return c.ClusterConfig().Validate()
}
