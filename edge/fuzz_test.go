package edge

import (
	"net"
	"testing"
	"time"

	"github.com/milequest/pushercm/protocol"
)

// discardConn is a net.Conn that accepts every write.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// FuzzInboundFrame feeds arbitrary messages to the frame handler of a registered
// connection: it must never panic, and the hub must stay consistent.
func FuzzInboundFrame(f *testing.F) {
	for _, s := range []string{
		`{"event":"pusher:subscribe","data":{"auth":"","channel":"x"}}`,
		`{"event":"pusher:subscribe","data":"{\"channel\":\"cache-y\"}"}`,
		`{"event":"pusher:subscribe","data":{"channel":"presence-z","auth":"app-key:00","channel_data":"{\"user_id\":1}"}}`,
		`{"event":"pusher:unsubscribe","data":{"channel":"x"}}`,
		`{"event":"pusher:signin","data":{"auth":"app-key:00","user_data":"{\"id\":\"1\"}"}}`,
		`{"event":"pusher:signin","data":{"auth":"app-key:00","user_data":"{\"id\":\"1\",\"watchlist\":[\"2\"]}"}}`,
		`{"event":"client-a","channel":"private-a","data":{"a":1}}`,
		`{"event":"pusher:ping","data":{}}`,
		`{"event":"pusher:subscribe","data":null}`,
		`not json`, `{}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	cfg := testConfig()
	cfg.ClientEventsEnabled = true
	cfg.UserAuthEnabled = true
	s, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &conn{s: s, sock: sockWriter{nc: discardConn{}}, id: protocol.NewSocketID(), connectedAt: time.Now().UnixNano()}
		s.hub.mu.Lock()
		s.hub.conns[c.id] = c
		s.hub.mu.Unlock()
		s.active.Add(1)
		s.handleFrame(c, data)
		s.handleFrame(c, data)
		s.removeConn(c, 1000, "")
		st := s.Stats()
		s.hub.mu.RLock()
		watching := len(s.hub.watching)
		s.hub.mu.RUnlock()
		if st.ConnectionsActive != 0 || st.Channels != 0 || st.Subscriptions != 0 || st.SignedInUsers != 0 || watching != 0 {
			t.Fatalf("hub not empty after close: %+v", st)
		}
	})
}
