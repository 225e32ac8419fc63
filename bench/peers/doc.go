// Package peers starts the servers pushercm is compared with (Centrifugo and
// soketi, installed by `make bench-peers` at pinned versions) and pushercm
// itself as fresh processes on loopback, each from the configuration checked
// in beside this file, and speaks to each through its own interfaces: its
// subscriber WebSocket protocol (Pusher protocol v7 for pushercm and soketi,
// Centrifugo's JSON protocol), its HTTP publish API and, where it has one, its
// gRPC publish call. Every publish is authenticated the server's own way
// (Pusher request signatures, pushercm service tokens, Centrifugo API keys).
//
// The gRPC calls of every server go through one client (GRPC): requests are
// encoded once before the run and sent as bytes with the same conn.Invoke, so
// the load code is the same for pushercm's SendEvent and Centrifugo's Publish.
//
// A Proc is stopped by Stop; a process whose parent dies is not left behind
// (Pdeathsig), so an interrupted run leaves no server running.
package peers
