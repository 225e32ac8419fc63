package app_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/milequest/pushercm/authz/httpauth"
	"github.com/milequest/pushercm/internal/pushertest/apptest"
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
