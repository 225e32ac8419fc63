// Package embedded is the delivery driver for pushercm's own Pusher-protocol server
// (package edge) running in the same process.
//
// Guarantees:
//   - Publishing is a function call into the edge: no HTTP hop, no JSON re-encoding of
//     the request, and the edge encodes each frame once per channel, not per subscriber.
//   - DeliveredTo is the number of connections the edge wrote the event to.
//   - Edge errors map to delivery sentinels: ErrInvalid and ErrLimit → ErrInvalid,
//     ErrNotFound → ErrNotFound, ErrClosed (shutting down) → ErrUnavailable, anything
//     else → ErrDeliveryFailed.
//   - Channel queries never show the internal #server-to-user- channels
//     (delivery.Hidden): Channels leaves them out and Channel reports them unoccupied;
//     an unoccupied channel is reported with Occupied false rather than an error.
//
// The driver has no retries or breaker: an in-process call either succeeds or fails for
// a reason a retry would not change. Health is always healthy; the edge reports its own
// state to the health evaluator.
package embedded
