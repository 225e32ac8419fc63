package loadgen

import (
	"log"
	"os"
	"runtime/pprof"
)

// CPUProfile starts a CPU profile into the file named by the environment
// variable env, if it is set, and returns the function that stops it.
func CPUProfile(env string) (stop func()) {
	path := os.Getenv(env)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}
