// Package app wires pushercm together: configuration, telemetry, the JWT
// verifier and channel rules, the delivery driver, the embedded realtime
// server, the gRPC server with its interceptor chain, health and the ops
// listener; and the command line (serve, token, version, rules check, config
// check). Exit status: 0, 1 for an error, 2 for a denied rules check; serve
// exits 1 when a listener stops serving on its own (App.Failed), so that an
// orchestrator restarts it.
//
// New builds everything without listening; Start opens the listeners (tests
// use 127.0.0.1:0 and read the addresses back); Shutdown stops in the order
// load balancers need: NOT_SERVING and /readyz 503 first; then every open
// gRPC stream is ended with UNAVAILABLE; then, side by side and each within
// its own shutdown timeout, the gRPC graceful stop (forced at the deadline)
// and the WebSocket drain.
//
// Why streams are ended rather than waited for: grpc-go's GracefulStop waits
// for every stream, and the health Watch (kept open, without a token, by
// clients with client-side health checking), reflection streams and
// WatchConnectionEvents never end on their own, so one of them held the
// stop until its deadline and left the drain nothing. A grace period
// followed by Stop would also cut unary calls in flight (a publish answered
// with an error after it was delivered), and a wrapper per service would
// miss the next streaming service; one interceptor
// (interceptors.StreamStopper) ends exactly the streams, whatever their
// service, and unary calls still finish.
//
// Cluster mode (redis.url): clusterNode dials Redis in the background; until
// it has, and whenever Redis does not answer, the gRPC rate limiters decide
// with the node's own buckets (clusterRateStore; health and
// pushercm_rate_limit_fallbacks_total say so), idempotency reservations fail
// (clusterIdempotency: the publish is refused, never doubled) and
// cluster.maxConnections admits under the node's own cap
// (clusterConnections).
package app
