//go:build !linux

package testenv

import "syscall"

// serverProcAttr puts a test server in its own process group.
func serverProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
