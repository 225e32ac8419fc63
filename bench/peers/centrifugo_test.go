package peers

import (
	"bytes"
	"testing"
)

// TestCentrifugoFraming checks the counting of Centrifugo's frames: several
// pushes a frame, one JSON object a line, and "{}" pings that want a pong.
func TestCentrifugoFraming(t *testing.T) {
	f := Centrifugo{}.Framing()
	pub := `{"push":{"channel":"fan-0","pub":{"data":"1765065600000000000"}}}`
	for _, tc := range []struct {
		name  string
		frame string
		n     int
		pong  bool
	}{
		{name: "one push", frame: pub, n: 1},
		{name: "three pushes", frame: pub + "\n" + pub + "\n" + pub, n: 3},
		{name: "ping", frame: `{}`, pong: true},
		{name: "ping after a push", frame: pub + "\n{}", n: 1, pong: true},
		{name: "reply", frame: `{"id":2,"subscribe":{}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, reply := f([]byte(tc.frame))
			if n != tc.n {
				t.Errorf("messages = %d, want %d", n, tc.n)
			}
			if got := reply != nil; got != tc.pong {
				t.Fatalf("pong = %v, want %v", got, tc.pong)
			}
			// A masked client text frame whose (zero) mask leaves "{}".
			if tc.pong && !bytes.Equal(reply[len(reply)-2:], []byte("{}")) {
				t.Errorf("pong frame %x", reply)
			}
		})
	}
}
