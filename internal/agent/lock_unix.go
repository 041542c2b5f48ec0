//go:build unix

package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lockGrace is how long Lock tries again a lock held elsewhere.
const lockGrace = 250 * time.Millisecond

// Lock takes the agent's lock (an exclusive flock on the configured lock
// file, waiting at most lockGrace), so that no second agent runs the device at the
// same time. It fails with ErrLocked, naming the holder's process ID when
// the file records it. The lock goes with the process: a crash or a power
// cut never leaves it taken.
func (a *Agent) Lock() (unlock func(), err error) {
	path := a.cfg.Lock
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("agent: lock folder: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent: opening the lock %s: %w", path, err)
	}
	// A lock held elsewhere is tried again for lockGrace: a child forked
	// by this or the last agent (the health check, the reboot command)
	// holds every open file description until its exec closes them, so a
	// lock released just before a fork stays taken for a few milliseconds.
	deadline := time.Now().Add(lockGrace)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EWOULDBLOCK && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		break
	}
	if err != nil {
		var holder []byte
		holder = make([]byte, 32)
		n, _ := f.ReadAt(holder, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(holder[:n]))
			if _, perr := strconv.Atoi(pid); perr == nil {
				return nil, fmt.Errorf("%w (process %s holds %s)", ErrLocked, pid, path)
			}
			return nil, fmt.Errorf("%w (%s is locked)", ErrLocked, path)
		}
		return nil, fmt.Errorf("agent: locking %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}
