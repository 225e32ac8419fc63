// Package pushertest is test support only: a Pusher-protocol client over a real
// WebSocket for tests in any package of this module (edge, delivery, server,
// end-to-end), plus a concurrency-safe log buffer and token minting.
//
// It imports only protocol and authz, so the internal tests of delivery and its
// drivers can use it without an import cycle; the app starter, which needs the
// whole app, lives in the subpackage apptest. Nothing outside _test.go files
// may import either.
//
// Guarantees: every wait is bounded by Wait and fails the test instead of
// hanging; pings from the server are answered automatically; frames are handed
// to the test in the order received; Close (also run at cleanup) waits for the
// reader goroutine, so no goroutine outlives the test.
package pushertest
