package httpauth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/authz/authsvc"
	"github.com/milequest/pushercm/errcode"
	"github.com/milequest/pushercm/protocol"
)

// Paths pusher-js calls by default.
const (
	ChannelAuthPath = "/pusher/auth"
	UserAuthPath    = "/pusher/user-auth"
)

// Reasons in refusal bodies: the product's error codes (DESIGN.md §3), and
// one of this endpoint's own for the CORS check.
const (
	ReasonAuthenticationFailed = string(errcode.AuthenticationFailed)
	ReasonAuthorizationFailed  = string(errcode.AuthorizationFailed)
	ReasonInvalidArgument      = string(errcode.InvalidArgument)
	ReasonOriginNotAllowed     = "ORIGIN_NOT_ALLOWED"
	ReasonInternal             = string(errcode.Internal)
)

// DefaultMaxBodyBytes bounds a request body: a socket id, a channel name
// (<= 200 characters), a user_info of a few KB and some params, URL-encoded.
const DefaultMaxBodyBytes = 16 << 10

// Service decides and signs; *authsvc.Service satisfies it.
type Service interface {
	AuthorizeChannel(ctx context.Context, transport, token string, req authz.ChannelRequest) (authz.ChannelAuth, error)
	AuthenticateUser(ctx context.Context, transport, token string, req authz.UserRequest) (authsvc.UserResult, error)
}

// Config configures the endpoints.
type Config struct {
	// AllowedOrigins for CORS: exact origins ("https://app.example.com"),
	// "*", or "*.example.com" suffixes, as protocol.OriginAllowed reads them.
	// Empty: any origin.
	AllowedOrigins []string
	// MaxBodyBytes bounds a request body. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger gets unexpected failures. Default slog.Default().
	Logger *slog.Logger
}

// Handler serves the two endpoints.
type Handler struct {
	svc Service
	cfg Config
	log *slog.Logger
}

// New returns the endpoints over svc.
func New(svc Service, cfg Config) (*Handler, error) {
	if svc == nil {
		return nil, errors.New("httpauth: service is required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, o := range cfg.AllowedOrigins {
		if o == "" {
			return nil, errors.New("httpauth: empty allowed origin")
		}
	}
	return &Handler{svc: svc, cfg: cfg, log: cfg.Logger}, nil
}

// Register adds both endpoints with handle (for example a ServeMux's Handle).
func (h *Handler) Register(handle func(pattern string, handler http.Handler)) {
	handle(ChannelAuthPath, h.ChannelAuth())
	handle(UserAuthPath, h.UserAuth())
}

// MaxBodyBytes is the request body limit of both endpoints, for a listener
// that refuses longer bodies before reading them.
func (h *Handler) MaxBodyBytes() int64 { return h.cfg.MaxBodyBytes }

// channelAuthResponse is what pusher-js's ChannelAuthorizer expects.
type channelAuthResponse struct {
	Auth         string `json:"auth"`
	ChannelData  string `json:"channel_data,omitempty"`
	SharedSecret string `json:"shared_secret,omitempty"`
}

// userAuthResponse is what pusher-js's UserAuthenticator expects.
type userAuthResponse struct {
	Auth     string `json:"auth"`
	UserData string `json:"user_data"`
}

// ChannelAuth serves POST /pusher/auth.
func (h *Handler) ChannelAuth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, f, ok := h.prepare(w, r, true)
		if !ok {
			return
		}
		out, err := h.svc.AuthorizeChannel(r.Context(), authsvc.TransportHTTP, token, authz.ChannelRequest{
			SocketID: f.SocketID, Channel: f.Channel, BrowserUserInfo: f.UserInfo,
		})
		if err != nil {
			h.refuse(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, channelAuthResponse{Auth: out.Auth, ChannelData: out.ChannelData, SharedSecret: out.SharedSecret})
	})
}

// UserAuth serves POST /pusher/user-auth.
func (h *Handler) UserAuth() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, f, ok := h.prepare(w, r, false)
		if !ok {
			return
		}
		out, err := h.svc.AuthenticateUser(r.Context(), authsvc.TransportHTTP, token, authz.UserRequest{
			SocketID: f.SocketID, BrowserUserInfo: f.UserInfo,
		})
		if err != nil {
			h.refuse(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, userAuthResponse{Auth: out.Auth, UserData: out.UserData})
	})
}

// prepare handles CORS, the method, the content type, the body and the
// bearer token. When it returns false it has answered.
func (h *Handler) prepare(w http.ResponseWriter, r *http.Request, needChannel bool) (string, authForm, bool) {
	w.Header().Set("Cache-Control", "no-store")
	if !h.cors(w, r) {
		return "", authForm{}, false
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		writeError(w, http.StatusMethodNotAllowed, ReasonInvalidArgument, "use POST", "")
		return "", authForm{}, false
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		writeError(w, http.StatusUnsupportedMediaType, ReasonInvalidArgument, "body must be application/x-www-form-urlencoded", "")
		return "", authForm{}, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, ReasonInvalidArgument, "body larger than "+strconv.FormatInt(h.cfg.MaxBodyBytes, 10)+" bytes", "")
		} else {
			writeError(w, http.StatusBadRequest, ReasonInvalidArgument, "could not read the body", "")
		}
		return "", authForm{}, false
	}
	f, err := parseForm(body, needChannel)
	if err != nil {
		h.refuse(w, r, err)
		return "", authForm{}, false
	}
	// A missing Authorization header is no principal: public channels pass,
	// everything else is refused by the Authorizer with 401.
	var token string
	if hdr := r.Header.Get("Authorization"); hdr != "" {
		if token, err = authz.ParseBearer(hdr); err != nil {
			h.refuse(w, r, err)
			return "", authForm{}, false
		}
	}
	return token, f, true
}

// refuse answers an error from the form parser or the service, by its code.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, err error) {
	var arg *authz.ArgumentError
	switch code := errcode.Of(err); {
	case code == errcode.InvalidArgument && errors.As(err, &arg):
		// ArgumentError messages name the field and the rule broken; they
		// never quote the value.
		writeError(w, http.StatusBadRequest, ReasonInvalidArgument, arg.Error(), arg.Field)
	case code == errcode.AuthenticationFailed:
		challenge := `Bearer realm="pushercm"`
		if !errors.Is(err, authz.ErrTokenMissing) {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		writeError(w, http.StatusUnauthorized, ReasonAuthenticationFailed, tokenMessage(err), "")
	case code == errcode.AuthorizationFailed && errors.Is(err, authz.ErrEncryptionUnavailable):
		writeError(w, http.StatusForbidden, ReasonAuthorizationFailed, "encrypted channels are not enabled on this server", "")
	case code == errcode.AuthorizationFailed:
		// The rule's name and reason stay server-side (logs, metrics):
		// the browser learns only that it may not join.
		writeError(w, http.StatusForbidden, ReasonAuthorizationFailed, "not allowed", "")
	default:
		h.log.LogAttrs(r.Context(), slog.LevelError, "pusher auth endpoint failed", slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		writeError(w, http.StatusInternalServerError, ReasonInternal, "internal error", "")
	}
}

// tokenMessage is the token error's kind, without its detail (which may
// mention key ids).
func tokenMessage(err error) string {
	var te *authz.TokenError
	if errors.As(err, &te) && te.Kind != nil {
		return te.Kind.Error()
	}
	return "token invalid"
}

type errorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
	Field  string `json:"field,omitempty"`
}

func writeError(w http.ResponseWriter, code int, reason, msg, field string) {
	writeJSON(w, code, errorBody{Error: msg, Reason: reason, Field: field})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only plain strings are encoded; cannot happen
		code, b = http.StatusInternalServerError, []byte(`{"error":"internal error","reason":"INTERNAL"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// cors applies the origin policy. It returns false when it has answered
// (a preflight, or a refused origin).
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if len(h.cfg.AllowedOrigins) > 0 {
		// The answer depends on Origin whenever a list is configured.
		w.Header().Add("Vary", "Origin")
	}
	if origin == "" {
		// Not a CORS request (same-origin without Origin, or not a browser).
		if r.Method == http.MethodOptions {
			w.Header().Set("Allow", "POST, OPTIONS")
			w.WriteHeader(http.StatusNoContent)
			return false
		}
		return true
	}
	if !protocol.OriginAllowed(h.cfg.AllowedOrigins, origin) {
		writeError(w, http.StatusForbidden, ReasonOriginNotAllowed, "origin not allowed", "")
		return false
	}
	if h.anyOrigin() {
		w.Header().Set("Access-Control-Allow-Origin", "*")
	} else {
		w.Header().Set("Access-Control-Allow-Origin", origin)
	}
	if r.Method != http.MethodOptions {
		return true
	}
	// Preflight.
	w.Header().Add("Vary", "Access-Control-Request-Method")
	w.Header().Add("Vary", "Access-Control-Request-Headers")
	if m := r.Header.Get("Access-Control-Request-Method"); m != http.MethodPost {
		writeError(w, http.StatusForbidden, ReasonInvalidArgument, "only POST is allowed", "")
		return false
	}
	allowed, ok := preflightHeaders(r.Header.Values("Access-Control-Request-Headers"))
	if !ok {
		writeError(w, http.StatusForbidden, ReasonInvalidArgument, "malformed Access-Control-Request-Headers", "")
		return false
	}
	w.Header().Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	w.Header().Set("Access-Control-Allow-Headers", allowed)
	w.Header().Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return false
}

func (h *Handler) anyOrigin() bool {
	if len(h.cfg.AllowedOrigins) == 0 {
		return true
	}
	for _, o := range h.cfg.AllowedOrigins {
		if o == "*" {
			return true
		}
	}
	return false
}

// maxPreflightHeaders bounds the headers a preflight may ask for.
const maxPreflightHeaders = 16

// preflightHeaders returns the Access-Control-Allow-Headers value: the
// requested headers (pusher-js `headers` such as X-CSRF-Token) if each is a
// well-formed header name, plus Authorization and Content-Type.
func preflightHeaders(req []string) (string, bool) {
	out := []string{"Authorization", "Content-Type"}
	n := 0
	for _, line := range req {
		for _, name := range strings.Split(line, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if n++; n > maxPreflightHeaders || !validHeaderName(name) {
				return "", false
			}
			switch strings.ToLower(name) {
			case "authorization", "content-type":
				continue
			}
			out = append(out, name)
		}
	}
	return strings.Join(out, ", "), true
}

// validHeaderName reports whether s is an RFC 9110 token of sane length.
func validHeaderName(s string) bool {
	if len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
