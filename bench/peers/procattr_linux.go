package peers

import "syscall"

// procAttr starts a server in a process group of its own (an interrupt at the
// terminal reaches this tool alone, which stops its servers) and has it die
// with this process, however that ends.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
