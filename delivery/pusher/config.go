package pusher

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/milequest/pushercm/protocol"
)

// Config configures the pusher driver. Zero values take the documented defaults; the
// app fields map to the PUSHER_* environment variables.
type Config struct {
	// AppID, Key and Secret identify the Pusher app (PUSHER_APP_ID, PUSHER_KEY,
	// PUSHER_SECRET). Required.
	AppID  string `yaml:"appId"`
	Key    string `yaml:"key"`
	Secret string `yaml:"secret"`
	// Cluster selects api-{cluster}.pusher.com (PUSHER_CLUSTER). Ignored when Host is set.
	// Default "mt1".
	Cluster string `yaml:"cluster"`
	// Host is host or host:port of a Pusher-compatible HTTP API (PUSHER_HOST), e.g. a
	// second pushercm's edge or soketi. Empty means Pusher's cluster host.
	Host string `yaml:"host"`
	// Scheme is "https" (default) or "http" (PUSHER_SCHEME).
	Scheme string `yaml:"scheme"`
	// EncryptionMasterKeyBase64 is the 32-byte key, base64, for private-encrypted-
	// channels (PUSHER_ENCRYPTION_MASTER_KEY_BASE64). Without it, publishing to an
	// encrypted channel fails with ErrInvalid.
	EncryptionMasterKeyBase64 string `yaml:"encryptionMasterKeyBase64"`

	// RequestTimeout bounds one HTTP attempt; the caller's deadline bounds it further.
	// Default 5s (pusher-http-go's own default).
	RequestTimeout time.Duration `yaml:"requestTimeout"`
	// ReconnectAttempts is how many times a failed request is retried (network errors,
	// 5xx, 429; never other 4xx). Default 3; negative disables retries.
	ReconnectAttempts int `yaml:"reconnectAttempts"`
	// ReconnectDelay is the backoff before the first retry. Default 100ms.
	ReconnectDelay time.Duration `yaml:"reconnectDelay"`
	// MaxReconnectDelay caps the backoff. Default 5s.
	MaxReconnectDelay time.Duration `yaml:"maxReconnectDelay"`
	// BackoffMultiplier grows the backoff per retry. Default 2.0; must be >= 1.
	// The actual delay is drawn uniformly from [d/2, d] (jitter) so that retries of many
	// callers do not arrive together.
	BackoffMultiplier float64 `yaml:"backoffMultiplier"`

	// BreakerFailureThreshold is how many consecutive failed attempts open the circuit
	// breaker. While open, calls fail fast with ErrUnavailable. Default 5; negative
	// disables the breaker.
	BreakerFailureThreshold int `yaml:"breakerFailureThreshold"`
	// BreakerOpenTimeout is how long the breaker stays open before one probe request is
	// let through (half-open); its success closes the breaker. Default 10s.
	BreakerOpenTimeout time.Duration `yaml:"breakerOpenTimeout"`

	// MaxIdleConnsPerHost is the keep-alive pool size to the API host. Default 32.
	MaxIdleConnsPerHost int `yaml:"maxIdleConnsPerHost"`
	// IdleConnTimeout closes pooled connections idle this long. Default 90s.
	IdleConnTimeout time.Duration `yaml:"idleConnTimeout"`
	// BatchConcurrency bounds the parallel requests of one PublishBatch (each request
	// carries up to 10 events). Default 4.
	BatchConcurrency int `yaml:"batchConcurrency"`
	// SkipDeliveryCounts stops asking Pusher for info=subscription_count on triggers, for
	// apps where subscription counting is not enabled; delivered_to is then 0.
	SkipDeliveryCounts bool `yaml:"skipDeliveryCounts"`

	// WebhookMaxAge is the replay window of incoming webhooks (POST /pusher/webhooks):
	// one whose time_ms is further than this from now is refused, and so is one
	// already accepted within it. Default 5m (webhookin.DefaultMaxAge); negative turns
	// both checks off.
	WebhookMaxAge time.Duration `yaml:"webhookMaxAge"`
}

// Defaults.
const (
	DefaultCluster                 = "mt1"
	DefaultScheme                  = "https"
	DefaultRequestTimeout          = 5 * time.Second
	DefaultReconnectAttempts       = 3
	DefaultReconnectDelay          = 100 * time.Millisecond
	DefaultMaxReconnectDelay       = 5 * time.Second
	DefaultBackoffMultiplier       = 2.0
	DefaultBreakerFailureThreshold = 5
	DefaultBreakerOpenTimeout      = 10 * time.Second
	DefaultMaxIdleConnsPerHost     = 32
	DefaultIdleConnTimeout         = 90 * time.Second
	DefaultBatchConcurrency        = 4
)

// ErrConfig reports an invalid configuration.
var ErrConfig = errors.New("pusher driver: invalid configuration")

// WithDefaults returns c with zero fields replaced by defaults.
func (c Config) WithDefaults() Config {
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if c.Scheme == "" {
		c.Scheme = DefaultScheme
	}
	c.Scheme = strings.ToLower(c.Scheme)
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.ReconnectAttempts == 0 {
		c.ReconnectAttempts = DefaultReconnectAttempts
	}
	if c.ReconnectDelay == 0 {
		c.ReconnectDelay = DefaultReconnectDelay
	}
	if c.MaxReconnectDelay == 0 {
		c.MaxReconnectDelay = DefaultMaxReconnectDelay
	}
	if c.BackoffMultiplier == 0 {
		c.BackoffMultiplier = DefaultBackoffMultiplier
	}
	if c.BreakerFailureThreshold == 0 {
		c.BreakerFailureThreshold = DefaultBreakerFailureThreshold
	}
	if c.BreakerOpenTimeout == 0 {
		c.BreakerOpenTimeout = DefaultBreakerOpenTimeout
	}
	if c.MaxIdleConnsPerHost == 0 {
		c.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if c.IdleConnTimeout == 0 {
		c.IdleConnTimeout = DefaultIdleConnTimeout
	}
	if c.BatchConcurrency == 0 {
		c.BatchConcurrency = DefaultBatchConcurrency
	}
	return c
}

// Validate reports every problem of c (after defaults) in one error.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
	}
	if c.AppID == "" {
		bad("appId (PUSHER_APP_ID) is required")
	}
	if c.Key == "" {
		bad("key (PUSHER_KEY) is required")
	}
	if c.Secret == "" {
		bad("secret (PUSHER_SECRET) is required")
	}
	if c.Scheme != "http" && c.Scheme != "https" {
		bad("scheme must be http or https, got %q", c.Scheme)
	}
	if strings.Contains(c.Host, "/") {
		bad("host must be host or host:port without scheme or path, got %q", c.Host)
	}
	if c.EncryptionMasterKeyBase64 != "" {
		if _, err := protocol.DecodeMasterKey(c.EncryptionMasterKeyBase64); err != nil {
			bad("encryptionMasterKeyBase64 must be 32 bytes in base64")
		}
	}
	if c.RequestTimeout < 0 {
		bad("requestTimeout must not be negative")
	}
	if c.ReconnectDelay < 0 || c.MaxReconnectDelay < 0 {
		bad("reconnectDelay and maxReconnectDelay must not be negative")
	}
	if c.MaxReconnectDelay < c.ReconnectDelay {
		bad("maxReconnectDelay (%s) must be >= reconnectDelay (%s)", c.MaxReconnectDelay, c.ReconnectDelay)
	}
	if c.BackoffMultiplier < 1 {
		bad("backoffMultiplier must be >= 1, got %g", c.BackoffMultiplier)
	}
	if c.BreakerOpenTimeout < 0 {
		bad("breakerOpenTimeout must not be negative")
	}
	if c.MaxIdleConnsPerHost < 0 || c.BatchConcurrency < 0 || c.IdleConnTimeout < 0 {
		bad("maxIdleConnsPerHost, idleConnTimeout and batchConcurrency must not be negative")
	}
	return errors.Join(errs...)
}
