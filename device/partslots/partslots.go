// Package partslots keeps each component's A and B slots in partitions
// (block devices, named by path or by GPT partition label) and implements
// device.Slots over them, with a bootloader (device/boot's Switch) choosing
// the slot that boots.
//
// Writing a slot: the slot is resolved (PARTLABEL=name through
// /dev/disk/by-partlabel), checked, opened without creating or truncating
// anything, written sequentially from offset 0 by the device library, never
// past its end, then fsynced and its cached pages dropped. Block devices
// are read with O_DIRECT, so that the device library's read-back against
// the signed digest, and its reads of the committed slot (a delta's base,
// the image checked at commit), see what the medium holds, not what the
// kernel keeps in memory for a mounted file system. A slot is refused (ErrBusy) when it is the slot the running
// system booted from (the bootloader's Booted), when it or one of its
// partitions is mounted (/proc/self/mountinfo, by major:minor), when the
// kernel holds it (device-mapper or md on top of it; a block device is
// opened O_EXCL, which the kernel refuses for a device in use), or, for a
// regular file, when a loop device is attached to it. The slot's size is
// reported by SlotSize, which the device library checks against the signed
// image size before downloading anything.
//
// Regular files work as slots too (a pre-sized file stands for a
// partition), which is how the tests run without a disk.
package partslots

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/upkit/upkit/device"
)

// Defaults of Config.
const (
	DefaultByPartLabel = "/dev/disk/by-partlabel"
	DefaultMountInfo   = "/proc/self/mountinfo"
	DefaultSysBlock    = "/sys"
)

// PartLabelPrefix names a slot by its GPT partition label.
const PartLabelPrefix = "PARTLABEL="

var (
	// ErrBusy: the slot is in use (booted, mounted, held by the kernel or
	// a loop device) and is not written.
	ErrBusy = errors.New("partslots: slot in use")
	// ErrConfig: an invalid configuration or slot.
	ErrConfig = errors.New("partslots: invalid configuration")
)

// Pair is a component's two slots: each an absolute path (a block device
// such as /dev/mmcblk0p2, or a regular file) or PARTLABEL=label.
type Pair struct {
	A, B string
}

// Bootloader chooses the slot that boots (device/boot's *Switch is one).
type Bootloader interface {
	Activate(ctx context.Context, component, slot string) error
	Active(ctx context.Context, component string) (string, error)
	// Booted returns the slot the running system was booted from for
	// component, "" if none.
	Booted(component string) (string, error)
}

// Config configures Slots.
type Config struct {
	// Components maps each component to its slots.
	Components map[string]Pair
	// Bootloader activates slots and says which one booted (required).
	Bootloader Bootloader
	// ByPartLabel is where partition labels resolve (default
	// DefaultByPartLabel, which udev maintains).
	ByPartLabel string
	// MountInfo is the mount table (default DefaultMountInfo).
	MountInfo string
	// Sys is where sysfs is mounted (default DefaultSysBlock).
	Sys string
}

// Slots implements device.Slots (and device.SlotSizer) over partitions.
type Slots struct {
	cfg Config
}

// New returns Slots. It checks the configuration without touching the
// devices (which may appear later, with udev).
func New(cfg Config) (*Slots, error) {
	if cfg.Bootloader == nil {
		return nil, fmt.Errorf("%w: no Bootloader", ErrConfig)
	}
	if len(cfg.Components) == 0 {
		return nil, fmt.Errorf("%w: no components", ErrConfig)
	}
	seen := map[string]string{}
	for c, p := range cfg.Components {
		if !validComponent(c) {
			return nil, fmt.Errorf("%w: component name %q", ErrConfig, c)
		}
		for _, s := range []string{p.A, p.B} {
			if err := checkSpec(s); err != nil {
				return nil, fmt.Errorf("%w: component %s: %v", ErrConfig, c, err)
			}
			if other, dup := seen[s]; dup {
				return nil, fmt.Errorf("%w: %s is a slot of both %s and %s", ErrConfig, s, other, c)
			}
			seen[s] = c
		}
	}
	comps := make(map[string]Pair, len(cfg.Components))
	for c, p := range cfg.Components {
		comps[c] = p
	}
	cfg.Components = comps
	if cfg.ByPartLabel == "" {
		cfg.ByPartLabel = DefaultByPartLabel
	}
	if cfg.MountInfo == "" {
		cfg.MountInfo = DefaultMountInfo
	}
	if cfg.Sys == "" {
		cfg.Sys = DefaultSysBlock
	}
	return &Slots{cfg: cfg}, nil
}

func checkSpec(s string) error {
	if label, ok := strings.CutPrefix(s, PartLabelPrefix); ok {
		if label == "" || label == "." || label == ".." || strings.ContainsAny(label, "/\x00") {
			return fmt.Errorf("partition label %q", label)
		}
		return nil
	}
	if !filepath.IsAbs(s) || filepath.Clean(s) != s {
		return fmt.Errorf("slot %q is neither an absolute, clean path nor PARTLABEL=label", s)
	}
	return nil
}

// validComponent accepts device's component names.
func validComponent(c string) bool {
	if c == "" || len(c) > 64 || strings.Contains(c, "..") {
		return false
	}
	for i, r := range c {
		ok := 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || i > 0 && (r == '.' || r == '_' || r == '-')
		if !ok {
			return false
		}
	}
	return true
}

func (s *Slots) spec(component, slot string) (string, error) {
	p, ok := s.cfg.Components[component]
	if !ok {
		return "", fmt.Errorf("%w: no slots configured for component %q", ErrConfig, component)
	}
	switch slot {
	case device.SlotA:
		return p.A, nil
	case device.SlotB:
		return p.B, nil
	}
	return "", fmt.Errorf("%w: slot %q (want %q or %q)", ErrConfig, slot, device.SlotA, device.SlotB)
}

// Path returns the file a slot resolves to now (symbolic links, such as
// /dev/disk/by-partlabel's, followed).
func (s *Slots) Path(component, slot string) (string, error) {
	spec, err := s.spec(component, slot)
	if err != nil {
		return "", err
	}
	p := spec
	if label, ok := strings.CutPrefix(spec, PartLabelPrefix); ok {
		p = filepath.Join(s.cfg.ByPartLabel, label)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("partslots: slot %s of %s (%s): %w", slot, component, spec, err)
	}
	return real, nil
}

// open resolves and stats a slot, refusing what is neither a block device
// nor a regular file, and a pair whose two slots are the same.
func (s *Slots) open(component, slot string) (path string, fi fs.FileInfo, err error) {
	path, err = s.Path(component, slot)
	if err != nil {
		return "", nil, err
	}
	fi, err = os.Stat(path)
	if err != nil {
		return "", nil, fmt.Errorf("partslots: slot %s of %s: %w", slot, component, err)
	}
	if !isBlock(fi) && !fi.Mode().IsRegular() {
		return "", nil, fmt.Errorf("%w: slot %s of %s: %s is neither a block device nor a regular file", ErrConfig, slot, component, path)
	}
	other, err := s.Path(component, device.OtherSlot(slot))
	if err == nil {
		if ofi, err := os.Stat(other); err == nil && os.SameFile(fi, ofi) {
			return "", nil, fmt.Errorf("%w: slots a and b of %s are the same (%s)", ErrConfig, component, path)
		}
	}
	return path, fi, nil
}

func isBlock(fi fs.FileInfo) bool {
	return fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0
}

// SlotSize returns a slot's capacity: the size of the block device or of
// the regular file. It implements device.SlotSizer.
func (s *Slots) SlotSize(ctx context.Context, component, slot string) (int64, error) {
	path, _, err := s.open(component, slot)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("partslots: slot %s of %s: %w", slot, component, err)
	}
	defer f.Close()
	return size(f)
}

func size(f *os.File) (int64, error) {
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("partslots: size of %s: %w", f.Name(), err)
	}
	return n, nil
}

// OpenRead implements device.Slots. A block device is read with O_DIRECT:
// from the medium, not from what the kernel holds in memory for it (which
// differs for a mounted file system; see directReader).
func (s *Slots) OpenRead(ctx context.Context, component, slot string) (device.SlotReader, error) {
	path, fi, err := s.open(component, slot)
	if err != nil {
		return nil, err
	}
	c, r, err := openReader(path, isBlock(fi))
	if err != nil {
		return nil, fmt.Errorf("partslots: opening slot %s of %s: %w", slot, component, err)
	}
	return readCloser{r, c}, nil
}

// readCloser is a device.SlotReader from a ReaderAt and its Closer.
type readCloser struct {
	io.ReaderAt
	io.Closer
}

// OpenWrite implements device.Slots: it refuses a slot in use (ErrBusy)
// and returns a writer bounded by the slot's size.
func (s *Slots) OpenWrite(ctx context.Context, component, slot string) (device.SlotWriter, error) {
	path, fi, err := s.open(component, slot)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("slot %s of %s (%s)", slot, component, path)
	booted, err := s.cfg.Bootloader.Booted(component)
	if err != nil {
		return nil, err
	}
	if booted == slot {
		return nil, fmt.Errorf("%w: %s is the slot the running system booted from", ErrBusy, what)
	}
	if err := s.checkUnused(path, fi); err != nil {
		return nil, fmt.Errorf("%w: %s %v", ErrBusy, what, err)
	}
	flag := os.O_RDWR
	if isBlock(fi) {
		// The kernel refuses O_EXCL on a block device that is mounted or
		// held (and keeps others from mounting it while it is open).
		flag |= os.O_EXCL
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		if isBlock(fi) && errors.Is(err, busyErr) {
			return nil, fmt.Errorf("%w: %s is in use by the kernel (%v)", ErrBusy, what, err)
		}
		return nil, fmt.Errorf("partslots: opening %s for writing: %w", what, err)
	}
	n, err := size(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &writer{f: f, size: n, what: what, path: path, block: isBlock(fi)}, nil
}

// checkUnused looks for the slot in the mount table, for partitions of it
// that are mounted, for kernel holders, and for loop devices backed by it.
func (s *Slots) checkUnused(path string, fi fs.FileInfo) error {
	if isBlock(fi) {
		major, minor, ok := devNumbers(fi)
		if !ok {
			return nil
		}
		self := fmt.Sprintf("%d:%d", major, minor)
		sysSelf, _ := filepath.EvalSymlinks(filepath.Join(s.cfg.Sys, "dev", "block", self))
		mounts, err := s.mounts()
		if err != nil {
			return err
		}
		for _, m := range mounts {
			if m.dev == self {
				return fmt.Errorf("is mounted at %s", m.point)
			}
			if sysSelf == "" {
				continue
			}
			// A partition of this device (its sysfs directory is below
			// the device's).
			if p, err := filepath.EvalSymlinks(filepath.Join(s.cfg.Sys, "dev", "block", m.dev)); err == nil && strings.HasPrefix(p, sysSelf+"/") {
				return fmt.Errorf("has a partition mounted at %s", m.point)
			}
		}
		if sysSelf != "" {
			if holders, _ := os.ReadDir(filepath.Join(sysSelf, "holders")); len(holders) > 0 {
				return fmt.Errorf("is held by %s (device-mapper or md)", holders[0].Name())
			}
		}
		return nil
	}
	// A regular file: a loop device backed by it.
	loops, _ := filepath.Glob(filepath.Join(s.cfg.Sys, "block", "loop*", "loop", "backing_file"))
	for _, bf := range loops {
		data, err := os.ReadFile(bf)
		if err != nil {
			continue
		}
		backing := strings.TrimSpace(string(data))
		if bfi, err := os.Stat(backing); err == nil && os.SameFile(bfi, fi) {
			return fmt.Errorf("is attached to /dev/%s", filepath.Base(filepath.Dir(filepath.Dir(bf))))
		}
	}
	return nil
}

type mount struct{ dev, point string }

// mounts reads the mount table: major:minor and mount point of each entry.
func (s *Slots) mounts() ([]mount, error) {
	data, err := device.ReadFileLimit(device.OSFS{}, s.cfg.MountInfo, 16<<20)
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	return parseMountInfo(data), nil
}

// parseMountInfo reads /proc/PID/mountinfo lines ("36 35 98:0 /mnt1 /mnt2
// rw ... - ext3 /dev/root rw"): field 3 is major:minor, field 5 the mount
// point with spaces and such octal-escaped.
func parseMountInfo(data []byte) []mount {
	var out []mount
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		out = append(out, mount{dev: f[2], point: unescapeOctal(f[4])})
	}
	return out
}

func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Activate implements device.Slots through the bootloader.
func (s *Slots) Activate(ctx context.Context, component, slot string) error {
	if _, err := s.spec(component, slot); err != nil {
		return err
	}
	return s.cfg.Bootloader.Activate(ctx, component, slot)
}

// Active implements device.Slots through the bootloader.
func (s *Slots) Active(ctx context.Context, component string) (string, error) {
	if _, ok := s.cfg.Components[component]; !ok {
		return "", fmt.Errorf("%w: no slots configured for component %q", ErrConfig, component)
	}
	return s.cfg.Bootloader.Active(ctx, component)
}

// writer is a slot open for writing: bounded by the slot's size. The
// device library reads the image back through ReadAt after Sync: from a
// block device, through a second descriptor opened with O_DIRECT (the
// medium, even where dropping the page cache is not available).
type writer struct {
	f     *os.File
	size  int64
	what  string
	path  string
	block bool
	rd    io.Closer
	rdAt  io.ReaderAt
}

func (w *writer) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > w.size {
		return 0, fmt.Errorf("%w: writing %d bytes at %d to %s, which holds %d", device.ErrTooLarge, len(p), off, w.what, w.size)
	}
	return w.f.WriteAt(p, off)
}

func (w *writer) ReadAt(p []byte, off int64) (int, error) {
	if !w.block {
		return w.f.ReadAt(p, off)
	}
	if w.rdAt == nil {
		rd, rdAt, err := openReader(w.path, true)
		if err != nil {
			return 0, fmt.Errorf("partslots: opening %s to read it back: %w", w.what, err)
		}
		w.rd, w.rdAt = rd, rdAt
	}
	return w.rdAt.ReadAt(p, off)
}

// Truncate checks that the image fits; a partition keeps its size (what
// follows the image is left as it was and never read).
func (w *writer) Truncate(n int64) error {
	if n > w.size {
		return fmt.Errorf("%w: image of %d bytes for %s, which holds %d", device.ErrTooLarge, n, w.what, w.size)
	}
	return nil
}

// Sync makes the writes durable, then drops the slot's cached pages so
// that reads come from the medium.
func (w *writer) Sync() error {
	if err := w.f.Sync(); err != nil {
		return err
	}
	dropCache(w.f)
	return nil
}

func (w *writer) Close() error {
	if w.rd != nil {
		w.rd.Close()
	}
	return w.f.Close()
}
