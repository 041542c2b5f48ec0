package partslots

import (
	"io/fs"
	"syscall"
)

// busyErr is what open(O_EXCL) of a block device in use fails with.
var busyErr error = syscall.EBUSY

// oDirect is O_DIRECT (see directReader); errDirectUnsupported is what
// open fails with where a device does not support it.
const oDirect = syscall.O_DIRECT

var errDirectUnsupported error = syscall.EINVAL

// devNumbers returns a block device's major and minor numbers (Linux's
// dev_t encoding).
func devNumbers(fi fs.FileInfo) (major, minor uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	rdev := uint64(st.Rdev)
	major = (rdev>>8)&0xfff | (rdev>>32)&^0xfff
	minor = rdev&0xff | (rdev>>12)&^0xff
	return major, minor, true
}
