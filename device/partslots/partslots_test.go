//go:build linux

package partslots_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/device/boot"
	"github.com/upkit/upkit/device/grubenv"
	"github.com/upkit/upkit/device/partslots"
	"github.com/upkit/upkit/internal/testutil/looptest"
	"github.com/upkit/upkit/internal/testutil/releasetest"
)

// rig: two slot files for rootfs, a grubenv Switch, a kernel command line.
type rig struct {
	dir, cmdline string
	sw           *boot.Switch
	slots        *partslots.Slots
	a, b         string
}

func newFile(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// newRig makes slots a and b (files of size bytes unless given as
// devices) and Slots over them.
func newRig(t *testing.T, size int64, a, b string) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{dir: dir, cmdline: filepath.Join(dir, "cmdline"), a: a, b: b}
	if r.a == "" {
		r.a = filepath.Join(dir, "rootfs-a.img")
		newFile(t, r.a, size)
	}
	if r.b == "" {
		r.b = filepath.Join(dir, "rootfs-b.img")
		newFile(t, r.b, size)
	}
	r.setCmdline(t, "ro quiet")
	sw, err := boot.New(boot.Config{
		Env: boot.GRUBEnv(grubenv.NewFile(filepath.Join(dir, "grubenv"), nil)), Scheme: boot.GRUB,
		Component: "rootfs", Cmdline: r.cmdline,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.sw = sw
	r.slots, err = partslots.New(partslots.Config{
		Components: map[string]partslots.Pair{"rootfs": {A: r.a, B: r.b}},
		Bootloader: sw,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) setCmdline(t *testing.T, s string) {
	t.Helper()
	if err := os.WriteFile(r.cmdline, []byte(s+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWriteBoundedBySlotSize(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, 4096, "", "")
	n, err := r.slots.SlotSize(ctx, "rootfs", device.SlotB)
	if err != nil || n != 4096 {
		t.Fatalf("SlotSize = %d, %v", n, err)
	}
	w, err := r.slots.OpenWrite(ctx, "rootfs", device.SlotB)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	img := bytes.Repeat([]byte("upkit"), 500)
	if _, err := w.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Truncate(int64(len(img))); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, len(img))
	if _, err := w.ReadAt(back, 0); err != nil || !bytes.Equal(back, img) {
		t.Fatalf("read back: %v", err)
	}
	// Past the end: refused, nothing written, the file does not grow.
	if _, err := w.WriteAt([]byte("xx"), 4095); !errors.Is(err, device.ErrTooLarge) {
		t.Fatalf("write past the end: %v", err)
	}
	if err := w.Truncate(4097); !errors.Is(err, device.ErrTooLarge) {
		t.Fatalf("Truncate past the end: %v", err)
	}
	fi, _ := os.Stat(r.b)
	if fi.Size() != 4096 {
		t.Fatalf("slot file is %d bytes", fi.Size())
	}
	// Truncate kept the partition's size.
	if err := w.Truncate(10); err != nil || fi.Size() != 4096 {
		t.Fatalf("Truncate shrank the slot: %v", err)
	}
}

// A slot that does not exist is not created (a typo must not become a file
// in /dev).
func TestMissingSlotNotCreated(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope")
	r := newRig(t, 4096, "", missing)
	if _, err := r.slots.OpenWrite(ctx, "rootfs", device.SlotB); err == nil {
		t.Fatal("OpenWrite of a missing slot succeeded")
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("OpenWrite created the slot")
	}
	if _, err := r.slots.OpenWrite(ctx, "rootfs", "c"); !errors.Is(err, partslots.ErrConfig) {
		t.Fatalf("slot c: %v", err)
	}
	if _, err := r.slots.OpenWrite(ctx, "app", device.SlotB); !errors.Is(err, partslots.ErrConfig) {
		t.Fatalf("unknown component: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	r2 := newRig(t, 4096, "", filepath.Join(dir, "d"))
	if _, err := r2.slots.OpenWrite(ctx, "rootfs", device.SlotB); !errors.Is(err, partslots.ErrConfig) {
		t.Fatalf("a directory as a slot: %v", err)
	}
}

// Slots named by GPT partition label resolve through by-partlabel links.
func TestPartLabel(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	byLabel := filepath.Join(dir, "by-partlabel")
	os.Mkdir(byLabel, 0o755)
	for _, l := range []string{"rootfs-a", "rootfs-b"} {
		newFile(t, filepath.Join(dir, l+".img"), 8192)
		if err := os.Symlink("../"+l+".img", filepath.Join(byLabel, l)); err != nil {
			t.Fatal(err)
		}
	}
	sw, _ := boot.New(boot.Config{Env: boot.GRUBEnv(grubenv.NewFile(filepath.Join(dir, "grubenv"), nil)), Scheme: boot.GRUB, Component: "rootfs", Cmdline: "/dev/null"})
	s, err := partslots.New(partslots.Config{
		Components:  map[string]partslots.Pair{"rootfs": {A: "PARTLABEL=rootfs-a", B: "PARTLABEL=rootfs-b"}},
		Bootloader:  sw,
		ByPartLabel: byLabel,
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Path("rootfs", device.SlotB)
	if err != nil || p != filepath.Join(dir, "rootfs-b.img") {
		t.Fatalf("Path = %q, %v", p, err)
	}
	if n, err := s.SlotSize(ctx, "rootfs", device.SlotA); err != nil || n != 8192 {
		t.Fatalf("SlotSize = %d, %v", n, err)
	}
	// Two labels leading to one partition: refused.
	os.Remove(filepath.Join(byLabel, "rootfs-b"))
	os.Symlink("../rootfs-a.img", filepath.Join(byLabel, "rootfs-b"))
	if _, err := s.OpenWrite(ctx, "rootfs", device.SlotB); !errors.Is(err, partslots.ErrConfig) {
		t.Fatalf("a and b the same partition: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	sw, _ := boot.New(boot.Config{Env: boot.GRUBEnv(grubenv.NewFile("/nonexistent/grubenv", nil)), Scheme: boot.GRUB, Component: "rootfs"})
	for name, cfg := range map[string]partslots.Config{
		"no bootloader": {Components: map[string]partslots.Pair{"rootfs": {A: "/dev/sda2", B: "/dev/sda3"}}},
		"no components": {Bootloader: sw},
		"relative path": {Bootloader: sw, Components: map[string]partslots.Pair{"rootfs": {A: "sda2", B: "/dev/sda3"}}},
		"unclean path":  {Bootloader: sw, Components: map[string]partslots.Pair{"rootfs": {A: "/dev/../dev/sda2", B: "/dev/sda3"}}},
		"label with /":  {Bootloader: sw, Components: map[string]partslots.Pair{"rootfs": {A: "PARTLABEL=../sda", B: "/dev/sda3"}}},
		"empty label":   {Bootloader: sw, Components: map[string]partslots.Pair{"rootfs": {A: "PARTLABEL=", B: "/dev/sda3"}}},
		"shared slot":   {Bootloader: sw, Components: map[string]partslots.Pair{"rootfs": {A: "/dev/sda2", B: "/dev/sda3"}, "app": {A: "/dev/sda3", B: "/dev/sda4"}}},
		"same slot":     {Bootloader: sw, Components: map[string]partslots.Pair{"rootfs": {A: "/dev/sda2", B: "/dev/sda2"}}},
		"bad component": {Bootloader: sw, Components: map[string]partslots.Pair{"Root": {A: "/dev/sda2", B: "/dev/sda3"}}},
	} {
		if _, err := partslots.New(cfg); !errors.Is(err, partslots.ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The slot the running system booted from is never written.
func TestBootedSlotRefused(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, 4096, "", "")
	r.setCmdline(t, "ro upkit.slot=B")
	if _, err := r.slots.OpenWrite(ctx, "rootfs", device.SlotB); !errors.Is(err, partslots.ErrBusy) || !strings.Contains(err.Error(), "booted from") {
		t.Fatalf("OpenWrite of the booted slot: %v", err)
	}
	w, err := r.slots.OpenWrite(ctx, "rootfs", device.SlotA)
	if err != nil {
		t.Fatalf("OpenWrite of the other slot: %v", err)
	}
	w.Close()
	r.setCmdline(t, "ro rauc.slot=A")
	if _, err := r.slots.OpenWrite(ctx, "rootfs", device.SlotA); !errors.Is(err, partslots.ErrBusy) {
		t.Fatalf("rauc.slot=A: %v", err)
	}
}

// A slot file attached to a loop device is refused.
func TestLoopBackedFileRefused(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, 1<<20, "", "")
	dev := looptest.Attach(t, r.b)
	_, err := r.slots.OpenWrite(ctx, "rootfs", device.SlotB)
	if !errors.Is(err, partslots.ErrBusy) || !strings.Contains(err.Error(), dev) {
		t.Fatalf("OpenWrite of a file behind %s: %v", dev, err)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (Debian/Ubuntu: apt-get install e2fsprogs mount)", name)
	}
	if out, err := exec.Command(p, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// Block devices: a mounted slot, and one opened exclusively elsewhere, are
// refused; once unmounted the slot is written and reads back from the
// device.
func TestMountedSlotRefused(t *testing.T) {
	ctx := context.Background()
	_, devA := looptest.NewFile(t, "a.img", 8<<20)
	_, devB := looptest.NewFile(t, "b.img", 8<<20)
	r := newRig(t, 0, devA, devB)
	if n, err := r.slots.SlotSize(ctx, "rootfs", device.SlotB); err != nil || n != 8<<20 {
		t.Fatalf("SlotSize of %s = %d, %v", devB, n, err)
	}
	run(t, "mkfs.ext4", "-q", "-F", devB)
	mnt := filepath.Join(t.TempDir(), "mnt with space")
	os.Mkdir(mnt, 0o755)
	run(t, "mount", devB, mnt)
	mounted := true
	defer func() {
		if mounted {
			run(t, "umount", mnt)
		}
	}()
	_, err := r.slots.OpenWrite(ctx, "rootfs", device.SlotB)
	if !errors.Is(err, partslots.ErrBusy) || !strings.Contains(err.Error(), "mounted at "+mnt) {
		t.Fatalf("OpenWrite of a mounted slot: %v", err)
	}
	run(t, "umount", mnt)
	mounted = false

	// Held open exclusively by someone else (as the kernel holds a device
	// under device-mapper): refused by O_EXCL.
	held, err := os.OpenFile(devB, os.O_RDONLY|os.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.slots.OpenWrite(ctx, "rootfs", device.SlotB); !errors.Is(err, partslots.ErrBusy) {
		t.Fatalf("OpenWrite of a device open O_EXCL elsewhere: %v", err)
	}
	held.Close()

	w, err := r.slots.OpenWrite(ctx, "rootfs", device.SlotB)
	if err != nil {
		t.Fatal(err)
	}
	img := bytes.Repeat([]byte{0x5a, 0xa5, 1, 2}, 300_000)
	if _, err := io.Copy(io.NewOffsetWriter(w, 0), bytes.NewReader(img)); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	// While open for writing, nobody can mount it.
	if err := exec.Command("mount", devB, mnt).Run(); err == nil {
		exec.Command("umount", mnt).Run()
		t.Fatal("the slot could be mounted while being written")
	}
	w.Close()
	rd, err := r.slots.OpenRead(ctx, "rootfs", device.SlotB)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	back := make([]byte, len(img))
	if _, err := rd.ReadAt(back, 0); err != nil || !bytes.Equal(back, img) {
		t.Fatalf("read back from %s: %v", devB, err)
	}
}

// The device library on partitions: an update goes to the inactive slot,
// boots on trial, commits; an image too large for its slot is refused
// before any download; and a state that points at the running slot as the
// one to write (the bootloader fell back to it) cannot make the device
// overwrite it.
func TestDeviceOnPartitions(t *testing.T) {
	ctx := context.Background()
	srv := releasetest.New(t)
	r := newRig(t, 1<<20, "", "")
	d, err := device.New(device.Config{
		Store: device.NewFileStore(filepath.Join(r.dir, "state"), nil), Slots: r.slots,
		Hardware: releasetest.Hardware, StagingDir: filepath.Join(r.dir, "staging"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Provision(ctx, srv.Root(), releasetest.Now); err != nil {
		t.Fatal(err)
	}
	// The factory image runs from A.
	if err := r.sw.Activate(ctx, "rootfs", device.SlotA); err != nil {
		t.Fatal(err)
	}
	r.setCmdline(t, "upkit.slot=A")

	v1 := bytes.Repeat([]byte("rootfs v1 "), 50_000)
	rel1 := srv.Release(1, releasetest.Image{Component: "rootfs", Version: "1.0.0", SecurityVersion: 1, Payload: v1})
	plan, err := d.Check(ctx, rel1, nil, releasetest.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Install(ctx, srv.Source(), plan, releasetest.Now); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(r.b)
	if !bytes.HasPrefix(got, v1) {
		t.Fatal("slot b does not hold the image")
	}
	if err := r.sw.Try(ctx, device.SlotB); err != nil {
		t.Fatal(err)
	}
	r.setCmdline(t, "upkit.slot=B") // the trial boot
	booted, _ := r.sw.Booted("rootfs")
	st, _ := d.Status(ctx)
	if o := boot.Classify(booted, "", st.Pending.Images["rootfs"].Slot); o != boot.TrialBooted {
		t.Fatalf("outcome %v", o)
	}
	if err := d.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if a, _ := r.slots.Active(ctx, "rootfs"); a != device.SlotB {
		t.Fatalf("active %q after commit", a)
	}

	// Too large for slot a: refused at Check, nothing downloaded.
	big := bytes.Repeat([]byte{7}, 1<<20+1)
	relBig := srv.Release(2, releasetest.Image{Component: "rootfs", Version: "2.0.0", SecurityVersion: 1, Payload: big})
	if _, err := d.Check(ctx, relBig, nil, releasetest.Now); !errors.Is(err, device.ErrTooLarge) {
		t.Fatalf("Check of an image larger than its slot: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(r.dir, "staging")); len(entries) != 0 {
		t.Fatalf("staging holds %d entries", len(entries))
	}

	// The committed slot is b, but the bootloader fell back to a, which
	// runs: the next update would go to a, the running slot. Refused.
	r.setCmdline(t, "upkit.slot=A")
	v3 := bytes.Repeat([]byte("rootfs v3 "), 50_000)
	rel3 := srv.Release(3, releasetest.Image{Component: "rootfs", Version: "3.0.0", SecurityVersion: 1, Payload: v3})
	plan, err = d.Check(ctx, rel3, nil, releasetest.Now)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Images[0].Slot != device.SlotA {
		t.Fatalf("plan writes slot %s", plan.Images[0].Slot)
	}
	before, _ := os.ReadFile(r.a)
	if _, err := d.Install(ctx, srv.Source(), plan, releasetest.Now); !errors.Is(err, partslots.ErrBusy) {
		t.Fatalf("Install into the running slot: %v", err)
	}
	if after, _ := os.ReadFile(r.a); !bytes.Equal(before, after) {
		t.Fatal("the running slot was written")
	}
}

// A slot that is a whole disk with a partition mounted, or held by
// device-mapper, is refused. The test machine's kernel reads no partition
// tables (no CONFIG_MSDOS_PARTITION or CONFIG_EFI_PARTITION) and has no
// device-mapper, so the slot is a real block device (a loop device) but
// the sysfs tree and mount table that describe its partition and holder
// are laid out in a temporary directory, as Linux lays them out.
func TestPartitionOrHolderOfSlot(t *testing.T) {
	ctx := context.Background()
	_, dev := looptest.NewFile(t, "disk.img", 1<<20)
	fi, err := os.Stat(dev)
	if err != nil {
		t.Fatal(err)
	}
	rdev := fi.Sys().(*syscall.Stat_t).Rdev
	self := fmt.Sprintf("%d:%d", (rdev>>8)&0xfff, rdev&0xff|(rdev>>12)&^0xff)
	name := filepath.Base(dev)
	sys := t.TempDir()
	mkdir := func(p string) {
		if err := os.MkdirAll(filepath.Join(sys, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, p string) {
		if err := os.Symlink(target, filepath.Join(sys, p)); err != nil {
			t.Fatal(err)
		}
	}
	mkdir("devices/virtual/block/" + name + "/" + name + "p1")
	mkdir("devices/virtual/block/" + name + "/holders")
	mkdir("dev/block")
	link("../../devices/virtual/block/"+name, "dev/block/"+self)
	link("../../devices/virtual/block/"+name+"/"+name+"p1", "dev/block/259:7")
	mountinfo := filepath.Join(sys, "mountinfo")
	os.WriteFile(mountinfo, []byte("22 27 0:21 / /proc rw,relatime - proc proc rw\n"+
		"97 27 259:7 / /data\\040store rw,relatime - ext4 /dev/"+name+"p1 rw\n"), 0o644)
	r := newRig(t, 1<<20, "", dev)
	slots, err := partslots.New(partslots.Config{
		Components: map[string]partslots.Pair{"rootfs": {A: r.a, B: dev}},
		Bootloader: r.sw, Sys: sys, MountInfo: mountinfo,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = slots.OpenWrite(ctx, "rootfs", device.SlotB)
	if !errors.Is(err, partslots.ErrBusy) || !strings.Contains(err.Error(), "has a partition mounted at /data store") {
		t.Fatalf("OpenWrite of a disk with a mounted partition: %v", err)
	}
	// Not mounted, but held by device-mapper.
	os.WriteFile(mountinfo, []byte("22 27 0:21 / /proc rw,relatime - proc proc rw\n"), 0o644)
	mkdir("devices/virtual/block/" + name + "/holders/dm-0")
	_, err = slots.OpenWrite(ctx, "rootfs", device.SlotB)
	if !errors.Is(err, partslots.ErrBusy) || !strings.Contains(err.Error(), "held by dm-0") {
		t.Fatalf("OpenWrite of a disk held by dm-0: %v", err)
	}
	os.Remove(filepath.Join(sys, "devices/virtual/block/"+name+"/holders/dm-0"))
	w, err := slots.OpenWrite(ctx, "rootfs", device.SlotB)
	if err != nil {
		t.Fatalf("OpenWrite of the free disk: %v", err)
	}
	w.Close()
}

// A mounted slot (the running root file system) reads as what its medium
// holds: what the device library hashes as a delta base, at commit or
// when adopting the factory image. ext4, even mounted read-only, keeps
// bytes in its buffers of the device that were never written to it (block
// bitmaps it writes lazily), so a buffered read of the device does not
// hash to the image written there; the slot is read with O_DIRECT.
func TestMountedSlotReadsTheMedium(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	for i := 0; i < 20; i++ {
		os.WriteFile(filepath.Join(src, fmt.Sprintf("file%d", i)), bytes.Repeat([]byte{byte(i)}, 100_000), 0o644)
	}
	img := filepath.Join(t.TempDir(), "rootfs.ext4")
	// As e2e/build.sh makes the device's root file systems.
	run(t, "mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-O", "^metadata_csum_seed,^orphan_file", "-d", src, img, "32M")
	want, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	dev := looptest.Attach(t, img)
	r := newRig(t, 0, dev, "")
	mnt := filepath.Join(t.TempDir(), "root")
	os.Mkdir(mnt, 0o755)
	run(t, "mount", "-o", "ro", dev, mnt)
	defer run(t, "umount", mnt)
	run(t, "ls", "-lR", mnt)
	r.setCmdline(t, "ro upkit.slot=A") // the running system
	buffered, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a buffered read of the mounted device %s the image", map[bool]string{true: "matches", false: "differs from"}[bytes.Equal(buffered[:len(want)], want)])
	rd, err := r.slots.OpenRead(ctx, "rootfs", device.SlotA)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	got := make([]byte, len(want))
	if n, err := rd.ReadAt(got, 0); err != nil || n != len(want) || !bytes.Equal(got, want) {
		t.Fatalf("OpenRead of the mounted slot: %d bytes, %v; equal to the image: %v", n, err, bytes.Equal(got, want))
	}
	// Unaligned reads, and reads across the end.
	for _, c := range []struct{ off, n int }{{1, 10}, {4095, 2}, {5000, 300_000}, {len(want) - 7, 7}} {
		p := make([]byte, c.n)
		if n, err := rd.ReadAt(p, int64(c.off)); err != nil || n != c.n || !bytes.Equal(p, want[c.off:c.off+c.n]) {
			t.Fatalf("ReadAt(%d bytes at %d): %d, %v", c.n, c.off, n, err)
		}
	}
	p := make([]byte, 10)
	if n, err := rd.ReadAt(p, int64(len(want)-4)); n != 4 || err != io.EOF {
		t.Fatalf("ReadAt across the end: %d, %v", n, err)
	}
}
