package app

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/delivery"
	"github.com/milequest/pushercm/delivery/webhookin"
	"github.com/milequest/pushercm/edge/webhook"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/health"
	"github.com/milequest/pushercm/interceptors"
	"github.com/milequest/pushercm/metrics"
	"github.com/milequest/pushercm/ratelimit"
	"github.com/milequest/pushercm/server"
)

// connectionWiring holds what ConnectionService, metrics and health need.
type connectionWiring struct {
	// limits are the gRPC rate limiters GetRateLimitStatus peeks at: the
	// interceptor's Set (a.limits), so the status shows the buckets calls
	// actually draw from.
	limits *ratelimit.Set
	// driver is the pusher driver, read for its breaker state (nil on
	// embedded); it is the broadcast wiring's driver.
	driver delivery.Driver
	// webhooks is the Pusher webhook ingest (pusher driver only).
	webhooks *webhookin.Receiver
	// webhookStats reads the outgoing webhook sender (nil without one).
	webhookStats func() webhook.Stats

	thresholds health.Thresholds
	errorCodes []codes.Code
	window     *metrics.Window
	svc        *server.Connection

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// wireConnection registers ConnectionService, the /metrics instruments, the
// health evaluator with its periodic refresh, and (pusher driver) the
// webhook ingest route.
func (a *App) wireConnection(context.Context) error {
	cfg := &a.cfg.Config
	w := &connectionWiring{thresholds: cfg.Health, stop: make(chan struct{}), done: make(chan struct{})}
	a.connw = w
	var err error
	if w.errorCodes, err = cfg.Health.Codes(); err != nil {
		return fmt.Errorf("health: %w", err)
	}
	w.window = metrics.NewWindow(cfg.Health.Window)
	w.limits = a.limits
	if w.limits == nil {
		if w.limits, err = ratelimit.NewSet(cfg.RateLimit); err != nil {
			return fmt.Errorf("rateLimit: %w", err)
		}
	}
	// Read lazily: the sender may be wired after this.
	w.webhookStats = func() webhook.Stats {
		if a.webhooks == nil {
			return webhook.Stats{}
		}
		return a.webhooks.Stats()
	}

	// Channel and presence reads go through the driver BroadcastService
	// publishes with, whatever the driver (on pusher: one keep-alive pool,
	// one breaker).
	if a.bcast == nil || a.bcast.driver == nil {
		return fmt.Errorf("connection service: no delivery driver (wireBroadcast must run first)")
	}
	if a.edge == nil {
		w.driver = a.bcast.driver
		w.webhooks, err = webhookin.New(webhookin.Config{
			Key: cfg.Pusher.Key, Secret: cfg.Pusher.Secret, EncryptionMasterKeyBase64: cfg.Pusher.EncryptionMasterKeyBase64,
			MaxAge: cfg.Pusher.WebhookMaxAge,
		})
		if err != nil {
			return err
		}
		a.handleRealtimeLimit("POST /pusher/webhooks", w.webhooks, webhookin.MaxBodyBytes)
		a.closers = append(a.closers, func(context.Context) error { w.webhooks.Close(); return nil })
	}

	w.svc = &server.Connection{
		State:      a.bcast.driver,
		Limits:     w.limits,
		Health:     a.health.Refresh,
		Metrics:    a.reading,
		DriverName: cfg.Driver,
		Started:    func() time.Time { return a.started },
		// No Stopping: the stream stopper ends WatchConnectionEvents with
		// every other stream at shutdown.
	}
	w.svc.Node = a.serverNode
	switch {
	case a.edge != nil && a.cluster != nil:
		p := a.cluster.plane
		p.local, p.svc = edgeSockets{a.edge}, w.svc
		w.svc.Sockets = clusterSockets{edgeSockets{a.edge}, p}
		w.svc.Watch = p.watch
		w.svc.Cluster = p
	case a.edge != nil:
		w.svc.Sockets = edgeSockets{a.edge}
		w.svc.Watch = watchFunc(a.edge)
	case w.webhooks != nil:
		w.svc.Watch = watchFunc(w.webhooks)
	}
	pushercmv1.RegisterConnectionServiceServer(a.grpc, w.svc)

	if err := metrics.Register(a.tel.Meter.Meter("github.com/milequest/pushercm/metrics"), a.tel.Registry, a.obs, a.reading, errorReasons...); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}

	w.window.Add(a.obs.Snapshot(time.Now()))
	a.health.SetEvaluator(a.evaluateHealth)
	go a.refreshHealth(w)
	a.closers = append(a.closers, func(context.Context) error {
		w.stopOnce.Do(func() { close(w.stop) })
		<-w.done
		return nil
	})
	return nil
}

// serverNode describes this node for ListNodes and GetHealthStatus when it
// runs alone (no Redis).
func (a *App) serverNode() server.NodeInfo {
	n := server.NodeInfo{Version: Version, GRPCAddr: a.GRPCAddr(), HTTPAddr: a.HTTPAddr(), OpsAddr: a.OpsAddr(), StartedAt: a.started}
	if a.cluster != nil {
		n.ID = a.cluster.cfg.NodeID
	} else if h, err := os.Hostname(); err == nil {
		n.ID = h
	}
	if a.edge != nil {
		n.Connections = a.edge.Stats().ConnectionsActive
	}
	return n
}

// refreshHealth samples the counters into the window and re-evaluates
// health every interval, so grpc.health.v1 watchers follow without probes.
func (a *App) refreshHealth(w *connectionWiring) {
	defer close(w.done)
	t := time.NewTicker(w.thresholds.Interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case now := <-t.C:
			w.window.Add(a.obs.Snapshot(now))
			a.health.Refresh(context.Background())
		}
	}
}

// errorReasons are the ErrorInfo reasons a call can fail with (the error
// mapping's, the rate limiter's, and UNSPECIFIED for a status without
// ErrorInfo), exported at zero in pushercm_errors_total from the start.
var errorReasons = []string{
	interceptors.ReasonAuthenticationFailed, interceptors.ReasonAuthorizationFailed,
	interceptors.ReasonRateLimited, interceptors.ReasonConnectionPoolExhausted,
	interceptors.ReasonConnectionFailed, interceptors.ReasonMessageDeliveryFailed,
	interceptors.ReasonInvalidArgument, interceptors.ReasonNotFound,
	interceptors.ReasonLimitExceeded, interceptors.ReasonFailedPrecondition,
	interceptors.ReasonWatcherLagged, interceptors.ReasonInternal, "UNSPECIFIED",
}

// reading gathers everything /metrics and GetMetrics show that is not
// counted on a hot path. Called once per scrape.
func (a *App) reading() metrics.Reading {
	w := a.connw
	r := metrics.Reading{RateLimited: map[string]uint64{}, RateAllowed: map[string]uint64{}}
	if a.edge != nil {
		st := a.edge.Stats()
		r.ConnectionsActive = st.ConnectionsActive
		r.ConnectionsTotal = st.ConnectionsTotal
		r.ConnectionsRefused = st.ConnectionsRefused
		r.Subscriptions = st.Subscriptions
		r.OccupiedChannels = int64(st.Channels)
		r.PresenceMembers = int64(st.PresenceMembers)
		r.Published = st.Published
		r.ClientEvents = st.ClientEvents
		r.ClientEventsLimited = st.ClientEventsLimited
		r.SlowConsumersClosed = st.SlowConsumersClosed
		r.StaleClosed = st.StaleClosed
		r.RateLimited["client_events"] = st.ClientEventsLimited
		r.RateAllowed["client_events"] = st.ClientEvents
	}
	r.Delivered = a.obs.Snapshot(time.Time{}).Delivered
	if w.webhookStats != nil {
		ws := w.webhookStats()
		r.WebhooksSent, r.WebhooksFailed, r.WebhooksDropped, r.WebhookBacklog = ws.Sent, ws.Failed, ws.Dropped, ws.Queued
	}
	if w.limits != nil {
		// Fallbacks are exported for every limiter (0 without a Redis
		// store), so dashboards find the series on any node.
		r.RateFallbacks = map[string]uint64{}
		for _, c := range w.limits.Snapshot() {
			r.RateLimited[c.Limiter] = c.Limited
			r.RateAllowed[c.Limiter] = c.Allowed
			if s := a.rateStores[c.Limiter]; s != nil {
				r.RateFallbacks[c.Limiter] = s.fallbacks()
			} else {
				r.RateFallbacks[c.Limiter] = 0
			}
		}
	}
	if w.driver != nil {
		r.Breaker = string(w.driver.Health().Breaker)
	}
	if w.webhooks != nil {
		ws := w.webhooks.Stats()
		r.WebhooksReceived, r.WebhooksRejected = ws.Received, ws.Rejected
		r.OccupiedChannels = int64(ws.OccupiedChannels)
		r.PresenceMembers = int64(ws.PresenceMembers)
	}
	return r
}

// evaluateHealth is the health evaluator: it computes the figures over the
// window and applies the configured thresholds. Cheap: counters, one edge
// Stats call, no I/O.
func (a *App) evaluateHealth(context.Context) health.Report {
	w := a.connw
	now := time.Now()
	cur := a.obs.Snapshot(now)
	rates := w.window.Rates(cur, w.errorCodes)
	r := a.reading()
	f := health.Figures{
		ConnectionsActive: r.ConnectionsActive,
		ConnectionsTotal:  int64(r.ConnectionsTotal),
		MessagesPerSecond: rates.MessagesPerSecond,
		AvgLatency:        rates.AvgLatency,
		P99Latency:        rates.P99Latency,
		Publishes:         rates.Publishes,
		Calls:             rates.Calls,
		ErrorRate:         rates.ErrorRate,
		ErrorsTotal:       int64(cur.FailedCalls()),
		ErrorsByReason:    make(map[string]int64, len(cur.ErrorsByReason)),
		Driver:            a.cfg.Driver,
		BreakerState:      r.Breaker,
		WebhookBacklog:    r.WebhookBacklog,
		RateLimitFallback: a.rateStores.fallingBack(),
	}
	for _, n := range r.ConnectionsRefused {
		f.ConnectionsRefused += int64(n)
	}
	for k, v := range cur.ErrorsByReason {
		f.ErrorsByReason[k] = int64(v)
	}
	if a.edge != nil && a.cfg.Edge.MaxConnections > 0 {
		f.ConnectionsMax = int64(a.cfg.Edge.MaxConnections)
		f.Utilization = float64(f.ConnectionsActive) / float64(f.ConnectionsMax)
	}
	if a.cluster != nil {
		f.RedisConfigured = true
		if err := a.cluster.Err(); err != nil {
			f.RedisError = err.Error()
		}
		if a.cfg.Cluster.RedisDown == config.RedisDownUnhealthy {
			f.RedisDown = health.Unhealthy
		}
	}
	rep := health.Evaluate(w.thresholds, f)
	rep.Figures = &f
	rep.CheckedAt = now
	return rep
}
