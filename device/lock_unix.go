//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package device

import (
	"errors"
	"syscall"
	"time"
)

// lockFile takes an exclusive flock(2) on f; it fails with ErrStateLocked
// when another open file description still holds it after lockGrace.
// The short wait is not for another agent (that one holds the lock for a
// whole operation): a child process forked by any thread of this process
// (a health check, the reboot command, a test's helper) shares every open
// file description until its exec closes them, so a lock released just
// before the fork stays held for the child's few milliseconds of
// fork-to-exec. A File without a descriptor (a test FS) is not locked.
func lockFile(f File) error {
	fd, ok := f.(interface{ Fd() uintptr })
	if !ok {
		return nil
	}
	deadline := time.Now().Add(lockGrace)
	for {
		err := syscall.Flock(int(fd.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			if time.Now().After(deadline) {
				return ErrStateLocked
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		return err
	}
}

// lockGrace is how long lockFile retries a lock held elsewhere.
const lockGrace = 250 * time.Millisecond
