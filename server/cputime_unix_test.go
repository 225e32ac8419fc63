//go:build unix

package server_test

import (
	"syscall"
	"testing"
	"time"
)

// bcCPUTime is the process's CPU time so far (user + system).
func bcCPUTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
