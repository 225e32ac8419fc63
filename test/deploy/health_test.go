package deploy_test

import (
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/internal/pushertest"
	"github.com/milequest/pushercm/internal/pushertest/proctest"
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
	s := proctest.Start(t, bin, proctest.CleanEnv(), "serve", "--dev", "--config", cfgFile,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0")
	status := regexp.MustCompile(`(?m)^pushercm_health_status (\d)$`)
	check := func(wantReady int, wantStatus string, wantExit int) {
		t.Helper()
		resp, err := http.Get("http://" + s.OpsAddr + "/readyz") // evaluates the verdict afresh
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != wantReady {
			t.Fatalf("/readyz %d, want %d", resp.StatusCode, wantReady)
		}
		if m := status.FindStringSubmatch(get(t, "http://"+s.OpsAddr+"/metrics")); m == nil || m[1] != wantStatus {
			t.Fatalf("pushercm_health_status %v, want %s", m, wantStatus)
		}
		if code, out := healthcheck(t, bin, nil, "--addr", s.OpsAddr); code != wantExit {
			t.Fatalf("healthcheck exit %d, want %d\n%s", code, wantExit, out)
		}
	}
	check(http.StatusOK, "0", 0)

	// The socket holds its slot once the server said connection_established.
	c := pushertest.Dial(t, s.HTTPAddr, config.DevAppKey, config.DevAppSecret)
	check(http.StatusServiceUnavailable, "2", 1)

	c.Close()
	// The edge notices the closed socket asynchronously: poll readiness.
	pushertest.EventuallyWithin(t, 10*time.Second, "ready again after the connection closed", func() bool {
		resp, err := http.Get("http://" + s.OpsAddr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	check(http.StatusOK, "0", 0)
}
