// Package idempotencytest is a conformance suite for delivery.IdempotencyStore
// implementations (the in-memory store, a Redis store): every implementation must pass
// Run so that the Publisher's at-most-once guarantee holds whichever store is wired in.
package idempotencytest
