// Package metrics observes pushercm for dashboards and the health evaluator.
//
// An Observer sits on the hot paths that need one: the edge's publish
// (edge.Metrics: delivery count and the publish call's duration,
// pushercm_publish_duration_seconds), its socket writes (edge.WriteObserver:
// the delivery latency from publish to socket write,
// pushercm_delivery_latency_seconds) and every gRPC call (Finished, from the
// interceptor chain's tracker: calls by code, failures by google.rpc.ErrorInfo
// reason).
// Each costs a few atomic adds per event and one histogram observation. The
// two histograms are Prometheus histograms on the ops registry rather than
// OpenTelemetry ones, because the OpenTelemetry exporter exports a histogram
// only after its first value and dashboards need the series from the start.
//
// Everything else (connections, subscriptions, channels, webhooks, rate
// limits, breaker state) is read when /metrics is scraped, through
// observable instruments registered by Register over Sources, so the hot
// path pays nothing for it.
//
// Guarantees: every instrument is named pushercm_*; labels have bounded
// values (refusal reasons, limiter names, ErrorInfo reasons, gRPC codes in
// upper snake case, CodeNames); labelled counters and both histograms exist
// at zero from the first scrape;
// there are no per-channel, per-user or per-socket labels. Window turns the
// cumulative counters into rates over a sliding evaluation window for
// health (error rate, messages per second, average and p99 latency).
package metrics
