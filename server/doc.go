// Package server implements the pushercm.v1 gRPC services. Handlers only
// translate between protobuf messages and the domain packages (delivery,
// authz, lifecycle, ratelimit, health) and return domain errors; the
// interceptors map those errors to statuses in one place.
//
// ConnectionService depends on interfaces declared here, never on a
// particular driver or on the embedded edge:
//   - ChannelState answers every channel and presence read (ListChannels,
//     GetChannel, ListPresenceMembers) through one path, whatever the
//     driver; the delivery drivers implement it, so the internal
//     #server-to-user- channels are hidden the same way everywhere.
//   - Sockets steers individual connections; without one (the pusher
//     driver) socket-level calls fail with FAILED_PRECONDITION.
//   - Watch hands out lifecycle.Watcher values (EventWatcher) for
//     WatchConnectionEvents, from whichever source the driver has.
//
// A cluster engine plugs in by implementing these three.
package server
