package peers

import (
	"context"
	"net"

	edgebench "github.com/milequest/pushercm/bench/edge"
)

// Peer is one kind of server under comparison.
type Peer interface {
	// Name is how the tables call it, with its version.
	Name() string
	// Start runs a fresh server on free loopback ports.
	Start() (*Proc, error)
	// Subscribe connects one subscriber of channel to p and waits until the
	// subscription is confirmed. The socket is handed back with no unread
	// bytes held elsewhere, ready for edgebench.Receiver.AddConn.
	Subscribe(ctx context.Context, p *Proc, channel string) (net.Conn, error)
	// Framing counts the messages in the subscribers' frames (nil: Pusher
	// protocol, the receiver's default).
	Framing() edgebench.Framing
	// Publisher publishes through p's HTTP API.
	Publisher(p *Proc) Publisher
	// GRPC is p's gRPC publish call, or nil when the server has none.
	GRPC(p *Proc) *GRPCCall
}

// Publisher publishes events through a server's HTTP API, one request for
// all of evs (at most 10).
type Publisher interface {
	Publish(ctx context.Context, evs []edgebench.Event) error
}
