package telemetry_test

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/milequest/pushercm/telemetry"
)

// grpcCalls are the calls both handlers see: each method name ends with the
// code its handler returns.
var grpcCalls = []struct {
	method string
	code   codes.Code
	parent bool // sent with a traceparent
}{
	{"/t.v1.Svc/OK", codes.OK, false},
	{"/t.v1.Svc/OK", codes.OK, true},
	{"/t.v1.Svc/OK", codes.OK, false},
	{"/t.v1.Svc/NotFound", codes.NotFound, false},
	{"/t.v1.Svc/Internal", codes.Internal, true},
	{"/t.v1.Svc/Internal", codes.Internal, false},
	{"/t.v1.Svc/Unavailable", codes.Unavailable, false},
	{"/t.v1.Other/ResourceExhausted", codes.ResourceExhausted, false},
}

const (
	parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpan  = "00f067aa0ba902b7"
)

// callCode is the code a method name asks for.
func callCode(method string) codes.Code {
	for _, c := range grpcCalls {
		if c.method == method {
			return c.code
		}
	}
	return codes.Unknown
}

// runGRPC serves the calls through h on a real gRPC server and returns what
// the tracer and meter recorded.
func runGRPC(t *testing.T, newHandler func(trace.TracerProvider, *sdkmetric.MeterProvider) stats.Handler, sampler sdktrace.Sampler) (tracetest.SpanStubs, metricdata.ResourceMetrics, []trace.SpanContext) {
	t.Helper()
	return runGRPCWith(t, func(tp trace.TracerProvider, mp *sdkmetric.MeterProvider, ended func()) grpc.ServerOption {
		return grpc.StatsHandler(&endWaiter{Handler: newHandler(tp, mp), ended: ended})
	}, sampler)
}

// callsInterceptor traces and times calls with telemetry.ServerCalls from
// a stream interceptor (the unknown-service handler below is a stream
// handler), as the server's interceptor chain does.
func callsInterceptor(tp trace.TracerProvider, mp *sdkmetric.MeterProvider, ended func()) grpc.ServerOption {
	return callsInterceptorOf(telemetry.NewServerCalls(tp, mp, false), ended)
}

// idsOnlyInterceptor is callsInterceptor for a provider that never samples.
func idsOnlyInterceptor(tp trace.TracerProvider, mp *sdkmetric.MeterProvider, ended func()) grpc.ServerOption {
	return callsInterceptorOf(telemetry.NewServerCalls(tp, mp, true), ended)
}

func callsInterceptorOf(calls *telemetry.ServerCalls, ended func()) grpc.ServerOption {
	return grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		begin := time.Now()
		ctx := calls.Begin(ss.Context(), info.FullMethod)
		err := handler(srv, ctxStream{ss, ctx})
		calls.End(ctx, info.FullMethod, begin, err)
		ended()
		return err
	})
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }

// runGRPCWith serves the calls on a real gRPC server with the option that
// option returns (it calls ended once per call, after recording it) and
// returns what the tracer and meter recorded.
func runGRPCWith(t *testing.T, option func(trace.TracerProvider, *sdkmetric.MeterProvider, func()) grpc.ServerOption, sampler sdktrace.Sampler) (tracetest.SpanStubs, metricdata.ResourceMetrics, []trace.SpanContext) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sampler))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })

	var seen []trace.SpanContext // the span context each handler ran in
	var ends sync.WaitGroup
	ends.Add(len(grpcCalls))
	srv := grpc.NewServer(option(tp, mp, ends.Done),
		grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
			seen = append(seen, trace.SpanContextFromContext(ss.Context()))
			if err := ss.RecvMsg(&emptypb.Empty{}); err != nil {
				return err
			}
			method, _ := grpc.MethodFromServerStream(ss)
			if c := callCode(method); c != codes.OK {
				return status.Error(c, "failed: "+c.String())
			}
			return ss.SendMsg(&emptypb.Empty{})
		}))
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	defer func() { _ = conn.Close() }()

	for _, c := range grpcCalls {
		ctx := context.Background()
		if c.parent {
			ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+parentTrace+"-"+parentSpan+"-01")
		}
		err := conn.Invoke(ctx, c.method, &emptypb.Empty{}, &emptypb.Empty{})
		if status.Code(err) != c.code {
			t.Fatalf("%s: %v, want %s", c.method, err, c.code)
		}
	}
	ends.Wait() // the client can see the status before the server's End
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return tracetest.SpanStubsFromReadOnlySpans(rec.Ended()), rm, seen
}

// endWaiter counts the calls whose End the handler has seen.
type endWaiter struct {
	stats.Handler
	ended func()
}

func (e *endWaiter) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	e.Handler.HandleRPC(ctx, rs)
	if _, ok := rs.(*stats.End); ok {
		e.ended()
	}
}

// spanView is what a span shows, without its random ids and times.
func spanView(s tracetest.SpanStub) string {
	var attrs []string
	for _, kv := range s.Attributes {
		attrs = append(attrs, string(kv.Key)+"="+kv.Value.String())
	}
	sort.Strings(attrs)
	parent := "root"
	if s.Parent.IsValid() {
		parent = fmt.Sprintf("child of %s/%s remote=%v", s.Parent.TraceID(), s.Parent.SpanID(), s.Parent.IsRemote())
		if s.SpanContext.TraceID() != s.Parent.TraceID() {
			parent += " (other trace)"
		}
	}
	return fmt.Sprintf("%s kind=%s status=%v %q attrs=[%s] %s links=%d events=%d scope=%s@%s",
		s.Name, s.SpanKind, s.Status.Code, s.Status.Description, strings.Join(attrs, ","), parent,
		len(s.Links), len(s.Events), s.InstrumentationScope.Name, s.InstrumentationScope.Version)
}

// spanViews are the spans' views in a fixed order (spans end after their
// callers hear back, so in no fixed order).
func spanViews(spans tracetest.SpanStubs) []string {
	out := make([]string, 0, len(spans))
	for _, s := range spans {
		out = append(out, spanView(s))
	}
	sort.Strings(out)
	return out
}

// metricView is every metric's description and its points' attributes and
// counts (durations differ from run to run).
func metricView(t *testing.T, rm metricdata.ResourceMetrics) []string {
	t.Helper()
	var out []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			head := fmt.Sprintf("%s@%s schema=%s %s unit=%s %q", sm.Scope.Name, sm.Scope.Version, sm.Scope.SchemaURL, m.Name, m.Unit, m.Description)
			h, ok := m.Data.(metricdata.Histogram[float64])
			if !ok {
				out = append(out, head+fmt.Sprintf(" %T", m.Data))
				continue
			}
			for _, p := range h.DataPoints {
				var attrs []string
				for _, kv := range p.Attributes.ToSlice() {
					attrs = append(attrs, string(kv.Key)+"="+kv.Value.String())
				}
				out = append(out, fmt.Sprintf("%s temporality=%s bounds=%v [%s] count=%d",
					head, h.Temporality, p.Bounds, strings.Join(attrs, ","), p.Count))
			}
		}
	}
	sort.Strings(out)
	return out
}

func otelgrpcHandler(tp trace.TracerProvider, mp *sdkmetric.MeterProvider) stats.Handler {
	return otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithMeterProvider(mp))
}

// TestServerCallsMatchOtelgrpc: the same calls give the same spans and the
// same duration metric through ServerCalls, called from an interceptor, as
// through otelgrpc's stats handler, recorded or not.
func TestServerCallsMatchOtelgrpc(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })

	for _, tc := range []struct {
		name    string
		sampler sdktrace.Sampler
		server  func(trace.TracerProvider, *sdkmetric.MeterProvider, func()) grpc.ServerOption
	}{
		{"always sample", sdktrace.AlwaysSample(), callsInterceptor},
		{"never sample", sdktrace.NeverSample(), callsInterceptor},
		{"parent based, ratio 0", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0)), callsInterceptor},
		{"never sample, ids only", sdktrace.NeverSample(), idsOnlyInterceptor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantSpans, wantMetrics, wantSeen := runGRPC(t, otelgrpcHandler, tc.sampler)
			gotSpans, gotMetrics, gotSeen := runGRPCWith(t, tc.server, tc.sampler)
			compareGRPC(t, gotSpans, wantSpans, gotMetrics, wantMetrics, gotSeen, wantSeen)
		})
	}
}

func compareGRPC(t *testing.T, gotSpans, wantSpans tracetest.SpanStubs, gotMetrics, wantMetrics metricdata.ResourceMetrics, gotSeen, wantSeen []trace.SpanContext) {
	t.Helper()
	if got, want := spanViews(gotSpans), spanViews(wantSpans); !reflect.DeepEqual(got, want) {
		t.Errorf("spans:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	if got, want := metricView(t, gotMetrics), metricView(t, wantMetrics); !reflect.DeepEqual(got, want) {
		t.Errorf("metrics:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	if len(gotSeen) != len(grpcCalls) || len(wantSeen) != len(grpcCalls) {
		t.Fatalf("handlers ran %d and %d times, want %d", len(gotSeen), len(wantSeen), len(grpcCalls))
	}
	for i, c := range grpcCalls {
		got, want := gotSeen[i], wantSeen[i]
		if !got.IsValid() || got.IsSampled() != want.IsSampled() || got.IsRemote() != want.IsRemote() {
			t.Errorf("call %d: span context %v, want like %v", i, got, want)
		}
		if c.parent && got.TraceID().String() != parentTrace {
			t.Errorf("call %d: trace %s, want the caller's %s", i, got.TraceID(), parentTrace)
		}
	}
}

// TestServerCallsLegacySemconv: rpc/old and rpc/dup are otelgrpc's, so
// NewServerCalls leaves them to its stats handler (NewServerHandler).
func TestServerCallsLegacySemconv(t *testing.T) {
	t.Setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http, rpc/dup")
	if c := telemetry.NewServerCalls(sdktrace.NewTracerProvider(), sdkmetric.NewMeterProvider(), false); c != nil {
		t.Fatal("NewServerCalls with rpc/dup asked for: want nil, so that otelgrpc's handler is installed")
	}
	t.Setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
	if c := telemetry.NewServerCalls(sdktrace.NewTracerProvider(), sdkmetric.NewMeterProvider(), false); c == nil {
		t.Fatal("NewServerCalls without rpc/old or rpc/dup: nil")
	}
}

// BenchmarkServerCalls measures one unary call's tracing and timing on the
// server with spans not sampled, as with no trace exporter: otelgrpc's
// stats handler (TagRPC, the transport's HandleRPC events, End) against
// ServerCalls' Begin and End, and with ids only.
func BenchmarkServerCalls(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
	md := metadata.MD{
		":authority": {"127.0.0.1:9000"}, "content-type": {"application/grpc"}, "user-agent": {"grpc-go/1.85.0"},
		"te": {"trailers"}, "authorization": {"Bearer x.y.z"}, "grpc-accept-encoding": {"gzip"},
	}
	base := metadata.NewIncomingContext(context.Background(), md)
	const method = "/pushercm.v1.BroadcastService/SendEvent"
	info := &stats.RPCTagInfo{FullMethodName: method}
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9000}
	b.Run("otelgrpc", func(b *testing.B) {
		h := otelgrpcHandler(tp, mp)
		b.ReportAllocs()
		for b.Loop() {
			ctx := h.TagRPC(base, info)
			h.HandleRPC(ctx, &stats.InHeader{LocalAddr: addr, RemoteAddr: addr})
			h.HandleRPC(ctx, &stats.Begin{})
			h.HandleRPC(ctx, &stats.InPayload{})
			h.HandleRPC(ctx, &stats.OutHeader{})
			h.HandleRPC(ctx, &stats.OutPayload{})
			h.HandleRPC(ctx, &stats.OutTrailer{})
			h.HandleRPC(ctx, &stats.End{})
		}
	})
	for _, idsOnly := range []bool{false, true} {
		b.Run(fmt.Sprintf("telemetry, ids only %v", idsOnly), func(b *testing.B) {
			c := telemetry.NewServerCalls(tp, mp, idsOnly)
			b.ReportAllocs()
			for b.Loop() {
				begin := time.Now()
				ctx := c.Begin(base, method)
				c.End(ctx, method, begin, nil)
			}
		})
	}
}
