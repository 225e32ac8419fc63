package metrics

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/codes"
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
	// RateByMethod counts rate-limit outcomes per gRPC method:
	// [0] allowed, [1] limited.
	RateByMethod map[string][2]uint64

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

// Register creates every pushercm_* instrument on meter: the delivery
// latency histogram fed by o, and observable instruments that call read
// once per collection. read must be cheap and safe for concurrent use.
func Register(meter metric.Meter, o *Observer, read func() Reading) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	hist, err := meter.Float64Histogram("pushercm_delivery_latency",
		metric.WithUnit("s"),
		metric.WithDescription("Time a publish call takes on the embedded server: validation, encoding the frame once and posting it for fan-out (the socket writes follow; see pushercm_socket_write_latency)."),
		metric.WithExplicitBucketBoundaries(LatencyBounds...))
	add(err)
	if err == nil {
		o.hist.Store(&hist)
	}
	writeHist, err := meter.Float64Histogram("pushercm_socket_write_latency",
		metric.WithUnit("s"),
		metric.WithDescription("Time from a publish to the socket write that carried its frame (the oldest frame of each write)."),
		metric.WithExplicitBucketBoundaries(LatencyBounds...))
	add(err)
	if err == nil {
		o.writeHist.Store(&writeHist)
	}

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
		byMethod    = counter("pushercm_rate_limit_decisions", "gRPC calls the rate-limit interceptor checked, by method and outcome (allowed, limited).")
		rpcErrors   = counter("pushercm_errors", "Failed gRPC calls, by ErrorInfo reason.")
		rpcs        = counter("pushercm_rpcs", "Finished gRPC calls, by status code.")
		breaker     = gauge("pushercm_upstream_breaker_state", "Upstream circuit breaker: 0 closed, 1 half-open, 2 open.")
		whReceived  = counter("pushercm_webhooks_received", "Pusher webhooks received on /pusher/webhooks, by outcome.")
		observables = []metric.Observable{active, total, refused, subs, channels, members, published, delivered,
			client, slow, stale, whSent, whFailed, whDropped, whBacklog, limited, allowed, byMethod, rpcErrors, rpcs, breaker, whReceived}
	)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	reasonKey := attribute.Key("reason")
	limiterKey := attribute.Key("limiter")
	_, err = meter.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
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
		for method, n := range r.RateByMethod {
			m := attribute.Key("method").String(method)
			ob.ObserveInt64(byMethod, int64(n[0]), metric.WithAttributes(m, attribute.Key("outcome").String("allowed")))
			ob.ObserveInt64(byMethod, int64(n[1]), metric.WithAttributes(m, attribute.Key("outcome").String("limited")))
		}
		for reason, n := range s.ErrorsByReason {
			ob.ObserveInt64(rpcErrors, int64(n), metric.WithAttributes(reasonKey.String(reason)))
		}
		for c, n := range s.Calls {
			if n > 0 {
				ob.ObserveInt64(rpcs, int64(n), metric.WithAttributes(attribute.String("code", codes.Code(c).String())))
			}
		}
		ob.ObserveInt64(breaker, BreakerValue(r.Breaker))
		ob.ObserveInt64(whReceived, int64(r.WebhooksReceived), metric.WithAttributes(attribute.String("outcome", "accepted")))
		ob.ObserveInt64(whReceived, int64(r.WebhooksRejected), metric.WithAttributes(attribute.String("outcome", "rejected")))
		return nil
	}, observables...)
	return err
}
