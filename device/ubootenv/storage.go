package ubootenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/upkit/upkit/device"
)

// maxFileSize bounds a regular file that holds a single copy of the
// environment at an offset: it is rewritten whole to replace the copy
// atomically.
const maxFileSize = 16 << 20

// Storage is a U-Boot environment on disk, as a Config describes it.
type Storage struct {
	cfg Config
	fs  device.FS
}

// Open returns the environment cfg describes. fsys nil means device.OSFS.
// It checks cfg (ErrConfig) but does not touch the disk.
func Open(cfg Config, fsys device.FS) (*Storage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if fsys == nil {
		fsys = device.OSFS{}
	}
	cfg.Copies = append([]Location(nil), cfg.Copies...)
	return &Storage{cfg: cfg, fs: fsys}, nil
}

// OpenConfig reads the fw_env.config at path (ParseConfig) and returns its
// environment. Its LockFile is DefaultLockFile, the one fw_setenv takes.
func OpenConfig(path string, fsys device.FS) (*Storage, error) {
	if fsys == nil {
		fsys = device.OSFS{}
	}
	data, err := device.ReadFileLimit(fsys, path, maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrConfig, path, err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return Open(*cfg, fsys)
}

// Config returns the storage's configuration.
func (s *Storage) Config() Config { return s.cfg }

// CopyState is what Inspect found in one copy.
type CopyState struct {
	Location Location
	// Valid is true when the copy's CRC matches.
	Valid bool
	// Flags is the copy's flags byte (redundant copies only).
	Flags byte
	// Err says why the copy is not valid (nil when it is).
	Err error
}

// Inspect reads every copy and reports which one is current (the copy a
// reader uses; -1 if none is valid), without taking the lock.
func (s *Storage) Inspect(ctx context.Context) ([]CopyState, int, error) {
	states, current, _, err := s.read(ctx)
	return states, current, err
}

// Read returns the variables of the current copy. Errors: ErrNoValidCopy
// (no copy has a good CRC; it says why for each), ErrCorrupt (the current
// copy's entries do not parse), or an I/O error.
func (s *Storage) Read(ctx context.Context) (*Env, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	_, _, env, err := s.read(ctx)
	return env, err
}

// read reads and decodes every copy and picks the current one.
func (s *Storage) read(ctx context.Context) ([]CopyState, int, *Env, error) {
	if err := ctx.Err(); err != nil {
		return nil, -1, nil, err
	}
	redundant := s.cfg.Redundant()
	states := make([]CopyState, len(s.cfg.Copies))
	imgs := make([][]byte, len(s.cfg.Copies))
	var valid [2]bool
	var flags [2]byte
	for i, l := range s.cfg.Copies {
		states[i].Location = l
		img, err := s.readCopy(l)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, io.ErrUnexpectedEOF) {
				states[i].Err = err
				continue
			}
			return nil, -1, nil, err
		}
		imgs[i] = img
		_, f, err := Decode(img, redundant)
		if errors.Is(err, ErrCRC) {
			states[i].Err = err
			continue
		}
		// A copy with a good CRC counts as valid for choosing the
		// current copy even if its entries do not parse (as U-Boot
		// chooses); the current copy's entries are checked below.
		states[i].Valid, states[i].Flags = true, f
		valid[i], flags[i] = true, f
	}
	current := -1
	if redundant {
		current = pickCopy(valid, flags)
	} else if valid[0] {
		current = 0
	}
	if current < 0 {
		var why []string
		for _, st := range states {
			why = append(why, fmt.Sprintf("%s at %#x: %v", st.Location.Path, st.Location.Offset, st.Err))
		}
		return states, -1, nil, fmt.Errorf("%w (%s)", ErrNoValidCopy, strings.Join(why, "; "))
	}
	env, _, err := Decode(imgs[current], redundant)
	if err != nil {
		l := s.cfg.Copies[current]
		return states, current, nil, fmt.Errorf("%s at %#x: %w", l.Path, l.Offset, err)
	}
	return states, current, env, nil
}

// readCopy reads one copy. A missing file wraps fs.ErrNotExist, one too
// short to hold the copy io.ErrUnexpectedEOF.
func (s *Storage) readCopy(l Location) ([]byte, error) {
	f, err := s.fs.OpenFile(l.Path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("ubootenv: opening %s: %w", l.Path, err)
	}
	defer f.Close()
	off, err := offset(f, l)
	if err != nil {
		return nil, err
	}
	img := make([]byte, l.Size)
	n, err := f.ReadAt(img, off)
	if n == len(img) {
		return img, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("ubootenv: reading %s at %#x: %w", l.Path, off, err)
}

// offset resolves a copy's offset: a negative one counts back from the end
// of the file or device.
func offset(f device.File, l Location) (int64, error) {
	if l.Offset >= 0 {
		return l.Offset, nil
	}
	var size int64
	if sk, ok := f.(io.Seeker); ok {
		end, err := sk.Seek(0, io.SeekEnd)
		if err != nil {
			return 0, fmt.Errorf("ubootenv: size of %s: %w", l.Path, err)
		}
		size = end
	} else {
		fi, err := f.Stat()
		if err != nil {
			return 0, fmt.Errorf("ubootenv: size of %s: %w", l.Path, err)
		}
		size = fi.Size()
	}
	off := size + l.Offset
	if off < 0 {
		return 0, fmt.Errorf("%w: offset %d from the end of %s, which has %d bytes", ErrConfig, l.Offset, l.Path, size)
	}
	return off, nil
}

// Update reads the current copy, lets fn change the variables, and writes
// them if they changed: with redundant copies, to the copy that is not
// current, with its flags one higher, in place; with a single copy in a
// regular file, by replacing the file atomically; with a single copy on a
// block device, in place. The written copy is read back and checked.
//
// When no copy is valid, Update fails with ErrNoValidCopy unless
// Config.AllowEmpty, which starts from an empty environment. An error from
// fn is returned unchanged and nothing is written. The lock is held
// throughout.
func (s *Storage) Update(ctx context.Context, fn func(*Env) error) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	states, current, env, err := s.read(ctx)
	var before *Env
	switch {
	case err == nil:
		before = env.Clone()
	case errors.Is(err, ErrNoValidCopy) && s.cfg.AllowEmpty:
		env = NewEnv()
	default:
		return err
	}
	if err := fn(env); err != nil {
		return err
	}
	if before != nil && equal(before, env) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	redundant := s.cfg.Redundant()
	target, flags := 0, byte(1)
	if redundant && current >= 0 {
		target, flags = 1-current, states[current].Flags+1
	}
	img, err := env.Encode(s.cfg.Size(), redundant, flags)
	if err != nil {
		return err
	}
	l := s.cfg.Copies[target]
	if err := s.write(l, img, redundant); err != nil {
		return fmt.Errorf("ubootenv: writing %s at %#x: %w", l.Path, l.Offset, err)
	}
	back, err := s.readCopy(l)
	if err != nil {
		return fmt.Errorf("ubootenv: reading back %s: %w", l.Path, err)
	}
	if got, _, err := Decode(back, redundant); err != nil || !equal(got, env) {
		return fmt.Errorf("ubootenv: %s at %#x does not read back as written (%v)", l.Path, l.Offset, err)
	}
	return nil
}

func equal(a, b *Env) bool {
	if len(a.vars) != len(b.vars) {
		return false
	}
	for k, v := range a.vars {
		if w, ok := b.vars[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// write stores one copy: a single copy in a regular file by atomic
// replacement, anything else in place.
func (s *Storage) write(l Location, img []byte, redundant bool) error {
	fi, err := s.fs.Stat(l.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// A file to create (block devices exist).
	case err != nil:
		return err
	case fi.Mode()&fs.ModeCharDevice != 0:
		return fmt.Errorf("%w: %s is a character device (MTD is not supported)", ErrConfig, l.Path)
	case fi.Mode()&fs.ModeDevice != 0:
		return s.writeInPlace(l, img, false)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%w: %s is neither a regular file nor a block device", ErrConfig, l.Path)
	}
	if redundant {
		return s.writeInPlace(l, img, true)
	}
	// A single copy in a regular file: replace the file.
	var data []byte
	if err == nil {
		if data, err = device.ReadFileLimit(s.fs, l.Path, maxFileSize); err != nil {
			return err
		}
	}
	off := l.Offset
	if off < 0 {
		off += int64(len(data))
		if off < 0 {
			return fmt.Errorf("%w: offset %d from the end of %s, which has %d bytes", ErrConfig, l.Offset, l.Path, len(data))
		}
	}
	if end := off + int64(len(img)); end > int64(len(data)) {
		if end > maxFileSize {
			return fmt.Errorf("%w: %s would grow past %d bytes", ErrConfig, l.Path, maxFileSize)
		}
		data = append(data, make([]byte, end-int64(len(data)))...)
	}
	copy(data[off:], img)
	return device.WriteFileAtomic(s.fs, l.Path, data)
}

// writeInPlace writes a copy at its offset and syncs it.
func (s *Storage) writeInPlace(l Location, img []byte, create bool) error {
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE
	}
	f, err := s.fs.OpenFile(l.Path, flag, 0o600)
	if err != nil {
		return err
	}
	off, err := offset(f, l)
	if err == nil {
		_, err = f.WriteAt(img, off)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
