package deploy_test

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestAlertRules runs promtool on deploy/prometheus: the rules must load
// (`promtool check rules`) and pass their unit tests (`promtool test
// rules alerts_test.yaml`). `make test` installs promtool (Debian's
// prometheus package) first when it is missing.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is required (make promtool installs it with apt-get): %v", err)
	}
	dir := filepath.Join(repoRoot(t), "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
