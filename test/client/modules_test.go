package client_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// serverOnly are modules only the server needs. A service importing the
// client must not find any of them in its module graph (grpc's own
// requirements, envoy's control plane among them, are another matter).
var serverOnly = []string{
	"github.com/milequest/pushercm", // the server module itself
	"github.com/lesismal/nbio",
	"github.com/lesismal/llib",
	"cel.dev/cel-go",
	"github.com/fullstorydev/grpcurl",
	"github.com/jhump/protoreflect",
	"github.com/pusher/pusher-http-go/v5",
	"github.com/spf13/cobra",
	"github.com/gobwas/ws",
	"github.com/golang-jwt/jwt/v5",
	"github.com/fsnotify/fsnotify",
	"github.com/prometheus/client_golang",
	"github.com/grpc-ecosystem/go-grpc-middleware/v2",
	"github.com/grpc-ecosystem/grpc-health-probe",
	"go.yaml.in/yaml/v3",
}

// maxGo is the newest go line the client modules may ask of a service.
const maxGo = "1.24.0"

func goCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, stderr)
	}
	return string(out)
}

// TestModulesStandAlone: the generated API, the client and the examples
// (a service built against the client alone) are modules whose graphs hold
// no server dependency and whose go lines a service on Go 1.24 can use.
func TestModulesStandAlone(t *testing.T) {
	root := filepath.Join("..", "..")
	for _, dir := range []string{"gen", "client", "examples"} {
		t.Run(dir, func(t *testing.T) {
			path := filepath.Join(root, dir)
			var mod struct {
				Module struct{ Path string }
				Go     string
			}
			if err := json.Unmarshal([]byte(goCmd(t, path, "mod", "edit", "-json")), &mod); err != nil {
				t.Fatal(err)
			}
			if mod.Module.Path != "github.com/milequest/pushercm/"+dir {
				t.Fatalf("module %q", mod.Module.Path)
			}
			if goNewer(mod.Go, maxGo) {
				t.Errorf("go %s, want at most %s", mod.Go, maxGo)
			}
			graph := strings.Fields(goCmd(t, path, "list", "-m", "-f", "{{.Path}}", "all"))
			for _, m := range graph {
				for _, bad := range serverOnly {
					if m == bad {
						t.Errorf("module graph holds %s", m)
					}
				}
			}
			// The whole module builds (and vets) on its own.
			goCmd(t, path, "vet", "./...")
		})
	}
}

// goNewer reports whether go version a (like 1.24.0) is newer than b.
func goNewer(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x > y
		}
	}
	return false
}
