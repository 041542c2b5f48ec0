//go:build unix

package device

import (
	"errors"
	"syscall"
)

// Flags added to every open of the device's own files: never follow a
// symlink planted at the name (O_NOFOLLOW; applied to files the device
// creates or writes), and never block in open(2) on a FIFO (O_NONBLOCK; it
// has no effect on the regular files that openRegular then insists on).
const (
	oNoFollow = syscall.O_NOFOLLOW
	oNonBlock = syscall.O_NONBLOCK
)

// isSymlinkError reports whether err is open(2)'s answer to O_NOFOLLOW on
// a symlink (ELOOP; EMLINK on some BSDs).
func isSymlinkError(err error) bool {
	return errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.EMLINK)
}
