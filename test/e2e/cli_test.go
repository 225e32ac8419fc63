package e2e_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/milequest/pushercm/internal/pushertest/proctest"
)

// execPushercm runs the binary with the cleaned environment plus env and returns its
// stdout, stderr and exit status.
func execPushercm(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(proctest.CleanEnv(), env...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ex *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ex):
		code = ex.ExitCode()
	default:
		t.Fatalf("running %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// TestRulesCheckExitStatus: allow is 0, deny is 2 (as documented), a usage
// or configuration error is 1.
func TestRulesCheckExitStatus(t *testing.T) {
	tok, _, code := execPushercm(t, nil, "token", "--dev", "--sub", "u1", "--teams", "t1")
	if code != 0 {
		t.Fatalf("token: exit %d", code)
	}
	tok = strings.TrimSpace(tok)
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"member of the team", []string{"--channel", "private-team-t1"}, 0},
		{"encrypted twin of a member's team", []string{"--channel", "private-encrypted-team-t1"}, 0},
		{"other team", []string{"--channel", "private-team-t2"}, 2},
		{"encrypted twin of another team", []string{"--channel", "private-encrypted-team-t2"}, 2},
		{"no channel", nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"rules", "check", "--dev", "--token", tok}, tt.args...)
			master := "PUSHER_ENCRYPTION_MASTER_KEY_BASE64=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
			out, errOut, code := execPushercm(t, []string{master}, args...)
			if code != tt.want {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.want, out, errOut)
			}
		})
	}
}

// TestConfigCheck: a valid file plus environment prints the effective
// configuration without its secrets and exits 0; a bad type or an unknown
// key exits 1 naming the YAML path.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const jwtSecret = "jwt-secret-from-the-file-0123456789"
	const serviceSecret = "service-secret-from-the-file-0123456"
	good := write("good.yaml", "pusher: {appId: '1', key: k}\njwt: {secret: "+jwtSecret+", service: {secret: "+serviceSecret+"}}\nedge: {maxConnections: 7}\n")
	env := []string{"PUSHER_SECRET=app-secret-from-env"}

	t.Run("valid", func(t *testing.T) {
		out, errOut, code := execPushercm(t, env, "config", "check", "--config", good)
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
		if !strings.Contains(out, "maxConnections: 7") {
			t.Errorf("effective configuration lacks the file's value:\n%s", out)
		}
		for _, secret := range []string{jwtSecret, serviceSecret, "app-secret-from-env"} {
			if strings.Contains(out, secret) {
				t.Errorf("printed a secret:\n%s", out)
			}
		}
	})
	t.Run("environment read", func(t *testing.T) {
		if _, _, code := execPushercm(t, nil, "config", "check", "--config", good); code != 1 {
			t.Fatalf("exit %d without PUSHER_SECRET, want 1", code)
		}
	})
	t.Run("config from PUSHERCM_CONFIG", func(t *testing.T) {
		if _, errOut, code := execPushercm(t, append(env, "PUSHERCM_CONFIG="+good), "config", "check"); code != 0 {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
	})
	for _, tt := range []struct{ name, file, want string }{
		{"bad type", "edge:\n  maxConnections: lots\n", `edge.maxConnections: want a number, got "lots"`},
		{"unknown key", "edge:\n  maxConections: 5\n", `edge.maxConections: unknown setting (line 2); did you mean edge.maxConnections?`},
		{"invalid value", "edge:\n  maxConnections: -1\n", `edge.maxConnections: must be positive`},
		{"rule that does not compile", "channelRules:\n  rules:\n    - {name: bad, pattern: 'private-x-*', expression: 'claims.'}\n", "channelRules"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := execPushercm(t, nil, "config", "check", "--dev", "--config", write(strings.ReplaceAll(tt.name, " ", "-")+".yaml", tt.file))
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, errOut)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Fatalf("stderr does not say %q:\n%s", tt.want, errOut)
			}
		})
	}
}
