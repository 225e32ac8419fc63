package httpapi

import (
	"errors"
	"io"
	"math"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/milequest/pushercm/protocol"
)

// route is a parsed /apps/{app_id}/... path.
type route struct {
	appID   string
	kind    routeKind
	channel string // channels/{channel}[/users]
	userID  string // users/{user_id}/terminate_connections
}

type routeKind int

const (
	routeUnknown routeKind = iota
	routeEvents
	routeBatch
	routeChannels
	routeChannel
	routeUsers
	routeTerminate
)

func (k routeKind) method() string {
	switch k {
	case routeEvents, routeBatch, routeTerminate:
		return http.MethodPost
	}
	return http.MethodGet
}

func (k routeKind) op() Op {
	switch k {
	case routeEvents, routeBatch:
		return OpPublish
	case routeTerminate:
		return OpTerminate
	}
	return OpRead
}

// parseRoute splits the decoded path. Channel names cannot contain '/', so splitting is
// exact; anything else is an unknown route.
func parseRoute(path string) route {
	rest, ok := strings.CutPrefix(path, "/apps/")
	if !ok {
		return route{}
	}
	parts := strings.Split(rest, "/")
	r := route{appID: parts[0]}
	if r.appID == "" {
		return route{}
	}
	switch {
	case len(parts) == 2 && parts[1] == "events":
		r.kind = routeEvents
	case len(parts) == 2 && parts[1] == "batch_events":
		r.kind = routeBatch
	case len(parts) == 2 && parts[1] == "channels":
		r.kind = routeChannels
	case len(parts) == 3 && parts[1] == "channels" && parts[2] != "":
		r.kind, r.channel = routeChannel, parts[2]
	case len(parts) == 4 && parts[1] == "channels" && parts[2] != "" && parts[3] == "users":
		r.kind, r.channel = routeUsers, parts[2]
	case len(parts) == 4 && parts[1] == "users" && parts[2] != "" && parts[3] == "terminate_connections":
		r.kind, r.userID = routeTerminate, parts[2]
	}
	return r
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		// A Backend panic must still answer JSON (the SDKs decode every body); the
		// stack is logged, never sent.
		if p := recover(); p != nil {
			if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(p)
			}
			h.cfg.Logger.Error("http api panic", "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			writeError(w, errorf(http.StatusInternalServerError, "internal error"))
		}
	}()
	rt := parseRoute(r.URL.Path)
	if rt.kind == routeUnknown {
		writeError(w, errorf(http.StatusNotFound, "not found"))
		return
	}
	if rt.appID != h.cfg.AppID {
		writeError(w, errorf(http.StatusNotFound, "unknown app id"))
		return
	}
	if m := rt.kind.method(); r.Method != m {
		w.Header().Set("Allow", m)
		writeError(w, errorf(http.StatusMethodNotAllowed, "method not allowed"))
		return
	}
	body, aerr := h.readBody(w, r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	params, aerr := h.authenticate(r, body)
	if aerr != nil {
		h.cfg.Logger.Debug("http api request rejected", "path", r.URL.Path, "status", aerr.status, "reason", aerr.msg)
		writeError(w, aerr)
		return
	}
	if h.cfg.Disabled {
		writeError(w, errorf(http.StatusForbidden, "application is disabled"))
		return
	}

	var (
		resp any
		err  *apiError
	)
	switch rt.kind {
	case routeEvents:
		resp, err = h.events(r, body)
	case routeBatch:
		resp, err = h.batchEvents(r, body)
	case routeChannels:
		resp, err = h.channels(r, params)
	case routeChannel:
		resp, err = h.channel(r, rt.channel, params)
	case routeUsers:
		resp, err = h.users(r, rt.channel)
	case routeTerminate:
		resp, err = h.terminate(r, rt.userID)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	if r.ContentLength > h.cfg.MaxRequestBytes {
		return nil, errorf(http.StatusRequestEntityTooLarge, "request body over %d bytes", h.cfg.MaxRequestBytes)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxRequestBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, errorf(http.StatusRequestEntityTooLarge, "request body over %d bytes", h.cfg.MaxRequestBytes)
		}
		return nil, errorf(http.StatusBadRequest, "cannot read request body")
	}
	return body, nil
}

// authenticate verifies the request signature (§5.2) and, when configured, asks the
// limiter. It returns the query parameters without auth_signature.
func (h *handler) authenticate(r *http.Request, body []byte) (map[string]string, *apiError) {
	check := protocol.RequestCheck{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Body:     body,
		Secret: func(key string) (string, bool) {
			// The key is public, so an ordinary comparison leaks nothing.
			return h.cfg.Secret, key == h.cfg.Key
		},
		Now:    h.cfg.Now(),
		Window: h.cfg.TimestampWindow,
	}
	params, _, err := protocol.VerifyRequest(check)
	if errors.Is(err, protocol.ErrSignature) {
		// A client may have signed the escaped form of the path instead.
		if esc := r.URL.EscapedPath(); esc != r.URL.Path {
			check.Path = esc
			params, _, err = protocol.VerifyRequest(check)
		}
	}
	if err != nil {
		return nil, authError(err)
	}
	if h.cfg.Limiter != nil {
		rt := parseRoute(r.URL.Path)
		lr := LimitRequest{AppID: h.cfg.AppID, Op: rt.kind.op()}
		if lr.Op == OpPublish {
			lr.Events = countEvents(rt.kind, body)
		}
		if ok, retry := h.cfg.Limiter.Allow(r.Context(), lr); !ok {
			return nil, rateLimited(retry)
		}
	}
	return params, nil
}

func authError(err error) *apiError {
	switch {
	case errors.Is(err, protocol.ErrAuthTimestamp):
		// Not secret, and it tells the caller its clock is off.
		return errorf(http.StatusUnauthorized, "timestamp expired: %v", err)
	case errors.Is(err, protocol.ErrBodyMD5):
		return errorf(http.StatusUnauthorized, "body_md5 does not match the body")
	case errors.Is(err, protocol.ErrAuthVersion):
		return errorf(http.StatusUnauthorized, "unsupported auth_version")
	case errors.Is(err, protocol.ErrAuthMissing):
		return errorf(http.StatusUnauthorized, "missing authentication parameters")
	case errors.Is(err, protocol.ErrAuthKey):
		return errorf(http.StatusUnauthorized, "unknown auth_key")
	}
	return errorf(http.StatusUnauthorized, "invalid signature")
}

func rateLimited(retry time.Duration) *apiError {
	secs := max(int(math.Ceil(retry.Seconds())), 1)
	e := errorf(http.StatusTooManyRequests, "rate limit exceeded")
	e.retryAfter = secs
	return e
}
