// Package grubenv reads and writes GRUB's environment block: the grubenv
// file that GRUB's load_env and save_env commands and the grub-editenv tool
// use to keep variables across boots.
//
// # Format
//
// A block is a fixed-size file (1024 bytes when grub-editenv creates it):
//
//	# GRUB Environment Block\n
//	NAME=VALUE\n           one line per variable, in the order they were set
//	#...\n                 comment lines (Debian's grub-editenv adds a warning)
//	######...              '#' up to the size of the block
//
// In a value, a backslash and a newline are written with a backslash before
// them ("\\", "\" newline); a reader takes the byte after any backslash as
// is. This is GRUB's lib/envblk.c. The block never changes size: GRUB's
// save_env writes it in place, sector by sector, so it cannot grow.
//
// Parse is stricter than GRUB, which silently stops at the first damaged
// line: a block whose lines do not all parse, that repeats a name, holds a
// NUL byte, or does not end in '#' padding is refused (ErrCorrupt), since
// GRUB and this package would not agree on what it says. Everything
// grub-editenv writes parses (even the odd names it accepts, such as ""),
// but Set refuses names GRUB scripts cannot use safely.
//
// A File is a block on disk; File.Update replaces it atomically (a new file
// written and fsynced, renamed over the old one, the directory fsynced), so
// a power cut leaves the old block or the new one, never a torn one.
package grubenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/upkit/upkit/device"
)

// Signature is the first line of every environment block.
const Signature = "# GRUB Environment Block\n"

// DefaultSize is the size of the block grub-editenv creates.
const DefaultSize = 1024

// MaxSize bounds the size of a block this package reads or creates (GRUB
// itself reads any size; real blocks are 1024 bytes).
const MaxSize = 64 << 10

var (
	// ErrCorrupt: the data is not an environment block GRUB and this
	// package read the same way.
	ErrCorrupt = errors.New("grubenv: not a valid environment block")
	// ErrNoSpace: the variables do not fit in the block's fixed size.
	ErrNoSpace = errors.New("grubenv: environment block too small")
	// ErrName: a variable name or value that the block cannot hold.
	ErrName = errors.New("grubenv: invalid variable")
)

// line is one line of a block: a variable or a comment kept byte for byte.
// raw is the line as stored, newline included.
type line struct {
	isVar       bool
	name, value string
	raw         string
}

// Block is an environment block in memory: its variables and comment lines
// in stored order, and its fixed size. The zero value is not usable; use
// New or Parse.
type Block struct {
	size  int
	lines []line
}

// New returns an empty block of size bytes (DefaultSize if size is 0).
func New(size int) (*Block, error) {
	if size == 0 {
		size = DefaultSize
	}
	if size < len(Signature) || size > MaxSize {
		return nil, fmt.Errorf("%w: size %d (want %d to %d)", ErrCorrupt, size, len(Signature), MaxSize)
	}
	return &Block{size: size}, nil
}

// Parse reads an environment block. Errors wrap ErrCorrupt and say where
// the block is damaged.
func Parse(data []byte) (*Block, error) {
	n := len(data)
	if n > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrCorrupt, n, MaxSize)
	}
	if !bytes.HasPrefix(data, []byte(Signature)) {
		return nil, fmt.Errorf("%w: no %q header", ErrCorrupt, strings.TrimSpace(Signature))
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return nil, fmt.Errorf("%w: NUL byte at offset %d", ErrCorrupt, i)
	}
	b := &Block{size: n}
	seen := map[string]bool{}
	p := len(Signature)
	for p < n {
		if data[p] == '#' {
			q := nextLine(data, p)
			if q > n {
				// No newline before the end: this is the padding,
				// which must be all '#' (GRUB's save_env finds its free
				// space by walking back over '#' to a newline).
				if i := bytes.IndexFunc(data[p:], func(r rune) bool { return r != '#' }); i >= 0 {
					return nil, fmt.Errorf("%w: stray bytes in the padding at offset %d", ErrCorrupt, p+i)
				}
				break
			}
			b.lines = append(b.lines, line{raw: string(data[p:q])})
			p = q
			continue
		}
		eq := bytes.IndexByte(data[p:], '=')
		if eq < 0 {
			return nil, fmt.Errorf("%w: line at offset %d has no '='", ErrCorrupt, p)
		}
		name := data[p : p+eq]
		if i := bytes.IndexByte(name, '\n'); i >= 0 {
			return nil, fmt.Errorf("%w: line at offset %d has no '='", ErrCorrupt, p)
		}
		var value []byte
		v := p + eq + 1
		for {
			if v >= n {
				return nil, fmt.Errorf("%w: variable %q at offset %d does not end with a newline", ErrCorrupt, name, p)
			}
			c := data[v]
			if c == '\n' {
				break
			}
			if c == '\\' {
				if v+1 >= n {
					return nil, fmt.Errorf("%w: variable %q at offset %d does not end with a newline", ErrCorrupt, name, p)
				}
				c = data[v+1]
				v++
			}
			value = append(value, c)
			v++
		}
		if seen[string(name)] {
			return nil, fmt.Errorf("%w: variable %q set twice", ErrCorrupt, name)
		}
		seen[string(name)] = true
		b.lines = append(b.lines, line{isVar: true, name: string(name), value: string(value), raw: string(data[p : v+1])})
		p = v + 1
	}
	return b, nil
}

// nextLine is GRUB's find_next_line: the offset after the newline that ends
// the line at p, skipping backslash-escaped bytes; n+1 or more if none.
func nextLine(data []byte, p int) int {
	for p < len(data) {
		switch data[p] {
		case '\\':
			p += 2
		case '\n':
			return p + 1
		default:
			p++
		}
	}
	return p + 1
}

// checkName accepts the names GRUB's lib/envblk.c stores and reads back as
// the same name.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case name[0] == '#':
		return fmt.Errorf("name %q starts with '#' (GRUB would read the line as a comment)", name)
	case strings.ContainsAny(name, "=\n\\\x00"):
		return fmt.Errorf("name %q contains '=', a backslash, a newline or NUL", name)
	}
	return nil
}

// Size returns the block's fixed size in bytes.
func (b *Block) Size() int { return b.size }

// Get returns the value of the variable name.
func (b *Block) Get(name string) (string, bool) {
	for _, l := range b.lines {
		if l.isVar && l.name == name {
			return l.value, true
		}
	}
	return "", false
}

// Names returns the names of the variables in stored order.
func (b *Block) Names() []string {
	var names []string
	for _, l := range b.lines {
		if l.isVar {
			names = append(names, l.name)
		}
	}
	return names
}

// Set sets a variable, in place if it exists (as grub-editenv does), else
// at the end. It fails with ErrName for a name GRUB cannot read back (empty,
// starting with '#', containing '=', a backslash, a newline or NUL) or a
// value with NUL, and with ErrNoSpace, leaving the block unchanged, if the
// block would overflow its size.
func (b *Block) Set(name, value string) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("%w: %v", ErrName, err)
	}
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("%w: value of %q contains NUL", ErrName, name)
	}
	l := line{isVar: true, name: name, value: value, raw: name + "=" + escape(value) + "\n"}
	i := b.index(name)
	var old line
	if i >= 0 {
		old = b.lines[i]
		b.lines[i] = l
	} else {
		b.lines = append(b.lines, l)
	}
	if used := b.used(); used > b.size {
		if i >= 0 {
			b.lines[i] = old
		} else {
			b.lines = b.lines[:len(b.lines)-1]
		}
		return fmt.Errorf("%w: setting %s needs %d bytes, the block has %d", ErrNoSpace, name, used, b.size)
	}
	return nil
}

// Delete removes a variable; a missing one is not an error.
func (b *Block) Delete(name string) {
	if i := b.index(name); i >= 0 {
		b.lines = append(b.lines[:i], b.lines[i+1:]...)
	}
}

func (b *Block) index(name string) int {
	for i, l := range b.lines {
		if l.isVar && l.name == name {
			return i
		}
	}
	return -1
}

func (b *Block) used() int {
	n := len(Signature)
	for _, l := range b.lines {
		n += len(l.raw)
	}
	return n
}

// escape is GRUB's value escaping: a backslash before '\' and '\n'.
func escape(v string) string {
	if !strings.ContainsAny(v, "\\\n") {
		return v
	}
	var sb strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' || v[i] == '\n' {
			sb.WriteByte('\\')
		}
		sb.WriteByte(v[i])
	}
	return sb.String()
}

// Encode returns the block's bytes: the header, the lines, '#' padding to
// its size. Lines that were parsed and not changed keep their bytes.
func (b *Block) Encode() []byte {
	out := make([]byte, 0, b.size)
	out = append(out, Signature...)
	for _, l := range b.lines {
		out = append(out, l.raw...)
	}
	for len(out) < b.size {
		out = append(out, '#')
	}
	return out
}

// File is an environment block stored in a file (GRUB's load_env --file /
// save_env --file, grub-editenv FILE).
type File struct {
	path string
	fs   device.FS
}

// NewFile returns the block in the file path. fsys nil means device.OSFS.
func NewFile(path string, fsys device.FS) *File {
	if fsys == nil {
		fsys = device.OSFS{}
	}
	return &File{path: path, fs: fsys}
}

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Read reads and parses the file. A missing file is an error wrapping
// fs.ErrNotExist; a damaged one, ErrCorrupt.
func (f *File) Read(ctx context.Context) (*Block, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := device.ReadFileLimit(f.fs, f.path, MaxSize)
	if err != nil {
		return nil, fmt.Errorf("grubenv: reading %s: %w", f.path, err)
	}
	b, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	return b, nil
}

// Update reads the block (a new empty one of DefaultSize if the file does
// not exist, as grub-editenv does), lets fn change it, and replaces the file
// atomically if the bytes changed. An error from fn is returned unchanged
// and nothing is written. A damaged file is not overwritten (ErrCorrupt):
// recreate it deliberately (grub-editenv FILE create) if that is wanted.
func (f *File) Update(ctx context.Context, fn func(*Block) error) error {
	b, err := f.Read(ctx)
	var before []byte
	switch {
	case errors.Is(err, fs.ErrNotExist):
		b, _ = New(DefaultSize)
	case err != nil:
		return err
	default:
		before = b.Encode()
	}
	if err := fn(b); err != nil {
		return err
	}
	after := b.Encode()
	if before != nil && bytes.Equal(before, after) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := device.WriteFileAtomic(f.fs, f.path, after); err != nil {
		return fmt.Errorf("grubenv: writing %s: %w", f.path, err)
	}
	return nil
}
