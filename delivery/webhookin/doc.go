// Package webhookin receives Pusher webhooks on the pusher driver
// (POST /pusher/webhooks) and keeps a local view of channel occupancy and
// presence from them, so that operators can watch lifecycle events and see
// occupancy without asking Pusher.
//
// Guarantees: a request is applied only after pusher-http-go's Webhook()
// verified its X-Pusher-Key and X-Pusher-Signature; a bad or missing
// signature answers 401 and changes nothing, a signed but malformed body
// 400. Bodies over MaxBodyBytes answer 413. A verified webhook whose time_ms
// is outside Config.MaxAge of now (default 5 minutes, either way) answers 401,
// one without time_ms 400, and one whose signature was already accepted within
// that window 409 (a replay, or a retry of a request already applied); all of
// them change nothing and count as rejected. The remembered signatures are
// bounded by the window and by a cap of 100,000 (the oldest forgotten first).
// Events apply in the order of
// the request; each one is emitted to watchers as a lifecycle.Event
// (ChannelOccupied, ChannelVacated, MemberAdded, MemberRemoved) through a
// lifecycle.Hub, the same watcher mechanism the embedded edge uses. Watchers
// have bounded buffers: one that falls behind is cut off with
// lifecycle.ErrLagged and never slows the handler down; after Close every
// watcher ends with ErrClosed (which wraps delivery.ErrUnavailable). The view is
// eventually consistent with Pusher (webhooks can arrive late, be retried
// or be lost); it is a monitoring aid, not an authority.
package webhookin
