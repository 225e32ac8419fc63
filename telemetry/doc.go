// Package telemetry sets up OpenTelemetry for the process: a tracer provider
// that always assigns trace ids (so logs can carry them) and exports over
// OTLP only when the standard OTEL_* variables ask for it, and a meter
// provider exported in the Prometheus text format on the ops listener's
// /metrics. Unset OTEL_* variables mean no exporter, never an error.
package telemetry
