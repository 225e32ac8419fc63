package edge

import (
	"encoding/binary"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

// Close codes of RFC 6455 §7.4.1 for framing the Pusher protocol does not take.
const (
	closeProtocolError   = 1002 // a client frame without a mask (§5.1)
	closeUnsupportedData = 1003 // a binary message: the Pusher protocol is text only
)

// frameCheck walks the frame headers of a client's byte stream, skipping
// payloads, to find a frame without a mask: nbio's parser unmasks what is
// masked and takes the rest as it is. It keeps no data, only where the next
// header starts, so any split of the stream into reads is fine.
type frameCheck struct {
	need   int64    // payload bytes of the current frame still to skip
	head   [14]byte // the header being read: 2 bytes, extended length, mask key
	hn     int      // bytes of it read
	failed bool
}

// feed reports whether every frame that starts in data is masked. After the
// first false it stays false.
func (f *frameCheck) feed(data []byte) bool {
	for len(data) > 0 && !f.failed {
		if f.need > 0 {
			n := min(int64(len(data)), f.need)
			f.need -= n
			data = data[n:]
			continue
		}
		f.head[f.hn] = data[0]
		f.hn++
		data = data[1:]
		if f.hn < 2 {
			continue
		}
		if f.head[1]&0x80 == 0 {
			f.failed = true
			break
		}
		size := 2 + 4
		switch f.head[1] & 0x7f {
		case 126:
			size += 2
		case 127:
			size += 8
		}
		if f.hn < size {
			continue
		}
		switch n := f.head[1] & 0x7f; n {
		case 126:
			f.need = int64(binary.BigEndian.Uint16(f.head[2:4]))
		case 127:
			// nbio refuses lengths over its message limit; this only has to skip.
			f.need = int64(binary.BigEndian.Uint64(f.head[2:10]) &^ (1 << 63))
		default:
			f.need = int64(n)
		}
		f.hn = 0
	}
	return !f.failed
}

// checkFrames wraps a plain (not TLS) connection's data handler: once the
// connection is a WebSocket, every read is walked by a frameCheck first, and
// from the first unmasked frame on the socket is closed with 1002 and nothing
// more it sends is parsed. It is installed while the connection is still HTTP,
// so it sees the WebSocket stream from its first byte (nbhttp hands reads to
// the WebSocket only once the upgrade has replaced the parser).
func (s *Server) checkFrames(next func(*nbio.Conn, []byte)) func(*nbio.Conn, []byte) {
	var fc frameCheck
	return func(nc *nbio.Conn, data []byte) {
		ws, ok := nc.Session().(*websocket.Conn)
		if !ok {
			next(nc, data)
			return
		}
		if fc.failed {
			return
		}
		if fc.feed(data) {
			next(nc, data)
			return
		}
		if c, ok := ws.Session().(*conn); ok {
			c.closeWith(closeProtocolError, "Unmasked frame", true)
			return
		}
		// Not in the hub yet (or refused): nothing to leave.
		_, _ = nc.Write(closeFrame(closeProtocolError, "Unmasked frame"))
		_ = ws.Close()
	}
}

// plainConn reports whether the parser reads the event loop's bytes as they
// are (no TLS in between), so a frameCheck can read them.
func plainConn(p *nbhttp.Parser) bool {
	hc, ok := p.Conn.(*nbhttp.Conn)
	if !ok {
		return false
	}
	_, ok = hc.Conn.(*nbio.Conn)
	return ok
}
