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
// In cluster mode (Redis set, or ListNodes answering with more than one
// node) the page adds a Nodes panel from ListNodes, marking the node that
// serves it, and a selector for the figures: the whole cluster
// (GetMetrics without node_id, labelled cluster-wide; the health verdict is
// then this node's, since health is per node) or one node (its node_id to
// GetMetrics and GetHealthStatus). The page keeps a history per choice.
// The channel, connection and event lists cover every node (the service
// answers them for the cluster), and each logged event shows its node. The
// latency charts read this node's /metrics only and say so.
package console
