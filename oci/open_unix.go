//go:build unix

package oci

import "syscall"

// FetchFile's partial file is never a symlink followed nor a FIFO waited on.
const (
	oNoFollow = syscall.O_NOFOLLOW
	oNonBlock = syscall.O_NONBLOCK
)
