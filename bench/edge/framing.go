package edgebench

import (
	"errors"
	"net"
)

// Framing reads one text frame of a subscriber protocol other than Pusher's:
// it returns how many published messages the frame carries (a protocol may
// pack several into one frame) and a complete masked client frame to send back
// (a pong), or nil. The latency of a frame is read from its first
// `"data":"<unix nanos>` (see Now).
type Framing func(p []byte) (messages int, reply []byte)

// Conn returns the client's socket for AddConn, or an error when bytes past
// the last frame read are buffered.
func (c *Client) Conn() (net.Conn, error) {
	if c.br.Buffered() > 0 {
		return nil, errors.New("client has unread buffered bytes")
	}
	return c.conn, nil
}
