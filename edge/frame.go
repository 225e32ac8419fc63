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
	h := headerLen(len(payload))
	b := make([]byte, h, h+len(payload))
	putHeader(b, op, len(payload))
	return append(b, payload...)
}

// headerLen is the length of a server frame header for an n-byte payload.
func headerLen(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xFFFF:
		return 4
	}
	return 10
}

// putHeader writes the header of a final, unmasked frame with an n-byte payload
// at the start of b, which holds at least headerLen(n) bytes.
func putHeader(b []byte, op byte, n int) {
	b[0] = 0x80 | op
	switch headerLen(n) {
	case 2:
		b[1] = byte(n)
	case 4:
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
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
// allocation, where encoding into a growing buffer and then framing a copy took
// up to six.
func eventFrame(event, channel, data, userID string) []byte {
	b := make([]byte, frameRoom, frameRoom+48+len(event)+len(channel)+len(data)+len(data)/8+len(userID))
	b = protocol.AppendEvent(b, event, channel, data, userID)
	n := len(b) - frameRoom
	f := b[frameRoom-headerLen(n) : len(b) : len(b)] // full slice: nobody may append into a shared frame
	putHeader(f, opText, n)
	return f
}
