// Package edgetest is test support only: it starts the embedded edge
// (edge.Server) on 127.0.0.1:0 for tests outside package edge, and stops it at
// cleanup. It is apart from pushertest because it imports edge, whose own
// internal tests use pushertest (and so keep a small starter of their own,
// edge/helpers_test.go startServer).
package edgetest
