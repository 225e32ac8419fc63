package telemetry

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/rpcconv"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// NewServerHandler returns otelgrpc's server stats handler, for
// OTEL_SEMCONV_STABILITY_OPT_IN=rpc/old or rpc/dup, the conventions it
// implements and ServerCalls does not (NewServerCalls is nil then).
func NewServerHandler(tp trace.TracerProvider, mp metric.MeterProvider) stats.Handler {
	return otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithMeterProvider(mp))
}

// ServerCalls traces and times the server's calls as otelgrpc's stats
// handler does (the same scope, span names, kinds, attributes, statuses
// and rpc.server.call.duration with its attributes), called from the
// server's outermost interceptor instead of as a stats handler: a server
// with a stats handler pays on every call for grpc-go's own stats work (a
// copy of the incoming metadata, the peer, an event per header and
// message, a copy of the response headers), about a sixth of a publish
// call's CPU, whatever the handler does with it.
//
// What interceptors do not see is not traced or timed: calls to a method
// the server does not have, and requests that do not decode (both end
// inside grpc-go before any interceptor). The duration runs from the
// interceptor's start, after the request is decoded, to the handler's
// return, before the response is written.
//
// otelgrpc builds each call's span options and attribute slices afresh,
// copies the whole incoming metadata to read traceparent, and hashes the
// metric attribute set at every call's end. Here the span options and, per
// status code, the metric attribute set and its record option are built
// once per method (for up to maxMethods distinct method names; later ones
// are built per call, so a client sending made-up method names cannot grow
// memory), and the propagators read the incoming metadata in place.
type ServerCalls struct {
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	duration metric.Float64Histogram
	idsOnly  bool

	methods sync.Map // full method name -> *methodInfo
	cached  atomic.Int32
}

// NewServerCalls returns the interceptors' tracing and timing, or nil when
// OTEL_SEMCONV_STABILITY_OPT_IN asks for otelgrpc's rpc/old or rpc/dup
// conventions: then install NewServerHandler as a stats handler instead.
// idsOnly says tp never samples (Providers.IDsOnly): each call's span
// context is then made here, as the SDK would make it for a span it does
// not sample (the caller's trace id and trace state, a new span id, not
// sampled), without starting a span.
func NewServerCalls(tp trace.TracerProvider, mp metric.MeterProvider, idsOnly bool) *ServerCalls {
	if legacyRPCSemconv() {
		return nil
	}
	c := newServerCalls(tp, mp)
	c.idsOnly = idsOnly
	return c
}

// Begin starts the call's span, a child of the trace context the caller
// sent; the returned context carries it.
func (c *ServerCalls) Begin(ctx context.Context, fullMethod string) context.Context {
	ctx = c.prop.Extract(ctx, incomingCarrier{ctx})
	if c.idsOnly {
		parent := trace.SpanContextFromContext(ctx)
		cfg := trace.SpanContextConfig{SpanID: newSpanID(), TraceFlags: parent.TraceFlags() &^ trace.FlagsSampled}
		if parent.IsValid() {
			cfg.TraceID, cfg.TraceState = parent.TraceID(), parent.TraceState()
		} else {
			cfg.TraceID = newTraceID()
		}
		return trace.ContextWithSpanContext(ctx, trace.NewSpanContext(cfg))
	}
	m := c.method(fullMethod)
	ctx, span := c.tracer.Start(ctx, m.name, m.spanOpts...)
	if span.IsRecording() {
		if p, ok := peer.FromContext(ctx); ok && p.LocalAddr != nil {
			span.SetAttributes(serverAddrAttrs(p.LocalAddr.String())...)
		}
	}
	return ctx
}

// End ends the span of ctx (from Begin) with err's status and records the
// call's duration since begin.
func (c *ServerCalls) End(ctx context.Context, fullMethod string, begin time.Time, err error) {
	code := codes.OK
	var st *status.Status
	if err != nil {
		st, _ = status.FromError(err)
		code = st.Code()
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		if st != nil {
			if serverError(code) {
				span.SetStatus(otelcodes.Error, st.Message())
			} else {
				span.SetStatus(otelcodes.Unset, "")
			}
		}
		span.SetAttributes(semconv.RPCResponseStatusCode(canonicalCode(code)))
		span.End()
	}
	if c.duration == nil || !c.duration.Enabled(ctx) {
		return
	}
	c.duration.Record(ctx, float64(time.Since(begin))/float64(time.Second), c.method(fullMethod).record(code)...)
}

// newTraceID and newSpanID are random non-zero ids, as the SDK's default
// generator makes them (without its lock).
func newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:8], rand.Uint64())
		binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

func newServerCalls(tp trace.TracerProvider, mp metric.MeterProvider) *ServerCalls {
	h := &ServerCalls{
		tracer: tp.Tracer(otelgrpc.ScopeName, trace.WithInstrumentationVersion(otelgrpc.Version)),
		prop:   otel.GetTextMapPropagator(),
	}
	meter := mp.Meter(otelgrpc.ScopeName,
		metric.WithInstrumentationVersion(otelgrpc.Version), metric.WithSchemaURL(semconv.SchemaURL))
	// The boundaries otelgrpc gives the instrument.
	dur, err := rpcconv.NewServerCallDuration(meter, metric.WithExplicitBucketBoundaries(
		0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10))
	if err != nil {
		otel.Handle(err)
	}
	h.duration = dur.Inst()
	return h
}

// legacyRPCSemconv reports whether OTEL_SEMCONV_STABILITY_OPT_IN selects
// otelgrpc's rpc/old or rpc/dup conventions (otelgrpc's own reading of it).
func legacyRPCSemconv() bool {
	for p := range strings.SplitSeq(os.Getenv("OTEL_SEMCONV_STABILITY_OPT_IN"), ",") {
		if p = strings.TrimSpace(p); p == "rpc/dup" || p == "rpc/old" {
			return true
		}
	}
	return false
}

// maxMethods bounds the per-method cache: a server has a few dozen methods,
// and a call can name whatever method a client sends.
const maxMethods = 256

// numCodes is the number of gRPC codes (OK .. Unauthenticated).
const numCodes = 17

// methodInfo is what every call of one method shares.
type methodInfo struct {
	name      string // span name: the full method without its leading "/"
	attrs     []attribute.KeyValue
	spanOpts  []trace.SpanStartOption
	recordOK  []metric.RecordOption
	recordErr [numCodes]atomic.Pointer[[]metric.RecordOption] // built on the first call that ends with the code
}

func newMethodInfo(fullMethod string) *methodInfo {
	m := &methodInfo{name: fullMethod}
	if strings.HasPrefix(fullMethod, "/") {
		m.name = fullMethod[1:]
		m.attrs = []attribute.KeyValue{semconv.RPCMethod(m.name)}
	}
	m.attrs = append(m.attrs, semconv.RPCSystemNameGRPC)
	m.spanOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(m.attrs...)}
	m.recordOK = m.recordOptions(codes.OK)
	return m
}

// recordOptions is the duration's attribute set for calls ending with code,
// as otelgrpc builds it: the method's attributes, rpc.response.status_code,
// and error.type for the codes a server counts as errors.
func (m *methodInfo) recordOptions(c codes.Code) []metric.RecordOption {
	attrs := make([]attribute.KeyValue, 0, len(m.attrs)+2)
	attrs = append(attrs, m.attrs...)
	attrs = append(attrs, semconv.RPCResponseStatusCode(canonicalCode(c)))
	if serverError(c) {
		attrs = append(attrs, semconv.ErrorTypeKey.String(canonicalCode(c)))
	}
	return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
}

func (m *methodInfo) record(c codes.Code) []metric.RecordOption {
	if c == codes.OK {
		return m.recordOK
	}
	if int(c) >= numCodes {
		return m.recordOptions(c)
	}
	if p := m.recordErr[c].Load(); p != nil {
		return *p
	}
	opts := m.recordOptions(c)
	m.recordErr[c].Store(&opts)
	return opts
}

func (h *ServerCalls) method(fullMethod string) *methodInfo {
	if v, ok := h.methods.Load(fullMethod); ok {
		return v.(*methodInfo)
	}
	m := newMethodInfo(fullMethod)
	if h.cached.Load() < maxMethods {
		if v, loaded := h.methods.LoadOrStore(fullMethod, m); loaded {
			return v.(*methodInfo)
		}
		h.cached.Add(1)
	}
	return m
}

// incomingCarrier reads the call's incoming metadata in place for the
// propagators (otelgrpc copies all of it first). Keys on the wire are lower
// case, as are the propagators' fields.
type incomingCarrier struct{ ctx context.Context }

func (c incomingCarrier) Get(key string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set is never called on extraction.
func (incomingCarrier) Set(string, string) {}

func (c incomingCarrier) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}

// serverError reports the codes a server's span and error.type count as
// errors (otelgrpc's rule).
func serverError(c codes.Code) bool {
	switch c {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

func serverAddrAttrs(hostport string) []attribute.KeyValue {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return []attribute.KeyValue{semconv.ServerAddress(hostport)}
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return []attribute.KeyValue{semconv.ServerAddress(h)}
	}
	return []attribute.KeyValue{semconv.ServerAddress(h), semconv.ServerPort(port)}
}

// canonicalCode is a code's name as the rpc semantic conventions spell it.
func canonicalCode(c codes.Code) string {
	switch c {
	case codes.OK:
		return "OK"
	case codes.Canceled:
		return "CANCELLED"
	case codes.Unknown:
		return "UNKNOWN"
	case codes.InvalidArgument:
		return "INVALID_ARGUMENT"
	case codes.DeadlineExceeded:
		return "DEADLINE_EXCEEDED"
	case codes.NotFound:
		return "NOT_FOUND"
	case codes.AlreadyExists:
		return "ALREADY_EXISTS"
	case codes.PermissionDenied:
		return "PERMISSION_DENIED"
	case codes.ResourceExhausted:
		return "RESOURCE_EXHAUSTED"
	case codes.FailedPrecondition:
		return "FAILED_PRECONDITION"
	case codes.Aborted:
		return "ABORTED"
	case codes.OutOfRange:
		return "OUT_OF_RANGE"
	case codes.Unimplemented:
		return "UNIMPLEMENTED"
	case codes.Internal:
		return "INTERNAL"
	case codes.Unavailable:
		return "UNAVAILABLE"
	case codes.DataLoss:
		return "DATA_LOSS"
	case codes.Unauthenticated:
		return "UNAUTHENTICATED"
	}
	return "CODE(" + strconv.FormatInt(int64(c), 10) + ")"
}
