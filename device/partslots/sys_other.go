//go:build !linux

package partslots

import (
	"errors"
	"io/fs"
	"os"
)

// busyErr never matches outside Linux.
var busyErr = errors.New("partslots: not used")

// oDirect is Linux's O_DIRECT: elsewhere, block devices are read buffered.
const oDirect = 0

var errDirectUnsupported = errors.New("partslots: not used")

// devNumbers is Linux's; elsewhere the mount table is not consulted.
func devNumbers(fs.FileInfo) (major, minor uint64, ok bool) { return 0, 0, false }

// dropCache is a no-op outside Linux.
func dropCache(*os.File) {}
