// Package telemetry sets up OpenTelemetry for the process: a tracer provider
// that always assigns trace ids (so logs can carry them) and exports only
// when the standard OTEL_* variables ask for it (the exporter is chosen by
// OpenTelemetry's autoexport, so OTEL_TRACES_EXPORTER and
// OTEL_EXPORTER_OTLP_PROTOCOL work as elsewhere), and a meter
// provider exported in the Prometheus text format on the ops listener's
// /metrics. Unset OTEL_* variables mean no exporter, never an error.
//
// ServerCalls is the gRPC server's tracing and call duration, called from
// its outermost interceptor: otelgrpc's spans and rpc.server.call.duration,
// with the per-method work done once per method instead of once per call,
// and without grpc-go's per-call stats work. NewServerHandler is otelgrpc's
// own stats handler, for its older conventions (OTEL_SEMCONV_STABILITY_OPT_IN).
package telemetry
