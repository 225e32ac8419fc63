// Package pusher is the delivery driver for Pusher Channels (or any Pusher-compatible
// HTTP API, such as another pushercm's edge or soketi), built on pusher-http-go v5.
//
// Guarantees:
//   - Every HTTP attempt is bounded by Config.RequestTimeout and by the caller's context
//     (deadline and cancellation). pusher-http-go takes no context, so each attempt uses a
//     copy of the SDK client whose http.Client carries the attempt's context into the
//     shared, pooled keep-alive transport. That transport is wrapped with otelhttp, so
//     API calls are child spans of the caller's span (named pusher.trigger,
//     pusher.batch_events, ...; channel names stay out of span names).
//   - Retries: network errors, timeouts, 5xx and 429 are retried ReconnectAttempts times
//     (publishes only when the request cannot have reached Pusher; see below)
//     with exponential backoff (cenkalti/backoff: ReconnectDelay·BackoffMultiplier^n,
//     capped at MaxReconnectDelay, jittered within [d/2, d]; a longer Retry-After on a
//     429 or 503 is honoured up to MaxReconnectDelay). Other 4xx are never retried: 400/413/
//     422 → delivery.ErrInvalid, 404 → delivery.ErrNotFound, 401/403 and the rest →
//     delivery.ErrDeliveryFailed. Requests refused by the SDK itself (e.g. no encryption
//     key for a private-encrypted- channel) → delivery.ErrInvalid. Exhausted retries →
//     delivery.ErrDeliveryFailed, or delivery.ErrUnavailable when the host could not be
//     connected to at all, or, when the last answer was a 429, a
//     *delivery.UpstreamRateLimit (delivery.ErrRateLimited, RATE_LIMITED with the
//     upstream's Retry-After, else the next backoff, as the retry hint). The
//     *StatusError of the last HTTP answer is kept in the chain.
//   - Circuit breaker (sony/gobreaker): BreakerFailureThreshold consecutive failed
//     attempts open it; while open every call fails at once with delivery.ErrUnavailable
//     and sends nothing. After BreakerOpenTimeout one probe is let through; success
//     closes it, failure re-opens it. 4xx answers count as success (the upstream is up);
//     the caller's own deadline counts as neither. Health() reports the state without
//     I/O.
//   - Batches go out as batch_events requests of at most 10 single-channel events;
//     events with several channels are triggered individually (at most 100 channels per
//     request). A failing request fails exactly the events it carried; a batch that
//     pusher-http-go refuses before sending (one bad event) is resent event by event.
//
// delivered_to: triggers ask info=subscription_count (plus user_count when a presence
// channel is among the channels) and sum, per channel, subscription_count, falling back
// to user_count where Pusher reports only that. subscription_count counts connections,
// which matches the embedded driver's "connections written to"; user_count counts
// distinct users and is used only when no connection count exists. Pusher enables
// subscription counting per app; for apps without it set SkipDeliveryCounts, and
// delivered_to is 0. SendToUser always reports 0 (the SDK asks no info for it).
//
// No double delivery: Pusher's HTTP API has no idempotency key, so a publish (trigger,
// batch_events, send to user) that got a connection but no answer (a reset or a
// timeout: Pusher may have delivered it) is not retried; it fails with
// delivery.ErrOutcomeUnknown (MESSAGE_DELIVERY_FAILED, INTERNAL, metadata
// outcome=unknown). The price is at-most-once for those failures: when the request was
// in fact lost before Pusher took it, the event is not delivered. Failures to connect
// (refused, DNS, TLS handshake) and 5xx/429 answers are retried as above; queries are
// retried after any failure.
//
// Channel queries (Channels, Channel, PresenceMembers) use Pusher's HTTP API with the
// same retry and breaker policy; presence members carry ids only.
package pusher
