package e2e

import "syscall"

// procAttr makes QEMU and swtpm die with the test process (a test killed
// by its timeout or by ^C leaves no machine running).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
