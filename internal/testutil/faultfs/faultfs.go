// Package faultfs is a device.FS that loses power: tests of device's
// backends run an operation once per step it makes, cutting power at that
// step, and check what a restarted device finds on disk.
//
// A step is a mutating call: a write (torn: half of it reaches the file), a
// sync, a truncate, a rename, a directory sync, a removal, or an open that
// truncates. The failing step and every call after it fail with ErrCrash,
// as on a dead device, which writes nothing more: only the cut write is
// torn. device's own power-loss tests use it too.
package faultfs

import (
	"errors"
	"io/fs"
	"os"
	"sync"

	"github.com/upkit/upkit/device"
)

// ErrCrash is the error of every call at and after the power cut.
var ErrCrash = errors.New("faultfs: simulated power loss")

// FS is a device.FS over the operating system's files that fails at its
// FailAt-th mutating step (1-based; 0 never fails).
type FS struct {
	inner device.OSFS
	mu    sync.Mutex
	// FailAt is the step that loses power.
	FailAt  int
	steps   int
	crashed bool
}

// New returns an FS that loses power at step failAt.
func New(failAt int) *FS { return &FS{FailAt: failAt} }

// Steps returns the mutating steps made so far (with FailAt 0, how many an
// operation takes).
func (f *FS) Steps() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.steps
}

// Crashed reports whether power was lost.
func (f *FS) Crashed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.crashed
}

func (f *FS) step() error {
	_, err := f.Cut()
	return err
}

// Cut counts one mutating step of anything sharing this power supply (a
// TPM command, in the TPM-backed store's tests): now is true when power is
// lost at this very step, err is ErrCrash at and after it.
func (f *FS) Cut() (now bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.crashed {
		return false, ErrCrash
	}
	f.steps++
	if f.steps == f.FailAt {
		f.crashed = true
		return true, ErrCrash
	}
	return false, nil
}

// Dead returns ErrCrash once power is lost.
func (f *FS) Dead() error { return f.dead() }

func (f *FS) dead() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.crashed {
		return ErrCrash
	}
	return nil
}

// OpenFile implements device.FS.
func (f *FS) OpenFile(name string, flag int, perm fs.FileMode) (device.File, error) {
	if err := f.dead(); err != nil {
		return nil, err
	}
	if flag&os.O_TRUNC != 0 {
		if err := f.step(); err != nil {
			return nil, err
		}
	}
	inner, err := f.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &file{File: inner, fs: f}, nil
}

// Rename implements device.FS.
func (f *FS) Rename(o, n string) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.inner.Rename(o, n)
}

// Remove implements device.FS.
func (f *FS) Remove(name string) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.inner.Remove(name)
}

// MkdirAll implements device.FS.
func (f *FS) MkdirAll(p string, perm fs.FileMode) error {
	if err := f.dead(); err != nil {
		return err
	}
	return f.inner.MkdirAll(p, perm)
}

// Stat implements device.FS.
func (f *FS) Stat(name string) (fs.FileInfo, error) {
	if err := f.dead(); err != nil {
		return nil, err
	}
	return f.inner.Stat(name)
}

// ReadDir implements device.FS.
func (f *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	if err := f.dead(); err != nil {
		return nil, err
	}
	return f.inner.ReadDir(name)
}

// SyncDir implements device.FS.
func (f *FS) SyncDir(name string) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.inner.SyncDir(name)
}

type file struct {
	device.File
	fs *FS
}

func (f *file) Write(b []byte) (int, error) {
	if now, err := f.fs.Cut(); err != nil {
		if !now || len(b) < 2 {
			return 0, err
		}
		n, _ := f.File.Write(b[:len(b)/2]) // torn write
		return n, err
	}
	return f.File.Write(b)
}

func (f *file) WriteAt(b []byte, off int64) (int, error) {
	if now, err := f.fs.Cut(); err != nil {
		if !now || len(b) < 2 {
			return 0, err
		}
		n, _ := f.File.WriteAt(b[:len(b)/2], off) // torn write
		return n, err
	}
	return f.File.WriteAt(b, off)
}

func (f *file) Read(b []byte) (int, error) {
	if err := f.fs.dead(); err != nil {
		return 0, err
	}
	return f.File.Read(b)
}

func (f *file) ReadAt(b []byte, off int64) (int, error) {
	if err := f.fs.dead(); err != nil {
		return 0, err
	}
	return f.File.ReadAt(b, off)
}

func (f *file) Sync() error {
	if err := f.fs.step(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *file) Truncate(size int64) error {
	if err := f.fs.step(); err != nil {
		return err
	}
	return f.File.Truncate(size)
}
