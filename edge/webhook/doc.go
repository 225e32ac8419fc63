// Package webhook sends Pusher-compatible webhooks from the embedded edge server.
//
// A Sender takes lifecycle and client events (channel_occupied, channel_vacated,
// member_added, member_removed, client_event, cache_miss, or any other name) through
// Notify and POSTs them to every configured target as Pusher does:
//
//   - body {"time_ms": <unix ms when the request body was built>, "events": [...]},
//     where every field of an event is a JSON string (pusher-http-go's Webhook type
//     fails on anything else, so data and user_id are never objects or numbers);
//   - headers X-Pusher-Key, X-Pusher-Signature (lowercase hex HMAC-SHA256 of the exact
//     body bytes with the app secret) and exactly "Content-Type: application/json"
//     (the Node SDK compares that header strictly);
//   - up to Config.MaxBatch events per request, waiting at most Config.BatchWindow for a
//     batch to fill (the default of one event per request is Pusher's unbatched shape);
//   - any non-2xx answer or transport error is retried with capped exponential backoff
//     and jitter until Config.RetryFor has passed since the first attempt, then the
//     events are counted as failed.
//
// channel_vacated and member_removed are held for Config.LeaveDelay (3 s by default, as
// Pusher documents). If the matching channel_occupied / member_added (same channel, same
// user id) arrives while the leave is held, both are dropped: the channel was never
// really vacated, the member never really left. When the delay ends, Config.Confirm (if
// set) may still drop the leave: a cluster node asks whether the channel is empty, or the
// member gone, across the cluster, since a rejoin on another node reaches another Sender.
//
// Notify never blocks the caller. Each target has a bounded queue; an event that does
// not fit is dropped and counted (Stats.Dropped) rather than stalling the edge. Delivery
// order is not guaranteed when Config.Workers > 1; receivers can order by time_ms.
//
// Known receiver limitation: pusher-http-go v5.1.1's Client.Webhook tries to decrypt every
// event of a private-encrypted- channel, including channel_occupied/vacated and member
// events that have no data, and rejects the whole request. Pusher sends those events, so
// they are sent here too; with the default MaxBatch of 1 only those requests are affected.
//
// Close stops intake, releases held leave events at once (they are real now), and waits
// until every queued event has been delivered, has failed, or the context ends, at which
// point in-flight retries are abandoned and the remaining events counted as dropped. No
// goroutine outlives Close.
package webhook
