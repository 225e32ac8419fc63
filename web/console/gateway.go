package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
)

//go:embed static
var static embed.FS

// maxRequestBytes bounds a console API request body.
const maxRequestBytes = 64 << 10

// method is one gRPC method the gateway may call.
type method struct {
	full         string
	newReq       func() proto.Message
	newResp      func() proto.Message
	serverStream bool
}

func unary[Req, Resp any, PReq interface {
	*Req
	proto.Message
}, PResp interface {
	*Resp
	proto.Message
}](full string) method {
	return method{
		full:    full,
		newReq:  func() proto.Message { return PReq(new(Req)) },
		newResp: func() proto.Message { return PResp(new(Resp)) },
	}
}

// Methods are the gRPC methods reachable through /console/api/{Service}/{Method}.
var Methods = map[string]method{}

func init() {
	for _, m := range []method{
		unary[pushercmv1.ListConnectionsRequest, pushercmv1.ListConnectionsResponse](pushercmv1.ConnectionService_ListConnections_FullMethodName),
		unary[pushercmv1.GetConnectionRequest, pushercmv1.GetConnectionResponse](pushercmv1.ConnectionService_GetConnection_FullMethodName),
		unary[pushercmv1.DisconnectConnectionRequest, pushercmv1.DisconnectConnectionResponse](pushercmv1.ConnectionService_DisconnectConnection_FullMethodName),
		unary[pushercmv1.TerminateUserConnectionsRequest, pushercmv1.TerminateUserConnectionsResponse](pushercmv1.ConnectionService_TerminateUserConnections_FullMethodName),
		unary[pushercmv1.ListChannelsRequest, pushercmv1.ListChannelsResponse](pushercmv1.ConnectionService_ListChannels_FullMethodName),
		unary[pushercmv1.GetChannelRequest, pushercmv1.GetChannelResponse](pushercmv1.ConnectionService_GetChannel_FullMethodName),
		unary[pushercmv1.ListPresenceMembersRequest, pushercmv1.ListPresenceMembersResponse](pushercmv1.ConnectionService_ListPresenceMembers_FullMethodName),
		unary[pushercmv1.GetRateLimitStatusRequest, pushercmv1.GetRateLimitStatusResponse](pushercmv1.ConnectionService_GetRateLimitStatus_FullMethodName),
		unary[pushercmv1.GetHealthStatusRequest, pushercmv1.GetHealthStatusResponse](pushercmv1.ConnectionService_GetHealthStatus_FullMethodName),
		unary[pushercmv1.GetMetricsRequest, pushercmv1.GetMetricsResponse](pushercmv1.ConnectionService_GetMetrics_FullMethodName),
		unary[pushercmv1.ListNodesRequest, pushercmv1.ListNodesResponse](pushercmv1.ConnectionService_ListNodes_FullMethodName),
		unary[pushercmv1.SendEventRequest, pushercmv1.SendEventResponse](pushercmv1.BroadcastService_SendEvent_FullMethodName),
		{
			full:         pushercmv1.ConnectionService_WatchConnectionEvents_FullMethodName,
			newReq:       func() proto.Message { return new(pushercmv1.WatchConnectionEventsRequest) },
			newResp:      func() proto.Message { return new(pushercmv1.WatchConnectionEventsResponse) },
			serverStream: true,
		},
	} {
		// "/pushercm.v1.ConnectionService/ListConnections" -> "ConnectionService/ListConnections"
		Methods[strings.TrimPrefix(m.full, "/pushercm.v1.")] = m
	}
}

// Config configures the console.
type Config struct {
	// Conn reaches the process's own gRPC server (the same grpc.Server
	// the gRPC listener serves, so the same interceptors run).
	Conn grpc.ClientConnInterface
}

// Register adds the console's page and API with handle (the ops
// listener's route registration).
func Register(cfg Config, handle func(pattern string, h http.Handler)) error {
	if cfg.Conn == nil {
		return errors.New("console: no gRPC connection")
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return err
	}
	files := http.StripPrefix("/console/", http.FileServerFS(sub))
	handle("GET /console/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		// The console shows tokens' results: never frame it.
		w.Header().Set("X-Frame-Options", "DENY")
		files.ServeHTTP(w, r)
	}))
	handle("POST /console/api/{service}/{method}", &gateway{conn: cfg.Conn})
	return nil
}

type gateway struct {
	conn grpc.ClientConnInterface
}

var (
	unmarshal = protojson.UnmarshalOptions{DiscardUnknown: false}
	marshal   = protojson.MarshalOptions{EmitUnpopulated: true}
)

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m, ok := Methods[r.PathValue("service")+"/"+r.PathValue("method")]
	if !ok {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "", "no such console method")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "INVALID_ARGUMENT", "", "request body too large")
		return
	}
	req := m.newReq()
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := unmarshal.Unmarshal(body, req); err != nil {
			writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "", "request is not valid JSON for "+m.full)
			return
		}
	}
	ctx := r.Context()
	if auth := r.Header.Get("Authorization"); auth != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", auth)
	}
	if m.serverStream {
		g.stream(ctx, w, m, req)
		return
	}
	resp := m.newResp()
	if err := g.conn.Invoke(ctx, m.full, req, resp); err != nil {
		writeStatus(w, err)
		return
	}
	b, err := marshal.Marshal(resp)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "INTERNAL", "", "could not encode the answer")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b) // the client went away; nothing to do
}

// stream answers a server-streaming call as newline-delimited JSON, one
// response message a line, flushed as each arrives, until the client goes
// away or the call ends (an error ends the body with an {"error": ...}
// line).
func (g *gateway) stream(ctx context.Context, w http.ResponseWriter, m method, req proto.Message) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := g.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, m.full)
	if err != nil {
		writeStatus(w, err)
		return
	}
	if err := s.SendMsg(req); err != nil {
		writeStatus(w, err)
		return
	}
	if err := s.CloseSend(); err != nil {
		writeStatus(w, err)
		return
	}
	// The server sends headers once it watches; a refused call ends with
	// its status instead.
	if _, err := s.Header(); err != nil {
		writeStatus(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	for {
		resp := m.newResp()
		if err := s.RecvMsg(resp); err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				b, _ := json.Marshal(map[string]any{"error": statusBody(err)})
				_, _ = w.Write(append(b, '\n'))
			}
			return
		}
		b, err := marshal.Marshal(resp)
		if err != nil {
			return
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

type errorBody struct {
	Code    string `json:"code"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
}

func statusBody(err error) errorBody {
	st := status.Convert(err)
	b := errorBody{Code: codeName(st.Code()), Message: st.Message()}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			b.Reason = info.GetReason()
		}
	}
	return b
}

func codeName(c codes.Code) string {
	// codes.Code's String is "Unauthenticated"; the gRPC docs and the
	// error table use UNAUTHENTICATED.
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// httpStatus is the usual HTTP equivalent of a gRPC code (as
// grpc-gateway maps them).
func httpStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.FailedPrecondition:
		return http.StatusPreconditionFailed
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Canceled:
		return 499
	}
	return http.StatusInternalServerError
}

func writeStatus(w http.ResponseWriter, err error) {
	b := statusBody(err)
	writeError(w, httpStatus(status.Code(err)), b.Code, b.Reason, b.Message)
}

func writeError(w http.ResponseWriter, httpCode int, code, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(httpCode)
	_ = json.NewEncoder(w).Encode(map[string]errorBody{"error": {Code: code, Reason: reason, Message: msg}})
}
