//go:build !linux

package edge

import (
	"context"
	"log/slog"
	"net"
)

// listenTCP listens on addr for the edge; nbio takes over each socket Go's
// listener accepts. KeepAlive -1: the sweeper pings silent clients and closes
// dead ones, and the HTTP API's idle connections have their own timeout.
func listenTCP(addr string, _ *slog.Logger) (net.Listener, error) {
	return (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", addr)
}
