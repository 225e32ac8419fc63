package edge

import (
	"encoding/binary"

	"github.com/milequest/pushercm/protocol"
)

// WebSocket opcodes used by the server.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// wsFrame builds a complete unmasked server frame (FIN set). Server frames carry no mask,
// so one frame's bytes can be written unchanged to every subscriber.
func wsFrame(op byte, payload []byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = make([]byte, 2, 2+n)
		b[1] = byte(n)
	case n <= 0xFFFF:
		b = make([]byte, 4, 4+n)
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = make([]byte, 10, 10+n)
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[0] = 0x80 | op
	return append(b, payload...)
}

// closeFrame builds a close frame; the reason is cut to fit a control frame (125 bytes).
func closeFrame(code int, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	return wsFrame(opClose, append(p, reason...))
}

// frameRoom is the longest frame header; eventFrame encodes after it.
const frameRoom = 10

// eventFrame encodes a Pusher event straight into a complete text frame: one
// allocation, where encoding into a buffer and then framing a copy took two or
// three per publish.
func eventFrame(event, channel, data, userID string) []byte {
	b := make([]byte, frameRoom, frameRoom+48+len(event)+len(channel)+len(data)+len(data)/8+len(userID))
	b = protocol.AppendEvent(b, event, channel, data, userID)
	n := len(b) - frameRoom
	h := 10
	switch {
	case n < 126:
		h = 2
	case n <= 0xFFFF:
		h = 4
	}
	f := b[frameRoom-h : len(b) : len(b)] // full slice: nobody may append into a shared frame
	f[0] = 0x80 | opText
	switch h {
	case 2:
		f[1] = byte(n)
	case 4:
		f[1] = 126
		binary.BigEndian.PutUint16(f[2:], uint16(n))
	default:
		f[1] = 127
		binary.BigEndian.PutUint64(f[2:], uint64(n))
	}
	return f
}
