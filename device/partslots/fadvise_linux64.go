//go:build linux && (amd64 || arm64 || riscv64 || ppc64 || ppc64le || s390x || loong64 || mips64 || mips64le)

package partslots

import (
	"os"
	"syscall"
)

// posixFadvDontNeed is POSIX_FADV_DONTNEED on these architectures.
const posixFadvDontNeed = 4

// dropCache asks the kernel to drop the file's cached pages (clean after
// an fsync), so that the read-back reads the medium.
func dropCache(f *os.File) {
	syscall.Syscall6(syscall.SYS_FADVISE64, f.Fd(), 0, 0, posixFadvDontNeed, 0, 0)
}
