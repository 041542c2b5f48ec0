//go:build unix

package ubootenv

import (
	"fmt"
	"os"
	"syscall"
)

// lock takes the configured lock file (flock, exclusive, as libubootenv
// does) and returns its release.
func (s *Storage) lock() (func(), error) {
	if s.cfg.LockFile == "" {
		return func() {}, nil
	}
	f, err := os.OpenFile(s.cfg.LockFile, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ubootenv: lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ubootenv: locking %s: %w", s.cfg.LockFile, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
