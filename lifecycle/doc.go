// Package lifecycle is the vocabulary of connection lifecycle and message
// events (connected, disconnected, subscribed, unsubscribed, member
// added/removed, channel occupied/vacated, and the published, client-event
// and webhook events the console shows) and the one watcher mechanism that
// hands them out.
//
// Every event source uses it: the embedded edge for its live sockets, the
// pusher driver's webhook ingest for its view, and, later, a cluster engine.
// ConnectionService.WatchConnectionEvents reads *Watcher values and knows
// no source.
//
// Guarantees:
//   - A Hub delivers each Event to every watcher in the order Emit was
//     called. Message events (EventType.IsMessage) go only to watchers made
//     by WatchMessages; while there are none, WatchingMessages is one atomic
//     load, so sources skip building them.
//   - Emit never blocks: a watcher whose buffer is full is cut off, its C is
//     closed and its Err returns ErrLagged; other watchers are unaffected.
//   - After Hub.Close(err) every watcher, present or future, ends with err.
//     Closing a Watcher leaves Err nil. C is closed exactly once.
//   - The package imports nothing from the module, so any source or
//     consumer may depend on it.
package lifecycle
