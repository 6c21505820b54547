package testenv

import "syscall"

// serverProcAttr puts a test server in its own process group, killed with the test binary.
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
