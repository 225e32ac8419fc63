// Package console serves the operator console at /console/ on the ops
// listener: health verdict and reasons, live figures and small charts,
// channels and presence members, a live event log, a test-event form, and
// disconnect / terminate actions.
//
// Guarantees:
//   - The console has no logic of its own over pushercm's state. Its JSON
//     API (/console/api/...) is a gateway onto the gRPC API: each request
//     becomes a call of ConnectionService or BroadcastService.SendEvent on
//     the process's own grpc.Server (through an in-memory connection), so
//     it runs the same handlers behind the same interceptors: the same
//     service-token check and scopes (connections:read to look,
//     connections:write to act, events:publish to send), the same rate
//     limits, error mapping and logging.
//   - The token is the caller's: the browser sends it as a bearer token
//     with every request; the console stores none.
//   - Only the methods listed in Methods are reachable; anything else is
//     404.
//   - The charts' latency figures are read from /metrics through one
//     mapping of histogram names in console.js.
//
// Cluster mode is not built: the page shows one node, and the figures are
// the node's. The page keeps its figures per node so that a node list can
// be added when the service answers for several.
package console
