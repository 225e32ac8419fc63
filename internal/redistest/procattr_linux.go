package redistest

import "syscall"

// procAttr makes a started redis-server die with the test process, however it
// ends.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
