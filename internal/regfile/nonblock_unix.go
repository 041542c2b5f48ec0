//go:build unix

package regfile

import "syscall"

const oNonBlock = syscall.O_NONBLOCK
