package loadgen

import (
	"bufio"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"
)

// Server is a pushercm process started by Spawn.
type Server struct {
	GRPCAddr, HTTPAddr, OpsAddr string
	PID                         int
	cmd                         *exec.Cmd
	dir                         string
}

var servingLine = regexp.MustCompile(`msg="pushercm serving".* grpc=(\S+) http=(\S+)(?: ops=(\S+))?`)

// Spawn builds pushercm and runs `serve --dev` on free loopback ports with
// the YAML configuration config, logging at INFO so that nothing is logged
// per call. It exits the tool (log.Fatal) when that fails.
func Spawn(config string) *Server {
	dir, err := os.MkdirTemp("", "pushercm-load-")
	if err != nil {
		log.Fatal(err)
	}
	bin := filepath.Join(dir, "pushercm")
	build := exec.Command("go", "build", "-o", bin, "github.com/milequest/pushercm/cmd/pushercm")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		log.Fatalf("building pushercm: %v", err)
	}
	return start(dir, bin, config)
}

// SpawnBinary is Spawn with an already built pushercm binary.
func SpawnBinary(bin, config string) *Server {
	dir, err := os.MkdirTemp("", "pushercm-load-")
	if err != nil {
		log.Fatal(err)
	}
	return start(dir, bin, config)
}

func start(dir, bin, config string) *Server {
	conf := filepath.Join(dir, "pushercm.yaml")
	if err := os.WriteFile(conf, []byte(config), 0o600); err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--dev", "--config", conf, "--grpc-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0", "--log-level", "INFO")
	cmd.Env = os.Environ()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m:
				default:
				}
			}
		}
	}()
	s := &Server{PID: cmd.Process.Pid, cmd: cmd, dir: dir}
	select {
	case m := <-found:
		s.GRPCAddr, s.HTTPAddr, s.OpsAddr = m[1], m[2], m[3]
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		log.Fatal("pushercm did not start within 60s")
	}
	return s
}

// Stop interrupts the process (graceful shutdown), kills it after 20 s,
// and removes the build directory.
func (s *Server) Stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
	}
	_ = os.RemoveAll(s.dir)
}
