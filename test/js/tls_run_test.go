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

	"github.com/milequest/pushercm/app"
	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
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
	cfg := config.Default()
	cfg.Dev = true
	cfg.GRPC.Addr, cfg.HTTP.Addr, cfg.Ops.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Log.Level = "WARN"
	cfg.HTTP.TLS.CertFile = testcerts.Write(t, certDir, "tls.crt", cert)
	cfg.HTTP.TLS.KeyFile = testcerts.Write(t, certDir, "tls.key", key)
	caFile := testcerts.Write(t, certDir, "ca.crt", ca.PEM)
	filled := cfg.ApplyDev()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &authLogs{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := app.New(ctx, &config.Loaded{Config: cfg, DevFilled: filled}, app.Options{LogOutput: logs})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	if err := a.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
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
	cmd.Env = append(cleanEnv(),
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
