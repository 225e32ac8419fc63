package pusher

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/milequest/pushercm/delivery"
)

func TestHTTPCallsAreChildSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() {
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()

	e := newEnv(t, nil)
	d, err := New(e.driver.cfg, WithTracerProvider(tp), withSleep(e.sleeps.Sleep))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	}()
	p := delivery.NewPublisher(d, delivery.WithTracerProvider(tp))
	e.proxy.setPlan(fail500) // one retry: two HTTP spans
	if _, err := p.Publish(context.Background(), ev("x", "team-1")); err != nil {
		t.Fatal(err)
	}

	var parent sdktrace.ReadOnlySpan
	var children []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "delivery.Publish":
			parent = s
		case "pusher.trigger":
			children = append(children, s)
		}
	}
	if parent == nil || len(children) != 2 {
		t.Fatalf("spans: parent %v, %d HTTP spans", parent != nil, len(children))
	}
	for _, c := range children {
		if c.Parent().SpanID() != parent.SpanContext().SpanID() || c.SpanContext().TraceID() != parent.SpanContext().TraceID() {
			t.Fatalf("HTTP span %s is not a child of delivery.Publish", c.Name())
		}
	}
	attrs := map[string]bool{}
	for _, a := range parent.Attributes() {
		attrs[string(a.Key)] = true
	}
	for _, k := range []string{"pushercm.channels.count", "pushercm.event.size", "pushercm.delivered_to"} {
		if !attrs[k] {
			t.Errorf("delivery.Publish lacks attribute %s", k)
		}
	}
}
