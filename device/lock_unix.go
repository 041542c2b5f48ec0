//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package device

import (
	"errors"
	"syscall"
)

// lockFile takes an exclusive flock(2) on f without waiting; it fails with
// ErrStateLocked when another open file description holds it. A File
// without a descriptor (a test FS) is not locked.
func lockFile(f File) error {
	fd, ok := f.(interface{ Fd() uintptr })
	if !ok {
		return nil
	}
	for {
		err := syscall.Flock(int(fd.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return ErrStateLocked
		}
		return err
	}
}
