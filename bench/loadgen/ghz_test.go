package loadgen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeGHZ writes an executable standing in for ghz: it appends its
// arguments to args.txt and prints report as ghz's JSON report would.
func fakeGHZ(t *testing.T, report string) (bin, argsFile string) {
	t.Helper()
	dir := t.TempDir()
	argsFile = filepath.Join(dir, "args.txt")
	bin = filepath.Join(dir, "ghz")
	script := "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> " + argsFile + "\necho '---' >> " + argsFile + "\ncat <<'REPORT'\n" + report + "\nREPORT\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, argsFile
}

func TestGHZRunReadsTheReport(t *testing.T) {
	// Durations in ghz's report are nanoseconds: 2 s total, 1 ms p50, 8 ms p99.
	report := `{"count":1010,"total":2000000000,"slowest":12000000,` +
		`"statusCodeDistribution":{"OK":1000,"Unavailable":10},` +
		`"errorDistribution":{"rpc error: code = Unavailable desc = closing":10},` +
		`"latencyDistribution":[{"percentage":50,"latency":1000000},{"percentage":99,"latency":8000000}]}`
	bin, argsFile := fakeGHZ(t, report)
	probe := 0
	g := GHZ{
		Bin: bin, Addr: "127.0.0.1:1", Call: "pkg.Svc/Method", C: 16, Conns: 2,
		Data: `{"a":"{{.UUID}}"}`, Metadata: map[string]string{"authorization": "Bearer x"},
	}
	r, err := g.Run(time.Second, 3*time.Second, func() time.Duration { probe++; return time.Duration(probe) * time.Second })
	if err != nil {
		t.Fatal(err)
	}
	if r.Calls != 1000 || r.Errors != 10 || r.AllOK != 2000 {
		t.Errorf("calls %d errors %d allOK %d, want 1000, 10 and 2000 (warmup's 1000 OK included)", r.Calls, r.Errors, r.AllOK)
	}
	if r.RPS != 500 {
		t.Errorf("RPS %v, want 500 (OK calls over ghz's total)", r.RPS)
	}
	if r.P50 != time.Millisecond || r.P99 != 8*time.Millisecond || r.Max != 12*time.Millisecond || r.Elapsed != 2*time.Second {
		t.Errorf("p50 %s p99 %s max %s elapsed %s", r.P50, r.P99, r.Max, r.Elapsed)
	}
	if !strings.Contains(r.FirstError, "Unavailable") {
		t.Errorf("first error %q", r.FirstError)
	}
	// The probe is read around the measured run only, not the warmup: 1 s.
	if len(r.CPU) != 2 || r.CPU[0] != time.Second {
		t.Errorf("CPU %v, want the probe's 1 s and ghz's own", r.CPU)
	}

	raw, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	runs := strings.Split(strings.TrimSuffix(string(raw), "---\n"), "---\n")
	if len(runs) != 2 {
		t.Fatalf("ghz ran %d times, want 2 (warmup, measured)", len(runs))
	}
	for i, want := range []string{"1s", "3s"} {
		args := strings.Split(strings.TrimSpace(runs[i]), "\n")
		joined := strings.Join(args, " ")
		for _, w := range []string{
			"--insecure", "--call pkg.Svc/Method", "-c 16", "--connections 2", "-z " + want,
			"--duration-stop wait", "-O json", `-d {"a":"{{.UUID}}"}`, `-m {"authorization":"Bearer x"}`,
		} {
			if !strings.Contains(joined, w) {
				t.Errorf("run %d: args %q lack %q", i, joined, w)
			}
		}
		if args[len(args)-1] != "127.0.0.1:1" {
			t.Errorf("run %d: last arg %q, want the address", i, args[len(args)-1])
		}
	}
}

func TestGHZRunFails(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "ghz")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'unknown service' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := GHZ{Bin: bin, Addr: "127.0.0.1:1", Call: "x.Y/Z", C: 1}.Run(0, time.Second)
	if err == nil || !strings.Contains(err.Error(), "unknown service") {
		t.Fatalf("err %v, want ghz's stderr in it", err)
	}
	bin2, _ := fakeGHZ(t, "not json")
	if _, err := (GHZ{Bin: bin2, Addr: "127.0.0.1:1", Call: "x.Y/Z", C: 1}).Run(0, time.Second); err == nil {
		t.Fatal("a report that is not JSON was accepted")
	}
}

// TestGHZRunBinary: with Binary, each run gets its own data file, made for
// its duration, passed with --binary-file (and no -d), and removed after.
func TestGHZRunBinary(t *testing.T) {
	report := `{"count":1,"total":1000000000,"statusCodeDistribution":{"OK":1}}`
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args.txt")
	bin := filepath.Join(dir, "ghz")
	// Record the arguments, and copy the data file ghz is given.
	script := "#!/bin/sh\nprev=\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> " + argsFile +
		"; if [ \"$prev\" = --binary-file ]; then cat \"$a\" >> " + filepath.Join(dir, "data.txt") + "; fi; prev=$a; done\necho '---' >> " + argsFile +
		"\ncat <<'REPORT'\n" + report + "\nREPORT\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var made []time.Duration
	g := GHZ{Bin: bin, Addr: "127.0.0.1:1", Call: "pkg.Svc/Method", C: 1, Data: "ignored",
		Binary: func(d time.Duration) ([]byte, error) {
			made = append(made, d)
			return []byte("run" + d.String() + ";"), nil
		}}
	if _, err := g.Run(time.Second, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if len(made) != 2 || made[0] != time.Second || made[1] != 2*time.Second {
		t.Fatalf("Binary called for %v, want the warmup's 1s and the run's 2s", made)
	}
	data, err := os.ReadFile(filepath.Join(dir, "data.txt"))
	if err != nil || string(data) != "run1s;run2s;" {
		t.Fatalf("ghz read %q (%v), want each run's own data", data, err)
	}
	raw, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range strings.Split(strings.TrimSuffix(string(raw), "---\n"), "---\n") {
		args := strings.Split(strings.TrimSpace(run), "\n")
		for i, a := range args {
			if a == "-d" {
				t.Errorf("-d passed with Binary: %q", args)
			}
			if a == "--binary-file" {
				if _, err := os.Stat(args[i+1]); !os.IsNotExist(err) {
					t.Errorf("data file %s left behind (%v)", args[i+1], err)
				}
			}
		}
	}
	g.Binary = func(time.Duration) ([]byte, error) { return nil, os.ErrPermission }
	if _, err := g.Run(0, time.Second); err == nil {
		t.Fatal("an error from Binary was not returned")
	}
}
