//go:build !linux

package redistest

import "syscall"

// procAttr is nil off Linux, which alone has a parent-death signal: a server of
// Start still stops at its test's cleanup, but the shared one (Addr, when
// nothing answers at DefaultAddr) and those of a killed test process are left
// running.
func procAttr() *syscall.SysProcAttr { return nil }
