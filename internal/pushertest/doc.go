// Package pushertest is test support only: the one Pusher-protocol client over a
// real WebSocket for tests in any package of this module (edge, delivery,
// server, end-to-end), the one Eventually for conditions a test cannot be told
// about (EventuallyWithin where the bound itself is asserted), a
// concurrency-safe log buffer and token minting.
//
// It imports only protocol and authz, so the internal tests of edge, delivery
// and its drivers can use it without an import cycle; the edge starter
// (subpackage edgetest) and the app starter (subpackage apptest) import what
// they start, so they live apart; the starter of the built binary is
// subpackage proctest. Nothing outside _test.go files may import
// any of them.
//
// Guarantees: every wait is bounded by Wait and fails the test instead of
// hanging; pings from the server are answered automatically unless
// Options.NoPong says otherwise; frames are handed to the test in the order
// received; Close (also run at cleanup) waits for the reader goroutine, so no
// goroutine outlives the test, even one held by Options.Hold.
package pushertest
