package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines
// joined.
type instruction struct {
	cmd, args string
	stage     int // index of the FROM it belongs to
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out   []instruction
		cur   string
		stage = -1
	)
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		cur += trimmed
		cmd, args, _ := strings.Cut(cur, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, instruction{cmd: cmd, args: strings.TrimSpace(args), stage: stage})
		cur = ""
	}
	return out
}

// TestDockerfile checks what can be checked without a container engine:
// the builder's Go matches go.mod, the build stage runs `make build` (the
// command TestStaticBinaryHasNoDynamicSection checks), the final stage is
// distroless static, runs as a numeric non-root user, exposes the three
// listeners and health-checks with `pushercm healthcheck`.
func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	ins := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)[1]

	var (
		last      = ins[len(ins)-1].stage
		froms     []string
		buildRuns []string
		user      string
		exposed   []string
		check     string
		entry     string
		goArg     string
	)
	for _, in := range ins {
		switch {
		case in.cmd == "ARG" && in.stage == -1 && strings.HasPrefix(in.args, "GO_VERSION="):
			goArg = strings.TrimPrefix(in.args, "GO_VERSION=")
		case in.cmd == "FROM":
			froms = append(froms, in.args)
		case in.cmd == "RUN" && in.stage < last:
			buildRuns = append(buildRuns, in.args)
		case in.cmd == "USER" && in.stage == last:
			user = in.args
		case in.cmd == "EXPOSE" && in.stage == last:
			exposed = append(exposed, strings.Fields(in.args)...)
		case in.cmd == "HEALTHCHECK" && in.stage == last:
			check = in.args
		case in.cmd == "ENTRYPOINT" && in.stage == last:
			entry = in.args
		}
	}
	if goArg != string(goVersion) {
		t.Errorf("ARG GO_VERSION=%s, go.mod says go %s", goArg, goVersion)
	}
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "golang:${GO_VERSION}") {
		t.Errorf("stages %q: want a golang:${GO_VERSION} builder and a run stage", froms)
	}
	if len(froms) > 0 && !strings.HasPrefix(froms[len(froms)-1], "gcr.io/distroless/static") {
		t.Errorf("run stage FROM %s: want distroless static", froms[len(froms)-1])
	}
	if !slices.ContainsFunc(buildRuns, func(r string) bool { return strings.HasPrefix(r, "make build ") }) {
		t.Errorf("the build stage does not run make build: %q", buildRuns)
	}
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "0" || uid == "root" || !regexp.MustCompile(`^[0-9]+$`).MatchString(uid) {
		t.Errorf("USER %q: want a numeric non-root user", user)
	}
	slices.Sort(exposed)
	if want := []string{"50051", "6001", "9464"}; !slices.Equal(exposed, want) {
		t.Errorf("EXPOSE %v, want %v", exposed, want)
	}
	_, cmd, ok := strings.Cut(check, "CMD ")
	var argv []string
	if !ok || json.Unmarshal([]byte(cmd), &argv) != nil || !slices.Equal(argv, []string{"/pushercm", "healthcheck"}) {
		t.Errorf("HEALTHCHECK %q: want CMD [\"/pushercm\", \"healthcheck\"]", check)
	}
	if entry != `["/pushercm"]` {
		t.Errorf("ENTRYPOINT %s", entry)
	}
}

// TestDockerfileDownloadsModules: the build stage's `go mod download` runs
// on the files copied before it, and go.mod replaces modules with
// directories of this repository, whose go.mod files it reads (without them
// it fails: "reading client/go.mod: no such file or directory"). Here those
// copies are made into an empty directory and the module graph is loaded
// from them, as the download would.
func TestDockerfileDownloadsModules(t *testing.T) {
	root := repoRoot(t)
	ins := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	dir := t.TempDir()
	downloads := false
	for _, in := range ins {
		if in.stage != 0 {
			continue
		}
		if in.cmd == "RUN" && strings.HasPrefix(in.args, "go mod download") {
			downloads = true
			break
		}
		if in.cmd != "COPY" {
			continue
		}
		f := strings.Fields(in.args)
		if len(f) < 2 || strings.HasPrefix(f[0], "--") {
			t.Fatalf("COPY %s: want sources and a destination", in.args)
		}
		dst := filepath.Join(dir, f[len(f)-1])
		for _, src := range f[:len(f)-1] {
			b, err := os.ReadFile(filepath.Join(root, src))
			if err != nil {
				t.Fatalf("COPY %s: %v", in.args, err)
			}
			to := dst
			if strings.HasSuffix(f[len(f)-1], "/") {
				to = filepath.Join(dst, filepath.Base(src))
			}
			if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(to, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !downloads {
		t.Fatal("the build stage has no RUN go mod download")
	}
	cmd := exec.Command("go", "list", "-m", "all")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go list -m all on what the Dockerfile copies before go mod download: %v\n%s", err, out)
	}
}
