//go:build linux && !(amd64 || arm64 || riscv64 || ppc64 || ppc64le || s390x || loong64 || mips64 || mips64le)

package partslots

import "os"

// dropCache is a no-op on 32-bit Linux (fadvise64_64's arguments differ by
// architecture there): the read-back may be served from the page cache.
func dropCache(*os.File) {}
