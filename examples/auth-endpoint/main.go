// Command auth-endpoint is the web app's own pusher-js auth endpoint, as a
// Mile Quest web app would run it: pusher-js in the browser POSTs to it, it
// forwards the request to pushercm's AuthService over gRPC with the app's
// service token (scope channels:authorize), and returns what pusher-js
// expects. See README.md for the client options.
//
//	PUSHERCM_GRPC_ADDR=127.0.0.1:50051 \
//	PUSHERCM_SERVICE_TOKEN=$(pushercm token --dev --sub web-app --scopes channels:authorize --ttl 24h) \
//	go run ./examples/auth-endpoint -listen 127.0.0.1:3000
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

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:3000", "address to serve the auth endpoints on")
	addr := flag.String("grpc", envOr("PUSHERCM_GRPC_ADDR", "127.0.0.1:50051"), "pushercm gRPC address")
	flag.Parse()
	token := os.Getenv("PUSHERCM_SERVICE_TOKEN")
	if token == "" {
		slog.Error("PUSHERCM_SERVICE_TOKEN is required (a token with scope channels:authorize)")
		os.Exit(2)
	}
	// Plaintext gRPC is for a pushercm on the same host or private network;
	// use grpc.WithTransportCredentials(credentials.NewTLS(...)) otherwise,
	// since the service token travels with every call.
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		slog.Error("grpc client", "error", err)
		os.Exit(1)
	}
	defer func() { _ = conn.Close() }()

	srv := &http.Server{
		Addr:              *listen,
		Handler:           NewHandler(pushercmv1.NewAuthServiceClient(conn), token),
		ReadHeaderTimeout: 5 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	slog.Info("auth endpoint listening", "addr", *listen, "pushercm", *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		slog.Error("serve", "error", err)
		os.Exit(1)
	}
}

// NewHandler serves POST /pusher/auth and POST /pusher/user-auth by calling
// AuthService with serviceToken.
func NewHandler(client pushercmv1.AuthServiceClient, serviceToken string) http.Handler {
	h := &handler{client: client, serviceToken: serviceToken}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /pusher/auth", h.channelAuth)
	mux.HandleFunc("POST /pusher/user-auth", h.userAuth)
	return mux
}

type handler struct {
	client       pushercmv1.AuthServiceClient
	serviceToken string
}

func (h *handler) channelAuth(w http.ResponseWriter, r *http.Request) {
	form, userToken, ok := prepare(w, r)
	if !ok {
		return
	}
	ctx, cancel := h.callContext(r)
	defer cancel()
	resp, err := h.client.AuthorizeChannel(ctx, &pushercmv1.AuthorizeChannelRequest{
		SocketId:    form.Get("socket_id"),
		ChannelName: form.Get("channel_name"),
		Token:       userToken,
	})
	if err != nil {
		writeStatus(w, err)
		return
	}
	// Exactly what pusher-js reads: auth, plus channel_data for presence and
	// shared_secret for encrypted channels.
	out := map[string]string{"auth": resp.GetAuth()}
	if resp.GetChannelData() != "" {
		out["channel_data"] = resp.GetChannelData()
	}
	if resp.GetSharedSecret() != "" {
		out["shared_secret"] = resp.GetSharedSecret()
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) userAuth(w http.ResponseWriter, r *http.Request) {
	form, userToken, ok := prepare(w, r)
	if !ok {
		return
	}
	ctx, cancel := h.callContext(r)
	defer cancel()
	resp, err := h.client.AuthenticateUser(ctx, &pushercmv1.AuthenticateUserRequest{
		SocketId: form.Get("socket_id"),
		Token:    userToken,
	})
	if err != nil {
		writeStatus(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"auth": resp.GetAuth(), "user_data": resp.GetUserData()})
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

// callContext carries the service token to pushercm. The timeout bounds the
// wait: pusher-js would otherwise hang the subscription until its own.
func (h *handler) callContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+h.serviceToken), cancel
}

// writeStatus turns pushercm's gRPC status into the HTTP status pusher-js
// reports in pusher:subscription_error. Messages are not forwarded: the
// browser learns the class of failure, the app's logs get the detail.
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
	}
	writeJSON(w, code, map[string]string{"error": strings.ToLower(strings.ReplaceAll(st.Code().String(), "_", " "))})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
