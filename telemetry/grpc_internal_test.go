package telemetry

import (
	"strconv"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// TestServerHandlerMethodCacheBounded: method names come from clients, so
// the per-method cache stops growing at maxMethods; later names still get
// their own span name and attributes.
func TestServerHandlerMethodCacheBounded(t *testing.T) {
	h := newServerCalls(sdktrace.NewTracerProvider(), sdkmetric.NewMeterProvider())
	for i := range 2 * maxMethods {
		name := "/made.up.Svc/M" + strconv.Itoa(i)
		m := h.method(name)
		if m.name != name[1:] || len(m.attrs) != 2 || m.attrs[0].Value.AsString() != name[1:] {
			t.Fatalf("%s: %+v", name, m)
		}
		if again := h.method(name); i < maxMethods && again != m {
			t.Fatalf("%s: not cached", name)
		}
	}
	n := 0
	h.methods.Range(func(any, any) bool { n++; return true })
	if n != maxMethods || int(h.cached.Load()) != maxMethods {
		t.Fatalf("cache holds %d methods (counted %d), want %d", n, h.cached.Load(), maxMethods)
	}
	if m := h.method("no-slash"); m.name != "no-slash" || len(m.attrs) != 1 {
		t.Fatalf("method without a leading slash: %+v", m)
	}
}
