// Package client is the Go client of pushercm for internal services: it dials
// the gRPC API with a service token, retries what is safe to retry, and offers
// typed helpers for BroadcastService and for AuthService (AuthorizeChannel,
// AuthenticateUser: what a web app's pusher-js auth endpoint calls).
//
//	c, err := client.Dial(ctx, "pushercm:50051", client.WithToken(tok))
//	...
//	res, err := c.SendEvent(ctx, client.Event{
//		Channels: []string{"private-team-42"}, Name: "activity-logged",
//		JSON: map[string]any{"user": "u1", "steps": 1200},
//	})
//
// Guarantees:
//   - The token travels as per-RPC `authorization: Bearer` metadata, and only
//     over TLS unless WithInsecure was given (for local use and tests).
//   - Only idempotent sends are retried: a send whose event ids are all set.
//     The typed helpers set a UUID id on every event that has none, so their
//     retries can never deliver twice (the server answers duplicate: true).
//     Calls through the raw stubs without ids are never retried.
//     AuthorizeChannel and AuthenticateUser only ask for a signature and are
//     retried like idempotent sends.
//   - RESOURCE_EXHAUSTED is retried only when the server sent
//     google.rpc.RetryInfo, after exactly that delay; UNAVAILABLE is retried
//     with exponential backoff and jitter. No retry outlives the caller's
//     deadline: when the next attempt cannot start in time, the last error is
//     returned at once. Other codes are returned as they are.
//   - SendBatch retries only the events of a batch that failed with one of the
//     retryable codes, and returns one result per event in request order.
//
// Errors are gRPC status errors; ErrorInfo, RetryInfo and BadRequest details
// are on them (see Reason, Metadata and FieldViolations).
//
// The package is its own module (github.com/milequest/pushercm/client, tags
// client/vX.Y.Z) and depends only on grpc, protobuf, genproto and the
// generated API (github.com/milequest/pushercm/gen, tags gen/vX.Y.Z), so a
// service that imports it does not pull in the server.
package client
