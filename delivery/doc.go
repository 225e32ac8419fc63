// Package delivery publishes events to subscribers: the domain types of a publish, their
// validation against Pusher's limits, idempotency, and the Driver interface implemented
// by delivery/embedded (the in-process edge) and delivery/pusher (Pusher's HTTP API).
//
// Guarantees:
//   - Validation happens before anything is sent and reports every violation of an
//     event at once (*ValidationError, field paths in the gRPC request's terms).
//   - An event id is delivered at most once per idempotency window by one Publisher
//     (or by all Publishers sharing an IdempotencyStore). The id is reserved before
//     delivery, so concurrent repeats answer Duplicate without delivering; it is
//     released when delivery fails, so a retry delivers. Events without an id get a
//     generated one and are never duplicates.
//   - A batch is never sunk by one event: every event has its own outcome or error.
//   - Channel reads of every Driver leave out the internal #server-to-user- channels
//     (Hidden): they are SendToUser's plumbing, not channels an operator manages.
//   - Errors are classified by the sentinels ErrInvalid, ErrNotFound, ErrUnavailable,
//     ErrDeliveryFailed and ErrOutcomeUnknown (an ErrDeliveryFailed) (errors.Is); the
//     transport maps them to statuses in one place.
//
// Not guaranteed: exactly-once delivery across an ambiguous upstream failure. When the
// pusher driver's request reached Pusher but the answer was lost (timeout, reset), the
// driver does not retry (at-most-once: the event was delivered once or not at all) and
// fails with ErrOutcomeUnknown. The idempotency key is released then like after any
// failure, so a caller that retries with the same id may deliver the event a second
// time. The in-memory store forgets the oldest ids early when it is full (counted in
// MemoryStoreStats.Evicted).
//
// Entry points: Publisher (Publish, PublishBatch, SendToUser, SendToUserOnce) over a
// Driver; MemoryStore as the single-node IdempotencyStore (package idempotencytest is
// the conformance suite another store, e.g. Redis, must pass).
//
// This package imports no gRPC and no generated code.
package delivery
