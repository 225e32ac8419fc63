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
// load balancers need: NOT_SERVING and /readyz 503 first, then a graceful
// stop bounded by the shutdown timeout, then force.
package app
