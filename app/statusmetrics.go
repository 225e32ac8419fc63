package app

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/milequest/pushercm/edge"
	"github.com/milequest/pushercm/health"
)

// healthValue maps a verdict to pushercm_health_status: 0 healthy (or not
// evaluated yet), 1 degraded, 2 unhealthy — the order of the alert rules'
// comparisons.
func healthValue(s health.Status) float64 {
	switch s {
	case health.Degraded:
		return 1
	case health.Unhealthy:
		return 2
	}
	return 0
}

// registerStatusMetrics adds the series that describe the process rather
// than its traffic: pushercm_build_info, pushercm_health_status (the last
// verdict of the health evaluator, refreshed every health.interval) and
// pushercm_connections_max (the configured connection limit, so dashboards
// and alerts can compute pool use). Call after the wire steps.
func (a *App) registerStatusMetrics() error {
	b := Build()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pushercm_build_info",
		Help: "Build of the running binary: version, commit, build date and Go version. Always 1.",
		ConstLabels: prometheus.Labels{
			"version": b.Version, "commit": b.Commit, "build_date": b.Date,
			"goversion": b.GoVersion, "goos": runtime.GOOS, "goarch": runtime.GOARCH,
		},
	})
	info.Set(1)
	status := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pushercm_health_status",
		Help: "Last health verdict (GetHealthStatus, /readyz): 0 healthy, 1 degraded, 2 unhealthy.",
	}, func() float64 { return healthValue(a.health.Last().Status) })
	cs := []prometheus.Collector{info, status}
	if a.edge != nil {
		limit := float64(a.cfg.Edge.MaxConnections)
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pushercm_connections_max",
			Help: "Configured maximum of WebSocket connections (edge.maxConnections); pool use is pushercm_connections_active / pushercm_connections_max.",
		}, func() float64 { return limit }))
		cs = append(cs, a.backpressureCollectors()...)
	}
	if a.cluster != nil {
		cs = append(cs, a.cluster.collectors()...)
	}
	for _, c := range cs {
		if err := a.tel.Registry.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// backpressureCollectors are the series of congested channels and slow
// consumers: publishes held, how long, how many the bound released, and the
// events dropped for sockets closed with 4100. Read from the edge's counters
// at scrape time.
func (a *App) backpressureCollectors() []prometheus.Collector {
	counter := func(name, help string, f func(edge.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(a.edge.Stats()) })
	}
	return []prometheus.Collector{
		counter("pushercm_publish_held_total", "Publishes held because a channel was congested (its subscribers on a node lagged behind; edge.congestedPercent).",
			func(s edge.Stats) float64 { return float64(s.PublishesHeld) }),
		counter("pushercm_publish_hold_seconds_total", "Time publishes spent held for congested channels, in all.",
			func(s edge.Stats) float64 { return s.PublishHeldTime.Seconds() }),
		counter("pushercm_publish_hold_timeouts_total", "Held publishes released by edge.publishHoldMax while the channel was still congested.",
			func(s edge.Stats) float64 { return float64(s.PublishHoldTimeouts) }),
		counter("pushercm_slow_consumer_messages_dropped_total", "Events not queued for a socket because they would have overflowed its write queue; the socket was closed with 4100 instead.",
			func(s edge.Stats) float64 { return float64(s.SlowConsumerDropped) }),
	}
}
