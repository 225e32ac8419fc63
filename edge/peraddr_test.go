package edge

import (
	"testing"

	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/protocol"
)

const wsPath = "/app/" + testKey + "?protocol=7"

// dialAs connects with headers and returns the client after its first frame.
func dialAs(t *testing.T, s *Server, hdr map[string]string) (*tclient, msg) {
	t.Helper()
	c := dialRaw(t, s, wsPath, hdr, nil)
	close(c.noRead)
	return c, c.next()
}

func expectRefused(t *testing.T, s *Server, hdr map[string]string, code int, reason string) {
	t.Helper()
	before := s.Stats().ConnectionsRefused[reason]
	c, m := dialAs(t, s, hdr)
	if m.Event != protocol.EventError || m.errCode() != code {
		t.Fatalf("first frame %s code %d, want pusher:error %d", m.Event, m.errCode(), code)
	}
	if got := c.waitClose(); int(got) != code {
		t.Fatalf("close %d, want %d", got, code)
	}
	if got := s.Stats().ConnectionsRefused[reason]; got != before+1 {
		t.Fatalf("refused[%s] = %d, want %d", reason, got, before+1)
	}
}

// One address may hold MaxConnectionsPerIP sockets; the next is refused like
// a full pool (4004), under its own reason, and a closed socket frees its slot.
func TestMaxConnectionsPerIP(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnectionsPerIP = 2
	s := startServer(t, cfg)
	a := connect(t, s)
	connect(t, s)
	expectRefused(t, s, nil, protocol.CodeOverQuota, RefusedIPConnections)
	if got := s.Stats().ConnectionsRefused[RefusedPoolExhausted]; got != 0 {
		t.Fatalf("counted as pool exhaustion too: %d", got)
	}
	_ = a.conn.Close()
	pushertest.Eventually(t, "the slot is freed", func() bool { return s.Stats().ConnectionsActive == 1 })
	connect(t, s)
}

// Behind a trusted proxy each forwarded client has its own budget, and the
// forwarded address is the one the connection reports.
func TestPerIPLimitCountsForwardedAddress(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnectionsPerIP = 1
	cfg.TrustedProxies = []string{"127.0.0.1"}
	s := startServer(t, cfg)
	for _, ip := range []string{"198.51.100.1", "198.51.100.2"} {
		c, m := dialAs(t, s, map[string]string{"X-Forwarded-For": "192.0.2.66, " + ip})
		if m.Event != protocol.EventConnectionEstablished {
			t.Fatalf("%s: first frame %s", ip, m.Event)
		}
		_ = c
	}
	expectRefused(t, s, map[string]string{"X-Forwarded-For": "198.51.100.1"}, protocol.CodeOverQuota, RefusedIPConnections)
	expectRefused(t, s, map[string]string{"Forwarded": `for="198.51.100.2:1234"`}, protocol.CodeOverQuota, RefusedIPConnections)
	list, _ := s.Connections(ConnectionFilter{})
	seen := map[string]bool{}
	for _, ci := range list {
		seen[ci.RemoteAddr] = true
	}
	if len(list) != 2 || !seen["198.51.100.1"] || !seen["198.51.100.2"] {
		t.Fatalf("connections report %v", seen)
	}
}

// From a peer that is not a trusted proxy the headers mean nothing: every
// socket counts against the peer's own address.
func TestPerIPLimitIgnoresUntrustedHeaders(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnectionsPerIP = 1
	s := startServer(t, cfg)
	if _, m := dialAs(t, s, map[string]string{"X-Forwarded-For": "198.51.100.1"}); m.Event != protocol.EventConnectionEstablished {
		t.Fatalf("first frame %s", m.Event)
	}
	expectRefused(t, s, map[string]string{"X-Forwarded-For": "198.51.100.2"}, protocol.CodeOverQuota, RefusedIPConnections)
	expectRefused(t, s, map[string]string{"Forwarded": "for=198.51.100.3"}, protocol.CodeOverQuota, RefusedIPConnections)
}

// The per-IP rate limiter is keyed by the same resolved address.
func TestConnectionRateCountsForwardedAddress(t *testing.T) {
	cfg := testConfig()
	cfg.ConnectionsPerIPPerSecond = 1
	cfg.TrustedProxies = []string{"127.0.0.0/8"}
	s := startServer(t, cfg)
	for _, ip := range []string{"198.51.100.1", "198.51.100.2"} {
		if _, m := dialAs(t, s, map[string]string{"X-Forwarded-For": ip}); m.Event != protocol.EventConnectionEstablished {
			t.Fatalf("%s: first frame %s", ip, m.Event)
		}
	}
}
