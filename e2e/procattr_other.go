//go:build !linux

package e2e

import "syscall"

// procAttr: the virtual device runs on Linux hosts only (QEMU's TCG and
// swtpm as packaged by Debian); elsewhere nothing ties the processes to
// the test.
func procAttr() *syscall.SysProcAttr { return nil }
