package e2e_test

import (
	"context"
	"os/exec"
	"time"

	"github.com/milequest/pushercm/internal/pushertest/proctest"
)

// execOutput runs a command with the cleaned environment and returns its
// combined output.
func execOutput(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = proctest.CleanEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}
