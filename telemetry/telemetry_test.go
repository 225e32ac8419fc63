package telemetry

import (
	"context"
	"testing"
)

// setEnv sets the OTEL_* variables of a case and clears the others.
func setEnv(t *testing.T, m map[string]string) {
	t.Helper()
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_TRACES_SAMPLER"} {
		t.Setenv(k, m[k])
	}
}

// Without an exporter spans are not recorded but still carry ids, so logs
// can name the trace.
func TestNoExporterKeepsIDsRecordsNothing(t *testing.T) {
	setEnv(t, nil)
	p, err := Setup(context.Background(), Options{ServiceName: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Shutdown(context.Background()) }()
	if p.Exporting {
		t.Fatal("exporting without OTEL_* settings")
	}
	ctx, span := p.Tracer.Tracer("t").Start(context.Background(), "op")
	defer span.End()
	if span.IsRecording() {
		t.Fatal("span recorded with no exporter")
	}
	if TraceID(ctx) == "" {
		t.Fatal("no trace id for logs")
	}
}

func TestExporterSettings(t *testing.T) {
	for _, tt := range []struct {
		name    string
		env     map[string]string
		export  bool
		wantErr bool
	}{
		{name: "none", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}},
		{name: "otlp http", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, export: true},
		{name: "otlp grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, export: true},
		{name: "bad protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}, wantErr: true},
		{name: "otlp traces protocol wins", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, export: true},
		{name: "otlp named, default endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, export: true},
		{name: "console", env: map[string]string{"OTEL_TRACES_EXPORTER": "console"}, export: true},
		{name: "bad exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			p, err := Setup(context.Background(), Options{ServiceName: "t"})
			if tt.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 0)
			defer cancel()
			defer func() { _ = p.Shutdown(ctx) }()
			if p.Exporting != tt.export {
				t.Fatalf("exporting %v, want %v", p.Exporting, tt.export)
			}
		})
	}
}
