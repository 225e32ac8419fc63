package app_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/milequest/pushercm/authz/httpauth"
	"github.com/milequest/pushercm/config"
	pushercmv1 "github.com/milequest/pushercm/gen/pushercm/v1"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/pushertest/apptest"
	"github.com/milequest/pushercm/protocol"
)

// An unauthenticated POST announcing 60 MiB to each body-taking route of the
// realtime listener is answered 413 after the client sent 64 KiB of it: the
// limit is the route handler's own, applied before the body is buffered.
func TestRealtimeBodyLimits(t *testing.T) {
	a := apptest.Start(t, nil)
	routes := []struct {
		path  string
		limit int64
	}{
		{httpauth.ChannelAuthPath, httpauth.DefaultMaxBodyBytes},
		{httpauth.UserAuthPath, httpauth.DefaultMaxBodyBytes},
		{"/apps/" + a.Config.Pusher.AppID + "/events", a.Config.Edge.MaxAPIBodyBytes},
	}
	for _, r := range routes {
		t.Run(r.path, func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				length int64
				want   int
			}{
				{"60 MiB", 60 << 20, http.StatusRequestEntityTooLarge},
				{"one over", r.limit + 1, http.StatusRequestEntityTooLarge},
			} {
				conn, err := net.DialTimeout("tcp", a.HTTPAddr(), 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				head := "POST " + r.path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
					strconv.FormatInt(tc.length, 10) + "\r\n\r\n"
				if _, err := io.WriteString(conn, head); err != nil {
					t.Fatal(err)
				}
				if _, err := conn.Write(make([]byte, min(64<<10, tc.length-1))); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					_ = conn.Close()
					t.Fatalf("%s: %v", tc.name, err)
				}
				_ = resp.Body.Close()
				_ = conn.Close()
				if resp.StatusCode != tc.want {
					t.Fatalf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
				}
			}
		})
	}
}

// http.trustedProxies and edge.maxConnectionsPerIp reach the realtime
// listener: through a trusted 127.0.0.1 each forwarded client has its own
// budget, and GetConnection reports the forwarded address.
func TestTrustedProxiesAndPerIPLimit(t *testing.T) {
	a := apptest.Start(t, func(c *config.Config) {
		c.HTTP.TrustedProxies = []string{"127.0.0.1"}
		c.Edge.MaxConnectionsPerIP = 1
	})
	dial := func(xff string) pushertest.Frame {
		t.Helper()
		c := pushertest.Open(t, a.HTTPAddr(), a.Config.Pusher.Key, "", pushertest.Options{Header: http.Header{"X-Forwarded-For": {xff}}})
		return c.Next()
	}
	first := dial("198.51.100.1")
	if first.Event != protocol.EventConnectionEstablished {
		t.Fatalf("first client: %s", first.Event)
	}
	if m := dial("198.51.100.2"); m.Event != protocol.EventConnectionEstablished {
		t.Fatalf("second client: %s", m.Event)
	}
	if m := dial("198.51.100.1"); m.Event != protocol.EventError || !strings.Contains(string(m.Data), strconv.Itoa(protocol.CodeOverQuota)) {
		t.Fatalf("first client's second socket: %s %s", m.Event, m.Data)
	}

	var est struct {
		SocketID string `json:"socket_id"`
	}
	if err := first.DecodeData(&est); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+a.Token(t, "ops", "connections:read"))
	resp, err := pushercmv1.NewConnectionServiceClient(conn).GetConnection(ctx, &pushercmv1.GetConnectionRequest{SocketId: est.SocketID})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetConnection().GetRemoteAddr(); got != "198.51.100.1" {
		t.Fatalf("remote_addr %q, want the forwarded 198.51.100.1", got)
	}
}
