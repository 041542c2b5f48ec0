//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package device

// lockFile is a no-op where flock(2) is missing: the lock is then only
// between the Devices of one process (FileStore's own bookkeeping), and
// the generation check of FileStore.Save still refuses a stale state.
func lockFile(File) error { return nil }
