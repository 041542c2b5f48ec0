// Package ubootenv reads and writes U-Boot's binary environment, the one
// U-Boot's saveenv and env export -c write, mkenvimage builds and
// fw_printenv/fw_setenv (libubootenv) edit from Linux.
//
// # Format
//
// A copy of the environment is a fixed-size region (CONFIG_ENV_SIZE):
//
//	crc32    4 bytes, little endian: CRC-32 (IEEE) of the data area
//	flags    1 byte, only with redundant copies (CONFIG_SYS_REDUNDAND_ENVIRONMENT)
//	data     the rest: "name=value\0" entries, one more "\0", then padding
//
// The CRC covers the whole data area, padding included. With two
// (redundant) copies, each write goes to the copy that is not current and
// gives it the current copy's flags plus one (wrapping from 255 to 0); a
// reader takes the copy whose CRC is good, or, when both are, the one with
// the higher flags (255 loses to 0; equal flags pick the first copy). So a
// power cut while writing one copy leaves the other, whole. This is the
// scheme of U-Boot's env_import_redund and libubootenv for block devices
// and files.
//
// Variables are written sorted by name, as U-Boot and libubootenv write
// them. U-Boot cannot hold an empty value (setenv without a value deletes
// the variable), so Set with "" deletes. Decode is stricter than the C
// readers: an entry without '=' or with an empty name (U-Boot then falls
// back to its default environment), a name set twice, or entries that run
// past the data area are refused (ErrCorrupt).
//
// # Storage
//
// Storage finds the copies from a libubootenv fw_env.config (ParseConfig),
// in a regular file or a block device, at an offset (negative: from the end
// of a block device) and a size. A single copy in a regular file is
// replaced atomically (new file, fsync, rename, fsync the directory); a
// single copy on a block device is rewritten in place, which a power cut can
// tear: use redundant copies there. MTD (/dev/mtdN) and UBI volumes need
// erase-before-write handling and are not supported; Storage refuses them.
package ubootenv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"strings"
)

// MaxSize bounds the size of one copy of the environment this package
// reads or writes (U-Boot's CONFIG_ENV_SIZE is typically 8 KiB to 256 KiB).
const MaxSize = 1 << 20

var (
	// ErrCorrupt: a copy's CRC is good but its entries are not an
	// environment U-Boot would import as written.
	ErrCorrupt = errors.New("ubootenv: environment corrupt")
	// ErrCRC: a copy's CRC does not match its data (damaged, torn by a
	// power cut, or never written).
	ErrCRC = errors.New("ubootenv: CRC mismatch")
	// ErrNoValidCopy: no copy of the environment has a good CRC.
	ErrNoValidCopy = errors.New("ubootenv: no valid copy of the environment")
	// ErrNoSpace: the variables do not fit in the environment's size.
	ErrNoSpace = errors.New("ubootenv: environment too small")
	// ErrName: a variable name or value U-Boot cannot hold.
	ErrName = errors.New("ubootenv: invalid variable")
	// ErrConfig: a configuration (fw_env.config) that cannot be used.
	ErrConfig = errors.New("ubootenv: invalid configuration")
)

// Env is a set of U-Boot environment variables.
type Env struct {
	vars map[string]string
}

// NewEnv returns an empty environment.
func NewEnv() *Env { return &Env{vars: map[string]string{}} }

// Get returns the value of a variable.
func (e *Env) Get(name string) (string, bool) {
	v, ok := e.vars[name]
	return v, ok
}

// Set sets a variable; an empty value deletes it, as U-Boot's setenv does.
// It fails with ErrName for an empty name or one with '=' or NUL, and a
// value with NUL. Whether everything fits is checked by Encode.
func (e *Env) Set(name, value string) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("%w: %v", ErrName, err)
	}
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("%w: value of %q contains NUL", ErrName, name)
	}
	if value == "" {
		delete(e.vars, name)
		return nil
	}
	e.vars[name] = value
	return nil
}

// Delete removes a variable; a missing one is not an error.
func (e *Env) Delete(name string) { delete(e.vars, name) }

// Names returns the variable names, sorted (the order they are stored in).
func (e *Env) Names() []string {
	names := make([]string, 0, len(e.vars))
	for n := range e.vars {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Clone returns a copy of e.
func (e *Env) Clone() *Env {
	c := NewEnv()
	for k, v := range e.vars {
		c.vars[k] = v
	}
	return c
}

func checkName(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if strings.ContainsAny(name, "=\x00") {
		return fmt.Errorf("name %q contains '=' or NUL", name)
	}
	return nil
}

// headerSize is the size of a copy's header: the CRC, and the flags byte of
// redundant copies.
func headerSize(redundant bool) int {
	if redundant {
		return 5
	}
	return 4
}

// Encode returns one copy of the environment, size bytes: CRC, the flags
// byte if redundant, the entries sorted by name, zero padding. ErrNoSpace
// if they do not fit.
func (e *Env) Encode(size int, redundant bool, flags byte) ([]byte, error) {
	h := headerSize(redundant)
	if size <= h || size > MaxSize {
		return nil, fmt.Errorf("%w: environment size %d (want %d to %d)", ErrConfig, size, h+1, MaxSize)
	}
	out := make([]byte, size)
	data := out[h:]
	p := 0
	for _, n := range e.Names() {
		entry := n + "=" + e.vars[n]
		if p+len(entry)+1 >= len(data) { // +1: this entry's NUL; the final NUL needs one more
			return nil, fmt.Errorf("%w: the variables need more than the %d bytes of the environment", ErrNoSpace, size)
		}
		p += copy(data[p:], entry)
		data[p] = 0
		p++
	}
	// data[p] is the terminating NUL (already zero), and so is the padding.
	binary.LittleEndian.PutUint32(out, crc32.ChecksumIEEE(data))
	if redundant {
		out[4] = flags
	}
	return out, nil
}

// Decode reads one copy of the environment: size is len(img). It returns
// the variables and the flags byte (0 for a single copy). Errors wrap
// ErrCRC (the CRC does not match: the copy is damaged or was never
// written) or ErrCorrupt.
func Decode(img []byte, redundant bool) (*Env, byte, error) {
	h := headerSize(redundant)
	if len(img) <= h || len(img) > MaxSize {
		return nil, 0, fmt.Errorf("%w: %d bytes (want %d to %d)", ErrCorrupt, len(img), h+1, MaxSize)
	}
	data := img[h:]
	if got, want := crc32.ChecksumIEEE(data), binary.LittleEndian.Uint32(img); got != want {
		return nil, 0, fmt.Errorf("%w: stored %08x, data has %08x", ErrCRC, want, got)
	}
	var flags byte
	if redundant {
		flags = img[4]
	}
	e, err := parseData(data)
	if err != nil {
		return nil, 0, err
	}
	return e, flags, nil
}

// parseData reads the entries of a data area whose CRC is good.
func parseData(data []byte) (*Env, error) {
	e := NewEnv()
	p := 0
	for {
		if p >= len(data) {
			return nil, fmt.Errorf("%w: no terminating NUL in the data area", ErrCorrupt)
		}
		if data[p] == 0 {
			return e, nil
		}
		end := bytes.IndexByte(data[p:], 0)
		if end < 0 {
			return nil, fmt.Errorf("%w: entry at offset %d runs past the data area", ErrCorrupt, p)
		}
		entry := data[p : p+end]
		eq := bytes.IndexByte(entry, '=')
		switch {
		case eq < 0:
			return nil, fmt.Errorf("%w: entry %q at offset %d has no '='", ErrCorrupt, trim(entry), p)
		case eq == 0:
			return nil, fmt.Errorf("%w: entry %q at offset %d has an empty name", ErrCorrupt, trim(entry), p)
		}
		name := string(entry[:eq])
		if _, dup := e.vars[name]; dup {
			return nil, fmt.Errorf("%w: variable %q set twice", ErrCorrupt, name)
		}
		e.vars[name] = string(entry[eq+1:])
		p += end + 1
	}
}

func trim(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// pickCopy returns which of two redundant copies is current, given whether
// each is valid and their flags: U-Boot's and libubootenv's rule for block
// devices and files. -1 if neither is valid.
func pickCopy(valid [2]bool, flags [2]byte) int {
	switch {
	case valid[0] && !valid[1]:
		return 0
	case !valid[0] && valid[1]:
		return 1
	case !valid[0] && !valid[1]:
		return -1
	}
	switch {
	case flags[0] == 255 && flags[1] == 0:
		return 1
	case flags[1] == 255 && flags[0] == 0:
		return 0
	case flags[1] > flags[0]:
		return 1
	}
	return 0
}
