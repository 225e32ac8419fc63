package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// Providers are the process's telemetry pipelines.
type Providers struct {
	Tracer trace.TracerProvider
	Meter  metric.MeterProvider
	// Registry is the Prometheus registry behind Handler; other collectors
	// may be registered on it.
	Registry *prometheus.Registry
	// Handler serves the Prometheus text format for /metrics.
	Handler http.Handler
	// Exporting says whether traces leave the process (OTLP configured).
	Exporting bool
	// IDsOnly says the tracer provider never samples (no exporter and no
	// OTEL_TRACES_SAMPLER): spans only give logs and callees their ids
	// (see NewServerCalls).
	IDsOnly bool

	shutdown []func(context.Context) error
}

// Options for Setup.
type Options struct {
	// ServiceName is the default service.name; OTEL_SERVICE_NAME wins.
	ServiceName string
	// Version is service.version.
	Version string
}

// Setup builds tracer and meter providers and installs them (and the W3C
// trace-context propagator) as the otel globals.
//
// Traces: a tracer provider always exists, so every span has ids that logs
// can carry. Without an exporter (and without OTEL_TRACES_SAMPLER) spans are
// not recorded, only identified. The exporter is chosen by
// go.opentelemetry.io/contrib/exporters/autoexport from the standard
// variables: OTEL_TRACES_EXPORTER (otlp, console, none), and for otlp
// OTEL_EXPORTER_OTLP_PROTOCOL or OTEL_EXPORTER_OTLP_TRACES_PROTOCOL (grpc, or
// http/protobuf by default). With OTEL_TRACES_EXPORTER unset, spans are
// exported over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. The exporters read the other
// OTEL_EXPORTER_OTLP_* variables themselves, and the SDK reads
// OTEL_TRACES_SAMPLER, OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME.
//
// Metrics: an OpenTelemetry meter provider read by a Prometheus exporter on
// its own registry (plus Go runtime and process collectors); Handler serves it.
func Setup(ctx context.Context, o Options) (*Providers, error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(o.ServiceName), semconv.ServiceVersion(o.Version)))
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	if env, err := resource.New(ctx, resource.WithFromEnv()); err == nil {
		if merged, err := resource.Merge(res, env); err == nil {
			res = merged
		}
	}
	p := &Providers{}

	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	exp, err := traceExporter(ctx)
	if err != nil {
		return nil, err
	}
	if exp != nil {
		topts = append(topts, sdktrace.WithBatcher(exp))
		p.Exporting = true
	} else if os.Getenv("OTEL_TRACES_SAMPLER") == "" {
		// Nothing would ever read recorded spans: keep the ids (spans still
		// get valid trace and span ids, so logs carry them and trace context
		// propagates) but record nothing, so RPCs do not pay for spans.
		topts = append(topts, sdktrace.WithSampler(sdktrace.NeverSample()))
		p.IDsOnly = true
	}
	tp := sdktrace.NewTracerProvider(topts...)
	p.Tracer = tp
	p.shutdown = append(p.shutdown, tp.Shutdown)

	p.Registry = prometheus.NewRegistry()
	p.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pexp, err := otelprom.New(otelprom.WithRegisterer(p.Registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(pexp))
	p.Meter = mp
	p.shutdown = append(p.shutdown, mp.Shutdown)
	p.Handler = promhttp.HandlerFor(p.Registry, promhttp.HandlerOpts{EnableOpenMetrics: false})

	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return p, nil
}

// traceExporter picks the span exporter from the standard variables with
// autoexport: OTEL_TRACES_EXPORTER (otlp, console or none),
// OTEL_EXPORTER_OTLP_PROTOCOL / OTEL_EXPORTER_OTLP_TRACES_PROTOCOL (grpc or
// http/protobuf). autoexport's default when OTEL_TRACES_EXPORTER is unset is
// OTLP to localhost; here an unset OTEL_TRACES_EXPORTER exports only when an
// OTLP endpoint is set, so that a process with no OTEL_* settings exports
// nothing (DESIGN.md §2). nil means no exporter.
func traceExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	if os.Getenv("OTEL_TRACES_EXPORTER") == "" &&
		os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return nil, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("trace exporter (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_*): %w", err)
	}
	if autoexport.IsNoneSpanExporter(exp) {
		return nil, nil
	}
	return exp, nil
}

// Shutdown flushes and stops the providers.
func (p *Providers) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range p.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

// TraceID returns the hex trace id of the span in ctx, or "".
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// LogHandler wraps h so that every record logged with a context carrying a
// span gets trace_id and span_id attributes: a log line can be found from
// its trace and the other way round.
func LogHandler(h slog.Handler) slog.Handler { return traceHandler{h} }

type traceHandler struct{ slog.Handler }

func (t traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return t.Handler.Handle(ctx, r)
}

func (t traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{t.Handler.WithAttrs(as)}
}

func (t traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{t.Handler.WithGroup(name)}
}
