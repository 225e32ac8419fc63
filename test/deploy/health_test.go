package deploy_test

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/internal/testcerts"
)

// TestUnreadyServer: with its only connection slot taken, the node is
// unhealthy (pool use 100%): /readyz answers 503, pushercm_health_status is
// 2, and `pushercm healthcheck` exits 1 although the process runs — what a
// container HEALTHCHECK or an exec probe must see. When the slot frees, all
// three recover.
func TestUnreadyServer(t *testing.T) {
	bin := staticBinary(t)
	cfgFile := testcerts.Write(t, t.TempDir(), "pushercm.yaml", []byte("edge: {maxConnections: 1}\n"))
	s := startServer(t, exec.Command(bin, "serve", "--dev", "--config", cfgFile,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0"))
	status := regexp.MustCompile(`(?m)^pushercm_health_status (\d)$`)
	check := func(wantReady int, wantStatus string, wantExit int) {
		t.Helper()
		resp, err := http.Get("http://" + s.ops + "/readyz") // evaluates the verdict afresh
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != wantReady {
			t.Fatalf("/readyz %d, want %d", resp.StatusCode, wantReady)
		}
		if m := status.FindStringSubmatch(get(t, "http://"+s.ops+"/metrics")); m == nil || m[1] != wantStatus {
			t.Fatalf("pushercm_health_status %v, want %s", m, wantStatus)
		}
		if code, out := healthcheck(t, bin, nil, "--addr", s.ops); code != wantExit {
			t.Fatalf("healthcheck exit %d, want %d\n%s", code, wantExit, out)
		}
	}
	check(http.StatusOK, "0", 0)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dialer{Timeout: 10 * time.Second}.Dial(ctx, "ws://"+s.http+"/app/"+config.DevAppKey+"?protocol=7")
	if err != nil {
		t.Fatal(err)
	}
	// The socket holds its slot once the server said connection_established.
	// That frame may have come with the upgrade answer, into Dial's buffer.
	var rw io.ReadWriter = conn
	if br != nil {
		rw = struct {
			io.Reader
			io.Writer
		}{io.MultiReader(br, conn), conn}
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if msg, err := wsutil.ReadServerText(rw); err != nil || !strings.Contains(string(msg), "pusher:connection_established") {
		t.Fatalf("first frame %q, %v; want pusher:connection_established", msg, err)
	}
	check(http.StatusServiceUnavailable, "2", 1)

	_ = conn.Close()
	// The edge notices the closed socket asynchronously: poll readiness.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + s.ops + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still unready 10s after the connection closed")
		}
	}
	check(http.StatusOK, "0", 0)
}
