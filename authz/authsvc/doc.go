// Package authsvc is the transport-neutral front of channel authorization
// and user sign-in: it verifies the user's JWT, asks the authz.Authorizer,
// and records what was decided. The gRPC AuthService (package server) and
// the pusher-js HTTP endpoints (package authz/httpauth) both call it, so
// both paths decide, sign, trace and count identically.
//
// Guarantees:
//
//   - A non-empty token is always verified, even for public channels: a bad
//     token is refused (ErrUnauthenticated), never silently ignored. An empty
//     token means "no principal"; the Authorizer then allows public channels
//     only.
//   - Errors are authz's typed errors (*authz.TokenError, *authz.DeniedError,
//     *authz.ArgumentError) or, for anything unexpected, a wrapped error the
//     transport maps to an internal failure.
//   - One span per decision ("authz.AuthorizeChannel" /
//     "authz.AuthenticateUser", or, with AnnotateParentSpan, the caller's
//     recording span such as otelgrpc's RPC span) with the channel kind, the
//     deciding rule, the outcome and the transport as attributes. The token, the signature, the
//     channel name and user_info are never recorded, in spans or logs.
//   - One counter, pushercm_auth_decisions_total{op, transport, kind, rule,
//     outcome}. Every label is bounded: rule names come from the
//     configuration, the rest are fixed sets (see the Outcome* and Rule*
//     constants).
package authsvc
