//go:build unix && !linux

package peers

import "syscall"

// procAttr starts a server in a process group of its own (an interrupt at the
// terminal reaches this tool alone, which stops its servers); off Linux,
// which alone has a parent-death signal, a server outlives a killed tool.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
