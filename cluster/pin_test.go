package cluster

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every command the package builds is pinned, and scripts run through script,
// not rueidis.Lua (see the package comment): a command built without Pin, or a
// rueidis.Lua, brings back the race the pinning removed.
func TestCommandsArePinned(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	unpinned := regexp.MustCompile(`\.(Build|Cache)\(\)(\.Pin\(\))?`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(src), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "//") {
				continue
			}
			for _, m := range unpinned.FindAllStringSubmatch(line, -1) {
				if m[2] == "" {
					t.Errorf("%s:%d: %s without .Pin()", f, i+1, m[0])
				}
			}
			if strings.Contains(line, "rueidis.NewLuaScript") || strings.Contains(line, "rueidis.Lua") {
				t.Errorf("%s:%d: a rueidis.Lua script; use newScript", f, i+1)
			}
		}
	}
}
