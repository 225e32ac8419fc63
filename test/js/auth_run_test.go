package jsinterop_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/milequest/pushercm/authz"
	"github.com/milequest/pushercm/config"
	"github.com/milequest/pushercm/internal/pushertest/apptest"
)

// TestPusherJSAuth runs auth.test.mjs: real pusher-js using pushercm's own
// /pusher/auth and /pusher/user-auth endpoints with a bearer token, against
// a whole pushercm process (app.New + Start on 127.0.0.1:0) in dev mode.
func TestPusherJSAuth(t *testing.T) {
	node := mustLookPath(t, "node")
	npm := mustLookPath(t, "npm")
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	ensureNodeModules(t, npm, dir)

	a := apptest.Start(t, func(c *config.Config) {
		c.Log.Level = "WARN"
		c.Pusher.EncryptionMasterKeyBase64 = testMasterKey
		c.ChannelRules.Rules = []authz.Rule{
			{Name: "encrypted-team", Pattern: "private-encrypted-team-{teamId}", RequiredTeamMembership: "teamId"},
		}
	})
	a.CheckShutdown = true
	cfg, logs := a.Config, a.Logs
	host, port, err := net.SplitHostPort(a.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	user, err := authz.Mint([]byte(cfg.JWT.Secret), authz.MintOptions{Subject: "u1", Teams: []string{"t1"}, Name: "Ann", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := authz.Mint([]byte("not-the-server-secret-0123456789-abcdef"), authz.MintOptions{Subject: "u1", Teams: []string{"t1"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	nctx, ncancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer ncancel()
	cmd := exec.CommandContext(nctx, node, "--test", "--test-reporter=spec", filepath.Join(dir, "auth.test.mjs"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"PUSHERCM_AUTH_HOST="+host,
		"PUSHERCM_AUTH_PORT="+port,
		"PUSHERCM_AUTH_KEY="+cfg.Pusher.Key,
		"PUSHERCM_AUTH_USER_TOKEN="+user,
		"PUSHERCM_AUTH_BAD_TOKEN="+bad,
		"PUSHERCM_AUTH_APP_ID="+cfg.Pusher.AppID,
		"PUSHERCM_AUTH_SECRET="+cfg.Pusher.Secret,
		"PUSHERCM_AUTH_ENCRYPTION_MASTER_KEY_BASE64="+testMasterKey,
	)
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("node --test auth.test.mjs:\n%s", out.String())
	if nctx.Err() != nil {
		t.Fatalf("node did not finish within %s", nodeTimeout)
	}
	if err != nil {
		t.Fatalf("auth.test.mjs failed: %v\npushercm logs:\n%s", err, logs.String())
	}
	if strings.Contains(logs.String(), user) {
		t.Error("pushercm logged the user token")
	}
}
