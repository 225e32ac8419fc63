//go:build !linux

package edge

import (
	"log/slog"
	"net"
)

// directAccept returns ln: elsewhere than on Linux, nbio takes over each
// socket Go's listener accepts.
func directAccept(ln net.Listener, _ *slog.Logger) net.Listener { return ln }
