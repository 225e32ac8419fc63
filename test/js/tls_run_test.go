package jsinterop_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/internal/pushertest/apptest"
	"github.com/milequest/pushercm/internal/pushertest/proctest"
	"github.com/milequest/pushercm/internal/testcerts"
)

// TestPusherJSOverTLS runs tls.test.mjs: real pusher-js over wss:// and the
// npm pusher SDK over https:// against a whole pushercm process whose
// realtime listener serves a certificate of a CA made here, which node
// trusts through NODE_EXTRA_CA_CERTS.
func TestPusherJSOverTLS(t *testing.T) {
	node := mustLookPath(t, "node")
	npm := mustLookPath(t, "npm")
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	ensureNodeModules(t, npm, dir)

	certDir := t.TempDir()
	ca := testcerts.NewCA(t, "pushercm js test CA")
	cert, key := ca.Server(t, "pushercm")
	caFile := testcerts.Write(t, certDir, "ca.crt", ca.PEM)
	a := apptest.Start(t, func(c *config.Config) {
		c.Log.Level = "WARN"
		c.HTTP.TLS.CertFile = testcerts.Write(t, certDir, "tls.crt", cert)
		c.HTTP.TLS.KeyFile = testcerts.Write(t, certDir, "tls.key", key)
	})
	a.CheckShutdown = true
	cfg, logs := a.Config, a.Logs
	_, port, err := net.SplitHostPort(a.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	user, err := authz.Mint([]byte(cfg.JWT.Secret), authz.MintOptions{Subject: "u1", Teams: []string{"t1"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	nctx, ncancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer ncancel()
	cmd := exec.CommandContext(nctx, node, "--test", "--test-reporter=spec", filepath.Join(dir, "tls.test.mjs"))
	cmd.Dir = dir
	cmd.Env = append(proctest.CleanEnv(),
		"NODE_EXTRA_CA_CERTS="+caFile,
		// The certificate names 127.0.0.1 and localhost; localhost checks
		// the name (SNI) as a browser would.
		"PUSHERCM_TLS_HOST=localhost",
		"PUSHERCM_TLS_PORT="+port,
		"PUSHERCM_TLS_APP_ID="+cfg.Pusher.AppID,
		"PUSHERCM_TLS_KEY="+cfg.Pusher.Key,
		"PUSHERCM_TLS_SECRET="+cfg.Pusher.Secret,
		"PUSHERCM_TLS_USER_TOKEN="+user,
	)
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("node --test tls.test.mjs:\n%s", out.String())
	if err != nil {
		t.Fatalf("node --test tls.test.mjs: %v\npushercm log:\n%s", err, logs.String())
	}
}
