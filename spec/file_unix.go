//go:build unix

package spec

import "syscall"

// oNonBlock makes open(2) of a FIFO return at once (see OpenRegular); it
// has no effect on the regular files OpenRegular then insists on.
const oNonBlock = syscall.O_NONBLOCK
