package metrics

import (
	"context"
	"errors"
	"github.com/prometheus/client_golang/prometheus"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Reading is the state read at scrape time: the edge's counters and gauges,
// the webhook sender's, the rate limiters', the delivery driver's breaker
// and the webhook ingest's. Fields a driver does not have stay zero.
type Reading struct {
	ConnectionsActive   int64
	ConnectionsTotal    uint64
	ConnectionsRefused  map[string]uint64 // by refusal reason
	Subscriptions       int64
	OccupiedChannels    int64
	PresenceMembers     int64
	Published           uint64 // Publish/SendToUser calls on the edge
	Delivered           uint64 // socket writes of published events
	ClientEvents        uint64
	ClientEventsLimited uint64
	SlowConsumersClosed uint64
	StaleClosed         uint64

	WebhooksSent    uint64
	WebhooksFailed  uint64
	WebhooksDropped uint64
	WebhookBacklog  int64

	// RateLimited counts refusals by limiter name.
	RateLimited map[string]uint64
	// RateAllowed counts admissions by limiter name.
	RateAllowed map[string]uint64
	// RateFallbacks counts, by limiter name, the checks of a limiter with a
	// shared (Redis) store that this node's own limits decided because the
	// store did not answer.
	RateFallbacks map[string]uint64

	// Breaker is the upstream circuit breaker state: "", "closed", "half-open", "open".
	Breaker string

	WebhooksReceived uint64 // Pusher webhooks accepted by /pusher/webhooks
	WebhooksRejected uint64 // refused (bad signature, bad body)
}

// BreakerValue maps a breaker state to the gauge's value: 0 closed (or no
// breaker), 1 half-open, 2 open.
func BreakerValue(state string) int64 {
	switch state {
	case "open":
		return 2
	case "half-open":
		return 1
	}
	return 0
}

// CodeNames are the gRPC status code names of the code label of
// pushercm_rpcs_total, indexed by code: the canonical upper snake case
// (PERMISSION_DENIED) that grpc-go's JSON form, the OpenTelemetry gRPC
// instrumentation's rpc_response_status_code and health.errorCodes use.
var CodeNames = [numCodes]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// Register creates every pushercm_* instrument: the publish duration and
// delivery latency histograms fed by o on reg (Prometheus histograms, so that
// their series exist, at zero, from the start; the OpenTelemetry exporter
// exports a histogram only once it has a value), and on meter the observable
// instruments that call read once per collection. read must be cheap and
// safe for concurrent use. Every gRPC code, and each of reasons (the
// ErrorInfo reasons calls can fail with), is exported at zero from the
// start, so that dashboards and alerts see a series before the first
// failure.
func Register(meter metric.Meter, reg prometheus.Registerer, o *Observer, read func() Reading, reasons ...string) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	hist := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pushercm_publish_duration_seconds",
		Help:    "Duration of a publish call on the embedded server: validation, encoding the frame once and posting it for fan-out. Not the delivery latency (see pushercm_delivery_latency_seconds).",
		Buckets: LatencyBounds,
	})
	writeHist := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pushercm_delivery_latency_seconds",
		Help:    "Delivery latency from publish to socket write: for every socket write, how long the oldest frame it carried waited since its publish.",
		Buckets: LatencyBounds,
	})
	for _, h := range []prometheus.Histogram{hist, writeHist} {
		add(reg.Register(h))
	}
	o.hist.Store(&histogram{hist})
	o.writeHist.Store(&histogram{writeHist})

	gauge := func(name, desc string) metric.Int64ObservableGauge {
		g, err := meter.Int64ObservableGauge(name, metric.WithDescription(desc))
		add(err)
		return g
	}
	counter := func(name, desc string) metric.Int64ObservableCounter {
		c, err := meter.Int64ObservableCounter(name, metric.WithDescription(desc))
		add(err)
		return c
	}
	var (
		active      = gauge("pushercm_connections_active", "Open WebSocket connections.")
		total       = counter("pushercm_connections", "WebSocket connections accepted since start.")
		refused     = counter("pushercm_connections_refused", "WebSocket connections refused since start, by reason.")
		subs        = gauge("pushercm_subscriptions", "Live subscriptions (connection x channel).")
		channels    = gauge("pushercm_channels_occupied", "Occupied channels.")
		members     = gauge("pushercm_presence_members", "Distinct presence members summed over presence channels.")
		published   = counter("pushercm_messages_published", "Events published (Publish and SendToUser calls) since start.")
		delivered   = counter("pushercm_messages_delivered", "Published events queued for sockets since start (one per receiving connection).")
		client      = counter("pushercm_client_events", "Client events relayed since start.")
		slow        = counter("pushercm_slow_consumers_closed", "Connections closed (4100) because they could not keep up.")
		stale       = counter("pushercm_stale_connections_closed", "Connections closed (4201) for missing heartbeats.")
		whSent      = counter("pushercm_webhooks_sent", "Webhook events acknowledged by their receiver.")
		whFailed    = counter("pushercm_webhooks_failed", "Webhook events given up after retries.")
		whDropped   = counter("pushercm_webhooks_dropped", "Webhook events dropped because the queue was full.")
		whBacklog   = gauge("pushercm_webhooks_backlog", "Webhook events waiting to be sent.")
		limited     = counter("pushercm_rate_limited", "Requests refused by rate limits, by limiter.")
		allowed     = counter("pushercm_rate_limit_allowed", "Requests a rate limit checked and admitted, by limiter.")
		fallbacks   = counter("pushercm_rate_limit_fallbacks", "Rate-limit checks decided by this node's own limits because Redis did not answer, by limiter.")
		rpcErrors   = counter("pushercm_errors", "Failed gRPC calls, by ErrorInfo reason.")
		rpcs        = counter("pushercm_rpcs", "Finished gRPC calls, by status code.")
		breaker     = gauge("pushercm_upstream_breaker_state", "Upstream circuit breaker: 0 closed, 1 half-open, 2 open.")
		whReceived  = counter("pushercm_webhooks_received", "Pusher webhooks received on /pusher/webhooks, by outcome.")
		observables = []metric.Observable{active, total, refused, subs, channels, members, published, delivered,
			client, slow, stale, whSent, whFailed, whDropped, whBacklog, limited, allowed, fallbacks, rpcErrors, rpcs, breaker, whReceived}
	)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	reasonKey := attribute.Key("reason")
	limiterKey := attribute.Key("limiter")
	codeKey := attribute.Key("code")
	_, err := meter.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		r := read()
		s := o.Snapshot(time.Time{})
		ob.ObserveInt64(active, r.ConnectionsActive)
		ob.ObserveInt64(total, int64(r.ConnectionsTotal))
		for reason, n := range r.ConnectionsRefused {
			ob.ObserveInt64(refused, int64(n), metric.WithAttributes(reasonKey.String(reason)))
		}
		ob.ObserveInt64(subs, r.Subscriptions)
		ob.ObserveInt64(channels, r.OccupiedChannels)
		ob.ObserveInt64(members, r.PresenceMembers)
		ob.ObserveInt64(published, int64(max(r.Published, s.Published)))
		ob.ObserveInt64(delivered, int64(max(r.Delivered, s.Delivered)))
		ob.ObserveInt64(client, int64(r.ClientEvents))
		ob.ObserveInt64(slow, int64(r.SlowConsumersClosed))
		ob.ObserveInt64(stale, int64(r.StaleClosed))
		ob.ObserveInt64(whSent, int64(r.WebhooksSent))
		ob.ObserveInt64(whFailed, int64(r.WebhooksFailed))
		ob.ObserveInt64(whDropped, int64(r.WebhooksDropped))
		ob.ObserveInt64(whBacklog, r.WebhookBacklog)
		for name, n := range r.RateLimited {
			ob.ObserveInt64(limited, int64(n), metric.WithAttributes(limiterKey.String(name)))
		}
		for name, n := range r.RateAllowed {
			ob.ObserveInt64(allowed, int64(n), metric.WithAttributes(limiterKey.String(name)))
		}
		for name, n := range r.RateFallbacks {
			ob.ObserveInt64(fallbacks, int64(n), metric.WithAttributes(limiterKey.String(name)))
		}
		for _, reason := range reasons {
			if _, seen := s.ErrorsByReason[reason]; !seen {
				ob.ObserveInt64(rpcErrors, 0, metric.WithAttributes(reasonKey.String(reason)))
			}
		}
		for reason, n := range s.ErrorsByReason {
			ob.ObserveInt64(rpcErrors, int64(n), metric.WithAttributes(reasonKey.String(reason)))
		}
		for c, n := range s.Calls {
			ob.ObserveInt64(rpcs, int64(n), metric.WithAttributes(codeKey.String(CodeNames[c])))
		}
		ob.ObserveInt64(breaker, BreakerValue(r.Breaker))
		ob.ObserveInt64(whReceived, int64(r.WebhooksReceived), metric.WithAttributes(attribute.String("outcome", "accepted")))
		ob.ObserveInt64(whReceived, int64(r.WebhooksRejected), metric.WithAttributes(attribute.String("outcome", "rejected")))
		return nil
	}, observables...)
	return err
}
