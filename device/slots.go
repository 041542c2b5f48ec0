package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/upkit/upkit/spec"
)

// Slot names. Every component has two slots; the committed image is in one
// (State.Installed[c].Slot), updates are written to the other.
const (
	SlotA = "a"
	SlotB = "b"
)

// OtherSlot returns the slot that is not s.
func OtherSlot(s string) string {
	if s == SlotA {
		return SlotB
	}
	return SlotA
}

// Slots is the storage of the images: two slots per component (A/B
// partitions, or files). The Device writes only the slot that is not the
// committed one, and reads the committed one only as a delta base.
// Firmware implements it over its partitions and bootloader.
type Slots interface {
	// OpenRead opens a slot for reading its first bytes (the image).
	OpenRead(ctx context.Context, component, slot string) (SlotReader, error)
	// OpenWrite opens a slot for writing an image from offset 0.
	OpenWrite(ctx context.Context, component, slot string) (SlotWriter, error)
	// Activate makes slot the one the bootloader boots for component, for
	// good. It is called by Commit (new slots) and Rollback (committed
	// slots), and again after a restart if a crash interrupted them, so it
	// must be idempotent.
	Activate(ctx context.Context, component, slot string) error
	// Active returns the slot the bootloader boots for component, or ""
	// if none was ever activated.
	Active(ctx context.Context, component string) (string, error)
}

// SlotReader reads a slot by offset. Only the first PayloadSize bytes are
// ever read. As io.ReaderAt allows, ReadAt may be called from two
// goroutines at once (delta.Apply does, on the base slot).
type SlotReader interface {
	io.ReaderAt
	io.Closer
}

// SlotWriter writes a slot. The Device writes sequentially from offset 0,
// calls Truncate with the image size (a raw partition may ignore it), Sync,
// then reads the image back through ReadAt to check its digest.
type SlotWriter interface {
	io.WriterAt
	io.ReaderAt
	Truncate(size int64) error
	Sync() error
	Close() error
}

// FileSlots keeps slots as files in one directory: COMPONENT.a and
// COMPONENT.b hold the images, COMPONENT.active names the slot the
// (simulated) bootloader boots, written atomically. They must be regular
// files (not symlinks to them): see OpenWrite.
type FileSlots struct {
	dir string
	fs  FS
}

// NewFileSlots returns file-backed Slots in dir. fsys nil means OSFS.
func NewFileSlots(dir string, fsys FS) *FileSlots {
	if fsys == nil {
		fsys = OSFS{}
	}
	return &FileSlots{dir: dir, fs: fsys}
}

// Path returns the file of a slot.
func (s *FileSlots) Path(component, slot string) string {
	return filepath.Join(s.dir, component+"."+slot)
}

func checkSlotName(component, slot string) error {
	if slot != SlotA && slot != SlotB {
		return fmt.Errorf("%w: slot %q (want %q or %q)", ErrConfig, slot, SlotA, SlotB)
	}
	if !validComponent(component) {
		return fmt.Errorf("%w: component name %q", ErrConfig, component)
	}
	return nil
}

// validComponent accepts spec's component names, the ones the release
// tools accept, which are safe as file names.
func validComponent(c string) bool { return spec.CheckName(c) == nil }

// OpenRead implements Slots.
func (s *FileSlots) OpenRead(ctx context.Context, component, slot string) (SlotReader, error) {
	if err := checkSlotName(component, slot); err != nil {
		return nil, err
	}
	f, err := openRegular(s.fs, s.Path(component, slot), os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("device: opening slot %s of %s: %w", slot, component, err)
	}
	return f, nil
}

// OpenWrite implements Slots. The file is created if missing and emptied,
// and the directory synced. A symlink, FIFO or device in place of the slot
// file is an error: it is never followed, truncated or written.
func (s *FileSlots) OpenWrite(ctx context.Context, component, slot string) (SlotWriter, error) {
	if err := checkSlotName(component, slot); err != nil {
		return nil, err
	}
	if err := s.fs.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("device: slots directory: %w", err)
	}
	f, err := openRegular(s.fs, s.Path(component, slot), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("device: opening slot %s of %s for writing: %w", slot, component, err)
	}
	// Make the file's directory entry durable too (a new slot file): its
	// content is made durable by SlotWriter.Sync.
	if err := s.fs.SyncDir(s.dir); err != nil {
		f.Close()
		return nil, fmt.Errorf("device: slots directory: %w", err)
	}
	return f, nil
}

// Activate implements Slots: it writes COMPONENT.active atomically.
func (s *FileSlots) Activate(ctx context.Context, component, slot string) error {
	if err := checkSlotName(component, slot); err != nil {
		return err
	}
	if err := s.fs.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("device: slots directory: %w", err)
	}
	if err := writeFileAtomic(s.fs, filepath.Join(s.dir, component+".active"), []byte(slot+"\n")); err != nil {
		return fmt.Errorf("device: activating slot %s of %s: %w", slot, component, err)
	}
	return nil
}

// Active implements Slots.
func (s *FileSlots) Active(ctx context.Context, component string) (string, error) {
	if !validComponent(component) {
		return "", fmt.Errorf("%w: component name %q", ErrConfig, component)
	}
	data, err := readFileLimit(s.fs, filepath.Join(s.dir, component+".active"), 16)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("device: reading active slot of %s: %w", component, err)
	}
	slot := strings.TrimSpace(string(data))
	if slot != SlotA && slot != SlotB {
		return "", fmt.Errorf("device: %s.active names slot %q", component, slot)
	}
	return slot, nil
}
