package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/milequest/pushercm/errcode"
	"github.com/milequest/pushercm/protocol"
)

// Message is one publish request to the Backend.
type Message struct {
	Channels        []string
	Event           string
	Data            string
	ExcludeSocketID string
}

// CachedEvent is the last event kept by a cache channel.
type CachedEvent struct {
	Event string
	Data  string
	// TTL is the time left before the entry expires.
	TTL time.Duration
}

// ChannelInfo is the state of one channel.
type ChannelInfo struct {
	Name              string
	Occupied          bool
	SubscriptionCount int
	UserCount         int // distinct presence users; 0 for other kinds
	Cache             *CachedEvent
}

// Member is one distinct user of a presence channel.
type Member struct {
	UserID   string
	UserInfo json.RawMessage
}

// Backend is what the HTTP API needs from the realtime server. The edge adapts its
// in-process API to it. An error's errcode.Code chooses the status (the edge's own
// errors carry one; a backend without its own may wrap this package's sentinels);
// an error without a code answers 500.
type Backend interface {
	// Publish writes an event to the subscribers of every channel (none of which is a
	// #server-to-user- channel), except ExcludeSocketID.
	Publish(ctx context.Context, m Message) (delivered int, err error)
	// SendToUser writes an event to every connection signed in as userID.
	SendToUser(ctx context.Context, userID, event, data string) (delivered int, err error)
	// Channels lists occupied channels whose name starts with prefix, sorted by name.
	Channels(ctx context.Context, prefix string) ([]ChannelInfo, error)
	// Channel describes one channel; an unoccupied one may be returned with Occupied
	// false or as ErrNotFound.
	Channel(ctx context.Context, name string) (ChannelInfo, error)
	// PresenceMembers lists the distinct users of a presence channel; an empty channel
	// may answer ErrNotFound.
	PresenceMembers(ctx context.Context, channel string) ([]Member, error)
	// TerminateUser closes every connection signed in as userID.
	TerminateUser(ctx context.Context, userID string) (closed int, err error)
}

// Errors a Backend may return (wrapped) to choose the HTTP status; any error with the
// same errcode.Code does the same.
var (
	ErrNotFound    = errcode.New(errcode.NotFound, "httpapi: not found")            // empty result (channel unoccupied)
	ErrInvalid     = errcode.New(errcode.InvalidArgument, "httpapi: invalid")       // 400
	ErrTooLarge    = errcode.New(errcode.LimitExceeded, "httpapi: too large")       // 413
	ErrForbidden   = errcode.New(errcode.AuthorizationFailed, "httpapi: forbidden") // 403
	ErrUnavailable = errcode.New(errcode.ConnectionFailed, "httpapi: unavailable")  // 503
	ErrLimited     = errcode.New(errcode.RateLimited, "httpapi: rate limited")      // 429
	errConfig      = errors.New("httpapi: invalid config")                          // New panics with it
)

// Op classifies a request for the Limiter.
type Op int

const (
	// OpPublish is POST events / batch_events.
	OpPublish Op = iota + 1
	// OpRead is the GET endpoints.
	OpRead
	// OpTerminate is POST terminate_connections.
	OpTerminate
)

func (o Op) String() string {
	switch o {
	case OpPublish:
		return "publish"
	case OpRead:
		return "read"
	case OpTerminate:
		return "terminate"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// LimitRequest describes an authenticated request to the Limiter.
type LimitRequest struct {
	AppID string
	Op    Op
	// Events is the number of events a publish carries (1 for events, the batch size
	// for batch_events); 0 for other operations.
	Events int
}

// Limiter decides whether an authenticated request may proceed. When allowed is false
// the request is answered 429 with Retry-After rounded up to whole seconds.
type Limiter interface {
	Allow(ctx context.Context, r LimitRequest) (allowed bool, retryAfter time.Duration)
}

// Config configures the handler. Zero values take the documented defaults.
type Config struct {
	// AppID, Key and Secret identify the app. All required.
	AppID, Key, Secret string
	// Limits bounds triggers; zero fields are Pusher's defaults (10 KB data, 100
	// channels per trigger, 10 events per batch, 200-char event names, 164-char
	// channel names, 128-char user ids).
	Limits protocol.Limits
	// MaxRequestBytes bounds a request body; larger bodies answer 413. Default 1 MiB,
	// room for a full batch of 10 KB events even with every byte JSON-escaped.
	MaxRequestBytes int64
	// TimestampWindow is the allowed distance between auth_timestamp and the server
	// clock. Default 600 s (Pusher); negative disables the check (tests only).
	TimestampWindow time.Duration
	// Disabled answers every authenticated request with 403, as Pusher does for a
	// disabled app.
	Disabled bool
	// Limiter, when set, can refuse authenticated requests with 429. Nil = unlimited.
	Limiter Limiter
	// Now is the clock for the timestamp check. Default time.Now.
	Now func() time.Time
	// Logger gets backend failures (Error) and rejected requests (Debug). Default: discard.
	Logger *slog.Logger
}

// DefaultMaxRequestBytes is the default Config.MaxRequestBytes.
const DefaultMaxRequestBytes = 1 << 20

// Validate reports configuration errors.
func (c Config) Validate() error {
	if c.AppID == "" || c.Key == "" || c.Secret == "" {
		return fmt.Errorf("%w: app id, key and secret are required", errConfig)
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	return nil
}

type handler struct {
	cfg    Config
	limits protocol.Limits
	b      Backend
}

// New returns the HTTP API handler. It panics if cfg is invalid (missing app
// credentials) or b is nil: both are wiring errors; call cfg.Validate first to get an
// error instead.
func New(cfg Config, b Backend) http.Handler {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if b == nil {
		panic(fmt.Errorf("%w: nil Backend", errConfig))
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.TimestampWindow == 0 {
		cfg.TimestampWindow = protocol.DefaultTimestampWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &handler{cfg: cfg, limits: cfg.Limits.WithDefaults(), b: b}
}

// apiError is an error answer.
type apiError struct {
	status     int
	msg        string
	retryAfter int // seconds, for 429
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.status, e.msg) }

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"internal error","code":500}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	// With its length the answer goes out as one plain body, not chunked.
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeError(w http.ResponseWriter, e *apiError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	writeJSON(w, e.status, struct {
		Error string `json:"error"`
		Code  int    `json:"code"`
	}{e.msg, e.status})
}

// backendError maps a Backend error to an answer by its code: the one table of this
// API. A code not listed here answers 500.
func (h *handler) backendError(op string, err error) *apiError {
	switch errcode.Of(err) {
	case errcode.InvalidArgument:
		return errorf(http.StatusBadRequest, "%v", err)
	case errcode.LimitExceeded:
		return errorf(http.StatusRequestEntityTooLarge, "%v", err)
	case errcode.AuthorizationFailed:
		return errorf(http.StatusForbidden, "%v", err)
	case errcode.RateLimited:
		e := errorf(http.StatusTooManyRequests, "%v", err)
		e.retryAfter = 1
		return e
	case errcode.ConnectionFailed:
		return errorf(http.StatusServiceUnavailable, "service unavailable")
	case errcode.NotFound:
		return errorf(http.StatusNotFound, "%v", err)
	}
	// Internal causes are logged, never sent.
	h.cfg.Logger.Error("http api backend failure", "op", op, "err", err)
	return errorf(http.StatusInternalServerError, "internal error")
}

var socketIDPattern = regexp.MustCompile(`\A\d+\.\d+\z`)
