// Package interceptors holds the gRPC server's interceptor chain: logging
// with slog, mapping of domain errors to statuses, service-token
// authentication with per-method scopes, rate limiting and panic recovery.
//
// Guarantees: every error a client sees is a status with a
// google.rpc.ErrorInfo (domain "pushercm", reason one of the Reason
// constants), plus RetryInfo for rate limits and BadRequest for invalid
// fields; internal causes and panic stacks are logged with the trace id and
// never returned. A panic answers INTERNAL with ErrorInfo{reason: INTERNAL}.
// Map reads only the errcode.Code an error carries (and its Public message,
// Temporary flag and the errcode detail interfaces), in one switch: it
// compares codes, never sentinels, and imports no domain package for them. Errors with no code,
// and codes the switch does not list, are INTERNAL. Health and reflection need no token; every other method
// needs a service token verified by Auth's verifier (the app gives it the
// jwt.service trust, never the user-token keys, so a user token fails with
// UNAUTHENTICATED whatever it claims) carrying the scope MethodScopes names
// in its space-separated "scope" string; methods missing from that table are
// refused.
// At shutdown, StreamStopper ends every open stream with UNAVAILABLE
// (CONNECTION_FAILED) and refuses new ones, so that no stream holds the
// graceful stop; unary calls in flight still finish.
package interceptors
