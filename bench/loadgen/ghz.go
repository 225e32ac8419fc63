package loadgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// GHZVersion is the ghz release the load tools install and drive when asked
// to (-ghz): the load generator the performance issues name.
const GHZVersion = "v0.120.0"

// InstallGHZ builds ghz at GHZVersion into a new temporary directory (go
// install with GOBIN, so the module and build caches are reused) and returns
// its path and a function that removes the directory.
func InstallGHZ() (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "pushercm-ghz-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	cmd := exec.Command("go", "install", "github.com/bojand/ghz/cmd/ghz@"+GHZVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("installing ghz %s: %w", GHZVersion, err)
	}
	return filepath.Join(dir, "ghz"), cleanup, nil
}

// GHZ is one call for ghz to drive: closed-loop, C concurrent workers over
// Conns connections, the method found by server reflection.
type GHZ struct {
	Bin  string
	Addr string
	Call string // full method name, e.g. grpc.health.v1.Health/Check
	Data string // request as JSON; may use ghz's call templates
	// Binary, when set, gives the requests instead of Data: it is called for
	// each ghz run with that run's duration and returns count-delimited
	// binary messages (protodelim). ghz decodes them once before the run and
	// sends them round-robin, one per call, with no per-call template work.
	// (Many distinct requests still cost ghz more per call than one fixed
	// request: it holds them all decoded.)
	Binary   func(d time.Duration) ([]byte, error)
	Metadata map[string]string // outgoing metadata, e.g. authorization
	C, Conns int
}

// ghzReport is the part of ghz's JSON report (-O json) read here.
type ghzReport struct {
	Count               uint64         `json:"count"`
	Total               time.Duration  `json:"total"`
	Slowest             time.Duration  `json:"slowest"`
	StatusCodeDist      map[string]int `json:"statusCodeDistribution"`
	ErrorDist           map[string]int `json:"errorDistribution"`
	LatencyDistribution []struct {
		Percentage int           `json:"percentage"`
		Latency    time.Duration `json:"latency"`
	} `json:"latencyDistribution"`
}

// Run drives the call with ghz for warmup (unmeasured, a separate ghz
// run), then for d. Each in-flight call at the end of d is waited for
// (--duration-stop wait), so none is counted as an error. The Result's RPS
// counts OK calls over ghz's own measured time, and AllOK adds the warmup's.
// CPU holds, per probe, its reading over the measured ghz process's whole
// life, and one more entry: that process's own CPU time. Both therefore
// include ghz's start-up (reflection, dial) and its report, a small share
// of a run of seconds.
func (g GHZ) Run(warmup, d time.Duration, probes ...func() time.Duration) (Result, error) {
	var warm int64
	if warmup > 0 {
		rep, _, err := g.exec(warmup)
		if err != nil {
			return Result{}, err
		}
		warm = int64(rep.StatusCodeDist["OK"])
	}
	before := read(probes)
	rep, ghzCPU, err := g.exec(d)
	after := read(probes)
	if err != nil {
		return Result{}, err
	}
	ok := rep.StatusCodeDist["OK"]
	r := Result{
		Calls:   int64(ok),
		AllOK:   warm + int64(ok),
		Errors:  int64(rep.Count) - int64(ok),
		Elapsed: rep.Total,
		Max:     rep.Slowest,
	}
	if rep.Total > 0 {
		r.RPS = float64(ok) / rep.Total.Seconds()
	}
	for e := range rep.ErrorDist {
		r.FirstError = e
		break
	}
	for _, l := range rep.LatencyDistribution {
		switch l.Percentage {
		case 50:
			r.P50 = l.Latency
		case 99:
			r.P99 = l.Latency
		}
	}
	for i := range probes {
		r.CPU = append(r.CPU, after[i]-before[i])
	}
	r.CPU = append(r.CPU, ghzCPU)
	return r, nil
}

func (g GHZ) exec(d time.Duration) (ghzReport, time.Duration, error) {
	args := []string{
		"--insecure", "--call", g.Call,
		"-c", strconv.Itoa(g.C), "--connections", strconv.Itoa(max(g.Conns, 1)),
		"-z", d.String(), "--duration-stop", "wait", "-O", "json",
	}
	switch {
	case g.Binary != nil:
		b, err := g.Binary(d)
		if err != nil {
			return ghzReport{}, 0, err
		}
		f, err := os.CreateTemp("", "ghz-data-*.bin")
		if err != nil {
			return ghzReport{}, 0, err
		}
		defer func() { _ = os.Remove(f.Name()) }()
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return ghzReport{}, 0, err
		}
		args = append(args, "--binary-file", f.Name())
	case g.Data != "":
		args = append(args, "-d", g.Data)
	}
	if len(g.Metadata) > 0 {
		md, err := json.Marshal(g.Metadata)
		if err != nil {
			return ghzReport{}, 0, err
		}
		args = append(args, "-m", string(md))
	}
	args = append(args, g.Addr)
	var out, stderr bytes.Buffer
	cmd := exec.Command(g.Bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return ghzReport{}, 0, fmt.Errorf("ghz %s: %w: %s", g.Call, err, bytes.TrimSpace(stderr.Bytes()))
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	var rep ghzReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return ghzReport{}, 0, fmt.Errorf("ghz %s: reading its report: %w", g.Call, err)
	}
	return rep, cpu, nil
}
