//go:build unix && !linux

package ratelimit

import "syscall"

// Off Linux getrusage has no per-thread figure: the thread benchmarks report
// the process's CPU time, which counts its other goroutines too.
const cpuThread = syscall.RUSAGE_SELF
