package edge

import (
	"bytes"
	"net"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/milequest/pushercm/protocol"
)

// RFC 6455 §5.1: a client frame without a mask closes the socket with 1002.
// The Pusher protocol is text only: a binary message closes with 1003.
func TestClientFraming(t *testing.T) {
	s := startServer(t, testConfig())
	ping := []byte(`{"event":"pusher:ping","data":{}}`)
	tests := []struct {
		name  string
		write func(c *tclient) error
		code  ws.StatusCode
	}{
		{"unmasked text", func(c *tclient) error { return ws.WriteFrame(c.conn, ws.NewTextFrame(ping)) }, ws.StatusProtocolError},
		{"unmasked ping", func(c *tclient) error { return ws.WriteFrame(c.conn, ws.NewPingFrame(nil)) }, ws.StatusProtocolError},
		{"unmasked after a masked frame", func(c *tclient) error {
			if err := wsutil.WriteClientText(c.conn, ping); err != nil {
				return err
			}
			return ws.WriteFrame(c.conn, ws.NewTextFrame(bytes.Repeat([]byte("x"), 300)))
		}, ws.StatusProtocolError},
		{"binary", func(c *tclient) error { return wsutil.WriteClientBinary(c.conn, ping) }, ws.StatusUnsupportedData},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := connect(t, s)
			err := c.WriteRaw(func(net.Conn) error { return tc.write(c) })
			if err != nil {
				t.Fatal(err)
			}
			if got := c.waitClose(); got != tc.code {
				t.Fatalf("close %d, want %d", got, tc.code)
			}
		})
	}
	// Masked text frames of every length class still work.
	c := connect(t, s)
	for _, n := range []int{10, 200, 70000} {
		pad := bytes.Repeat([]byte(" "), n)
		err := c.WriteRaw(func(conn net.Conn) error {
			return wsutil.WriteClientText(conn, append(append([]byte(`{"event":"pusher:ping","data":{}`), pad...), '}'))
		})
		if err != nil {
			t.Fatal(err)
		}
		if n > s.cfg.MaxFrameBytes {
			c.expect(protocol.EventError, "")
			continue
		}
		c.expect(protocol.EventPong, "")
	}
}

// The frame walk holds across any split of the stream into reads.
func TestFrameCheckSplits(t *testing.T) {
	var stream bytes.Buffer
	for _, n := range []int{0, 5, 125, 126, 300, 65535, 65536, 70000} {
		f := ws.NewTextFrame(bytes.Repeat([]byte("a"), n))
		f = ws.MaskFrameInPlace(f)
		if err := ws.WriteFrame(&stream, f); err != nil {
			t.Fatal(err)
		}
	}
	all := stream.Bytes()
	for _, step := range []int{1, 2, 3, 7, 13, 4096, len(all)} {
		var fc frameCheck
		for i := 0; i < len(all); i += step {
			if !fc.feed(all[i:min(i+step, len(all))]) {
				t.Fatalf("step %d: masked stream refused at %d", step, i)
			}
		}
		if fc.need != 0 || fc.hn != 0 {
			t.Fatalf("step %d: ended mid-frame (need %d, header %d)", step, fc.need, fc.hn)
		}
		if fc.feed([]byte{0x81, 0x01, 'x'}) {
			t.Fatalf("step %d: unmasked frame accepted", step)
		}
	}
}

// The listener's read limit leaves room for the largest message the upgrader
// takes (4 x MaxFrameBytes): such a message is answered, not cut off.
func TestLargeMessageWithinReadLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxFrameBytes = 512 << 10
	s := startServer(t, cfg)
	c := connect(t, s)
	big := append(append([]byte(`{"event":"pusher:ping","data":{}`), bytes.Repeat([]byte(" "), 3<<19)...), '}')
	err := c.WriteRaw(func(conn net.Conn) error { return wsutil.WriteClientText(conn, big) })
	if err != nil {
		t.Fatal(err)
	}
	if m := c.expect(protocol.EventError, ""); m.errCode() != 0 {
		t.Fatalf("code %d for an oversized message", m.errCode())
	}
	c.send(map[string]any{"event": protocol.EventPing, "data": map[string]any{}})
	c.expect(protocol.EventPong, "")
}

// Splitting a stream into reads never changes the verdict.
func FuzzFrameCheck(f *testing.F) {
	var masked bytes.Buffer
	_ = ws.WriteFrame(&masked, ws.MaskFrameInPlace(ws.NewTextFrame(bytes.Repeat([]byte("a"), 300))))
	f.Add(masked.Bytes(), uint8(7))
	f.Add([]byte{0x81, 0x01, 'x'}, uint8(1))
	f.Add([]byte{0x81, 0xff, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2, 3, 4}, uint8(3))
	f.Fuzz(func(t *testing.T, stream []byte, step uint8) {
		var whole frameCheck
		want := whole.feed(stream)
		var split frameCheck
		got := true
		n := int(step) + 1
		for i := 0; i < len(stream); i += n {
			got = split.feed(stream[i:min(i+n, len(stream))])
		}
		if got != want || (want && (split.need != whole.need || split.hn != whole.hn)) {
			t.Fatalf("split by %d: %v (need %d, hn %d), whole: %v (need %d, hn %d)", n, got, split.need, split.hn, want, whole.need, whole.hn)
		}
	})
}
