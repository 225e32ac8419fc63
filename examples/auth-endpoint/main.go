// Command auth-endpoint is the web app's own pusher-js auth endpoint, as a
// Mile Quest web app would run it: pusher-js in the browser POSTs to it, it
// asks pushercm's AuthService over gRPC through the Go client
// (client.AuthorizeChannel, client.AuthenticateUser) with the app's service
// token (scope channels:authorize), and returns what pusher-js expects. It
// reads the same environment as the other examples: PUSHERCM_ADDR,
// PUSHERCM_TOKEN, PUSHERCM_INSECURE. See README.md.
//
//	PUSHERCM_TOKEN=$(pushercm token --dev --sub web-app --scopes channels:authorize --ttl 24h) \
//	  go -C examples run ./auth-endpoint -listen 127.0.0.1:3000
//
// The user is identified by the JWT the browser sends in `Authorization:
// Bearer`; an app that keeps sessions in cookies would look the user's
// token up from the session here instead.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/milequest/pushercm/client"
	"github.com/milequest/pushercm/examples/internal/exampleenv"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:3000", "address to serve the auth endpoints on")
	flag.Parse()
	if os.Getenv("PUSHERCM_TOKEN") == "" {
		slog.Error("PUSHERCM_TOKEN is required: a service token with scope channels:authorize " +
			"(pushercm token --dev --sub web-app --scopes channels:authorize)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := exampleenv.Dial(ctx)
	if err != nil {
		slog.Error("pushercm", "error", err)
		os.Exit(1)
	}
	defer func() { _ = c.Close() }()

	srv := &http.Server{Addr: *listen, Handler: NewHandler(c), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	slog.Info("auth endpoint listening", "addr", *listen, "pushercm", exampleenv.Addr())
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		slog.Error("serve", "error", err)
		os.Exit(1)
	}
}

// Authorizer is what the endpoints need of the client.
type Authorizer interface {
	AuthorizeChannel(ctx context.Context, req client.ChannelAuthRequest) (client.ChannelAuth, error)
	AuthenticateUser(ctx context.Context, req client.UserAuthRequest) (client.UserAuth, error)
}

// NewHandler serves POST /pusher/auth and POST /pusher/user-auth.
func NewHandler(a Authorizer) http.Handler {
	h := &handler{auth: a}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /pusher/auth", h.channelAuth)
	mux.HandleFunc("POST /pusher/user-auth", h.userAuth)
	return mux
}

type handler struct{ auth Authorizer }

func (h *handler) channelAuth(w http.ResponseWriter, r *http.Request) {
	form, userToken, ok := prepare(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	res, err := h.auth.AuthorizeChannel(ctx, client.ChannelAuthRequest{
		SocketID: form.Get("socket_id"), Channel: form.Get("channel_name"), UserToken: userToken,
	})
	if err != nil {
		writeStatus(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res.PusherJS())
}

func (h *handler) userAuth(w http.ResponseWriter, r *http.Request) {
	form, userToken, ok := prepare(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	res, err := h.auth.AuthenticateUser(ctx, client.UserAuthRequest{SocketID: form.Get("socket_id"), UserToken: userToken})
	if err != nil {
		writeStatus(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res.PusherJS())
}

// prepare reads the form (bounded) and the user's bearer token.
func prepare(w http.ResponseWriter, r *http.Request) (url.Values, string, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "malformed form"})
		return nil, "", false
	}
	scheme, userToken, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		userToken = ""
	}
	return r.PostForm, strings.TrimSpace(userToken), true
}

// writeStatus turns pushercm's gRPC status into the HTTP status pusher-js
// reports in pusher:subscription_error, with {"error", "reason"}: for the
// caller's own mistakes (401, 403, 400, 429) "error" is pushercm's message,
// which says why in words ("... for channel private-team-7 (rule
// team-channel): not a member of the team") and holds nothing secret;
// anything else is the app's problem, logged here and answered 502.
func writeStatus(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	code := http.StatusBadGateway
	switch st.Code() {
	case codes.Unauthenticated:
		code = http.StatusUnauthorized
	case codes.PermissionDenied:
		code = http.StatusForbidden
	case codes.InvalidArgument:
		code = http.StatusBadRequest
	case codes.ResourceExhausted:
		code = http.StatusTooManyRequests
	}
	if code == http.StatusBadGateway {
		slog.Error("pushercm AuthService call failed", "code", st.Code().String(), "message", st.Message())
		writeJSON(w, code, map[string]string{"error": "the authorization service is unavailable; try again"})
		return
	}
	writeJSON(w, code, map[string]string{"error": st.Message(), "reason": client.Reason(err)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
