//go:build unix

package ratelimit

import (
	"syscall"
	"time"
)

// The box these benchmarks run on is shared by many processes, so wall-clock
// ns/op mostly measures time spent descheduled. CPU time consumed per op (from
// getrusage) is reported next to it as cpu-ns/op: it does not move with the
// machine's load.
func cpuTime(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const cpuProcess = syscall.RUSAGE_SELF
