package ubootenv_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/upkit/upkit/device/ubootenv"
	"github.com/upkit/upkit/internal/testutil/looptest"
)

// tool returns the path of a real tool; the test fails (never skips) when
// it is missing, saying which Debian package has it.
func tool(t *testing.T, name string) string {
	t.Helper()
	pkgs := map[string]string{
		"fw_printenv": "libubootenv-tool", "fw_setenv": "libubootenv-tool",
		"mkenvimage": "u-boot-tools", "mkimage": "u-boot-tools", "losetup": "mount",
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install it (Debian/Ubuntu: apt-get install %s)", name, pkgs[name])
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(tool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// fixture is an environment on disk with its fw_env.config.
type fixture struct {
	dir, config string
	cfg         ubootenv.Config
	st          *ubootenv.Storage
}

// newFixture writes a fw_env.config for lines (%s is replaced by the
// fixture's directory) and opens it with a lock file in the directory.
func newFixture(t *testing.T, lines ...string) *fixture {
	t.Helper()
	dir := t.TempDir()
	text := ""
	for _, l := range lines {
		text += strings.ReplaceAll(l, "%s", dir) + "\n"
	}
	config := filepath.Join(dir, "fw_env.config")
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := ubootenv.ParseConfig([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	// The lock fw_setenv takes (its default): the test's Storage takes it
	// too, so the tools and upkit never run at once.
	st, err := ubootenv.Open(*cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dir: dir, config: config, cfg: *cfg, st: st}
}

func (fx *fixture) printenv(t *testing.T) string {
	t.Helper()
	return run(t, "fw_printenv", "-c", fx.config)
}

func (fx *fixture) setenv(t *testing.T, name, value string) {
	t.Helper()
	run(t, "fw_setenv", "-c", fx.config, name, value)
}

// listing is what fw_printenv prints for vars: sorted name=value lines.
func listing(vars map[string]string) string {
	var names []string
	for n := range vars {
		names = append(names, n)
	}
	sort.Strings(names)
	var sb strings.Builder
	for _, n := range names {
		sb.WriteString(n + "=" + vars[n] + "\n")
	}
	return sb.String()
}

var sample = map[string]string{
	"bootcmd":     "run distro_bootcmd",
	"BOOT_ORDER":  "A B",
	"BOOT_A_LEFT": "3",
	"BOOT_B_LEFT": "3",
	"equals":      "a=b=c",
	"multi":       "line1\nline2",
	"utf8":        "héllo ✓",
	"spaces":      " x  y ",
}

func (fx *fixture) write(t *testing.T, vars map[string]string) {
	t.Helper()
	err := fx.st.Update(context.Background(), func(e *ubootenv.Env) error {
		for n, v := range vars {
			if err := e.Set(n, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (fx *fixture) read(t *testing.T) map[string]string {
	t.Helper()
	e, err := fx.st.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range e.Names() {
		out[n], _ = e.Get(n)
	}
	return out
}

// layouts are the storage set-ups tested against the real tools.
var layouts = map[string][]string{
	"single file":            {"%s/uboot.env 0x0 0x4000"},
	"single at offset":       {"%s/disk.img 0x10000 0x2000"},
	"redundant in one file":  {"%s/disk.img 0x0 0x4000", "%s/disk.img 0x4000 0x4000"},
	"redundant in two files": {"%s/env1 0x0 0x1000", "%s/env2 0x0 0x1000"},
}

// prepare creates the files of a layout (zeros: no valid copy yet).
func prepare(t *testing.T, fx *fixture) {
	for _, l := range fx.cfg.Copies {
		if _, err := os.Stat(l.Path); err == nil {
			continue
		}
		if err := os.WriteFile(l.Path, make([]byte, 0x20000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// What upkit writes, fw_printenv reads; what fw_setenv then writes, upkit
// reads; and again, so that each picks up the other's latest copy.
func TestInteropWithLibubootenv(t *testing.T) {
	for name, lines := range layouts {
		t.Run(name, func(t *testing.T) {
			fx := newFixture(t, lines...)
			prepare(t, fx)
			fx.st = mustOpen(t, fx.cfg, true)
			want := map[string]string{}
			for k, v := range sample {
				want[k] = v
			}
			fx.write(t, sample)
			if got := fx.printenv(t); got != listing(want) {
				t.Fatalf("fw_printenv after upkit wrote:\n%s\nwant\n%s", got, listing(want))
			}
			for i := 0; i < 3; i++ {
				fx.setenv(t, "BOOT_A_LEFT", fmt.Sprint(2-i))
				want["BOOT_A_LEFT"] = fmt.Sprint(2 - i)
				if got := fx.read(t); listing(got) != listing(want) {
					t.Fatalf("round %d: upkit read after fw_setenv:\n%s\nwant\n%s", i, listing(got), listing(want))
				}
				fx.write(t, map[string]string{"BOOT_ORDER": fmt.Sprintf("B A %d", i)})
				want["BOOT_ORDER"] = fmt.Sprintf("B A %d", i)
				if got := fx.printenv(t); got != listing(want) {
					t.Fatalf("round %d: fw_printenv after upkit wrote:\n%s\nwant\n%s", i, got, listing(want))
				}
			}
			// Deleting: an empty value deletes, as in U-Boot.
			fx.write(t, map[string]string{"spaces": ""})
			delete(want, "spaces")
			if got := fx.printenv(t); got != listing(want) {
				t.Fatalf("fw_printenv after a deletion:\n%s", got)
			}
		})
	}
}

func mustOpen(t *testing.T, cfg ubootenv.Config, allowEmpty bool) *ubootenv.Storage {
	t.Helper()
	cfg.AllowEmpty = allowEmpty
	st, err := ubootenv.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Redundant writes alternate between the copies, each with the flags one
// higher, the other copy left as it was.
func TestRedundantWritesAlternate(t *testing.T) {
	fx := newFixture(t, "%s/disk.img 0x0 0x1000", "%s/disk.img 0x1000 0x1000")
	prepare(t, fx)
	fx.st = mustOpen(t, fx.cfg, true)
	ctx := context.Background()
	var lastCopy []byte
	for i := 0; i < 6; i++ {
		fx.write(t, map[string]string{"n": fmt.Sprint(i)})
		states, cur, err := fx.st.Inspect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cur != i%2 {
			t.Fatalf("write %d went to copy %d, want %d", i, cur, i%2)
		}
		if states[cur].Flags != byte(i+1) {
			t.Fatalf("write %d has flags %d, want %d", i, states[cur].Flags, i+1)
		}
		other := fx.cfg.Copies[1-cur]
		img := readAt(t, other.Path, other.Offset, other.Size)
		if i > 0 && !bytes.Equal(img, lastCopy) {
			t.Fatalf("write %d changed the other copy", i)
		}
		lastCopy = readAt(t, fx.cfg.Copies[cur].Path, fx.cfg.Copies[cur].Offset, fx.cfg.Copies[cur].Size)
	}
}

func readAt(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// A damaged current copy (bad CRC, or a write torn by a power cut) makes
// upkit and fw_printenv both fall back to the other copy; with both
// damaged, neither reads anything and upkit will not write over them.
func TestDamagedCopies(t *testing.T) {
	fx := newFixture(t, "%s/disk.img 0x0 0x1000", "%s/disk.img 0x1000 0x1000")
	prepare(t, fx)
	fx.st = mustOpen(t, fx.cfg, true)
	fx.write(t, map[string]string{"v": "old"}) // copy 0, flags 1
	fx.write(t, map[string]string{"v": "new"}) // copy 1, flags 2
	old := map[string]string{"v": "old"}
	c1 := fx.cfg.Copies[1]

	t.Run("bad CRC", func(t *testing.T) {
		img := readAt(t, c1.Path, c1.Offset, c1.Size)
		defer writeAt(t, c1.Path, c1.Offset, bytes.Clone(img))
		img[0] ^= 0xff
		writeAt(t, c1.Path, c1.Offset, img)
		if got := listing(fx.read(t)); got != listing(old) {
			t.Fatalf("upkit read %q", got)
		}
		if got := fx.printenv(t); got != listing(old) {
			t.Fatalf("fw_printenv read %q", got)
		}
	})
	t.Run("torn write", func(t *testing.T) {
		c0 := fx.cfg.Copies[0]
		img := readAt(t, c0.Path, c0.Offset, c0.Size)
		defer writeAt(t, c0.Path, c0.Offset, img)
		// A newer copy torn while it was written over copy 0.
		e := ubootenv.NewEnv()
		e.Set("v", "newest")
		newer, err := e.Encode(c1.Size, true, 3)
		if err != nil {
			t.Fatal(err)
		}
		// Only the header and a few bytes of data reach the disk.
		writeAt(t, fx.cfg.Copies[0].Path, fx.cfg.Copies[0].Offset, newer[:8])
		want := map[string]string{"v": "new"}
		if got := listing(fx.read(t)); got != listing(want) {
			t.Fatalf("upkit read %q", got)
		}
		if got := fx.printenv(t); got != listing(want) {
			t.Fatalf("fw_printenv read %q", got)
		}
	})
	t.Run("both damaged", func(t *testing.T) {
		disk := filepath.Join(fx.dir, "disk.img")
		before, _ := os.ReadFile(disk)
		defer os.WriteFile(disk, before, 0o644)
		for _, c := range fx.cfg.Copies {
			img := readAt(t, c.Path, c.Offset, c.Size)
			img[10] ^= 0xff
			writeAt(t, c.Path, c.Offset, img)
		}
		damaged, _ := os.ReadFile(disk)
		if _, err := fx.st.Read(context.Background()); !errors.Is(err, ubootenv.ErrNoValidCopy) {
			t.Fatalf("Read: %v, want ErrNoValidCopy", err)
		}
		strict := mustOpen(t, fx.cfg, false)
		err := strict.Update(context.Background(), func(e *ubootenv.Env) error { return e.Set("v", "x") })
		if !errors.Is(err, ubootenv.ErrNoValidCopy) {
			t.Fatalf("Update without AllowEmpty: %v", err)
		}
		if now, _ := os.ReadFile(disk); !bytes.Equal(now, damaged) {
			t.Fatal("Update without AllowEmpty wrote over damaged copies")
		}
	})
}

// The flags wrap from 255 to 0; both readers take the copy with 0 then.
func TestFlagsWrap(t *testing.T) {
	fx := newFixture(t, "%s/disk.img 0x0 0x1000", "%s/disk.img 0x1000 0x1000")
	prepare(t, fx)
	put := func(i int, flags byte, v string) {
		e := ubootenv.NewEnv()
		e.Set("v", v)
		img, err := e.Encode(0x1000, true, flags)
		if err != nil {
			t.Fatal(err)
		}
		writeAt(t, fx.cfg.Copies[i].Path, fx.cfg.Copies[i].Offset, img)
	}
	for _, c := range []struct {
		f0, f1 byte
		want   string
	}{
		{255, 0, "copy1"}, {0, 255, "copy0"}, {254, 255, "copy1"}, {7, 7, "copy0"}, {9, 8, "copy0"},
	} {
		put(0, c.f0, "copy0")
		put(1, c.f1, "copy1")
		if got := fx.read(t)["v"]; got != c.want {
			t.Errorf("flags %d,%d: upkit read %s, want %s", c.f0, c.f1, got, c.want)
		}
		if got := fx.printenv(t); got != "v="+c.want+"\n" {
			t.Errorf("flags %d,%d: fw_printenv read %q, want %s", c.f0, c.f1, got, c.want)
		}
		// The next write goes to the other copy with flags+1, wrapping.
		cur := 0
		if c.want == "copy1" {
			cur = 1
		}
		fx.write(t, map[string]string{"v": "next"})
		states, now, err := fx.st.Inspect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		prev := []byte{c.f0, c.f1}[cur]
		if now != 1-cur || states[now].Flags != prev+1 {
			t.Errorf("flags %d,%d: wrote copy %d flags %d, want copy %d flags %d", c.f0, c.f1, now, states[now].Flags, 1-cur, prev+1)
		}
		if got := fx.printenv(t); got != "v=next\n" {
			t.Errorf("fw_printenv after the write: %q", got)
		}
	}
}

// mkenvimage's images (single, redundant, either padding) read as the text
// they were made from.
func TestMkenvimageImages(t *testing.T) {
	dir := t.TempDir()
	text := "bootcmd=run x\n# a comment\nBOOT_ORDER=A B\n\nfoo=bar=baz\nmulti=a\\\nb\nBOOT_A_LEFT=3\n"
	want := map[string]string{"bootcmd": "run x", "BOOT_ORDER": "A B", "foo": "bar=baz", "multi": "a\nb", "BOOT_A_LEFT": "3"}
	src := filepath.Join(dir, "env.txt")
	os.WriteFile(src, []byte(text), 0o644)
	for _, args := range [][]string{{}, {"-r"}, {"-p", "0x00"}, {"-r", "-p", "0"}} {
		out := filepath.Join(dir, "env.bin")
		run(t, "mkenvimage", append(append([]string{"-s", "0x2000"}, args...), "-o", out, src)...)
		img, _ := os.ReadFile(out)
		redundant := len(args) > 0 && args[0] == "-r"
		e, flags, err := ubootenv.Decode(img, redundant)
		if err != nil {
			t.Fatalf("mkenvimage %v: %v", args, err)
		}
		got := map[string]string{}
		for _, n := range e.Names() {
			got[n], _ = e.Get(n)
		}
		if listing(got) != listing(want) {
			t.Fatalf("mkenvimage %v: read\n%s\nwant\n%s", args, listing(got), listing(want))
		}
		if redundant && flags != 1 {
			t.Fatalf("mkenvimage -r flags %d", flags)
		}
	}
}

// Encode's image is mkenvimage's, bit for bit, for the same variables in
// sorted order and zero padding.
func TestEncodeMatchesMkenvimage(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "env.txt")
	os.WriteFile(src, []byte(listing(map[string]string{"BOOT_ORDER": "A B", "a": "1", "bootcmd": "run x"})), 0o644)
	e := ubootenv.NewEnv()
	e.Set("bootcmd", "run x")
	e.Set("a", "1")
	e.Set("BOOT_ORDER", "A B")
	for _, redundant := range []bool{false, true} {
		args := []string{"-s", "0x1000", "-p", "0"}
		if redundant {
			args = append(args, "-r")
		}
		out := filepath.Join(dir, "env.bin")
		run(t, "mkenvimage", append(args, "-o", out, src)...)
		theirs, _ := os.ReadFile(out)
		ours, err := e.Encode(0x1000, redundant, 1)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours, theirs) {
			t.Fatalf("redundant=%v: Encode differs from mkenvimage", redundant)
		}
	}
}

func TestNoSpace(t *testing.T) {
	e := ubootenv.NewEnv()
	// The data area is 0x1000-4 bytes: "a=" + value + NUL + the final NUL.
	e.Set("a", strings.Repeat("x", 0x1000-4-4+1))
	if _, err := e.Encode(0x1000, false, 0); !errors.Is(err, ubootenv.ErrNoSpace) {
		t.Fatalf("Encode: %v, want ErrNoSpace", err)
	}
	e.Set("a", strings.Repeat("x", 0x1000-4-4))
	img, err := e.Encode(0x1000, false, 0)
	if err != nil {
		t.Fatalf("an environment that just fits: %v", err)
	}
	if _, _, err := ubootenv.Decode(img, false); err != nil {
		t.Fatal(err)
	}
}

func TestSetRefusesBadNames(t *testing.T) {
	e := ubootenv.NewEnv()
	for _, n := range []string{"", "a=b", "a\x00"} {
		if err := e.Set(n, "1"); !errors.Is(err, ubootenv.ErrName) {
			t.Errorf("Set(%q): %v", n, err)
		}
	}
	if err := e.Set("x", "a\x00b"); !errors.Is(err, ubootenv.ErrName) {
		t.Errorf("NUL value: %v", err)
	}
}

func TestDecodeCorrupt(t *testing.T) {
	withCRC := func(data string, size int) []byte {
		e := ubootenv.NewEnv()
		img, _ := e.Encode(size, false, 0)
		copy(img[4:], data)
		// recompute the CRC over the forged data
		return fixCRC(img)
	}
	cases := map[string][]byte{
		"no equals":       withCRC("abc\x00\x00", 64),
		"empty name":      withCRC("=x\x00\x00", 64),
		"duplicate":       withCRC("a=1\x00a=2\x00\x00", 64),
		"unterminated":    withCRC(strings.Repeat("a=1\x00", 15), 64),
		"no final NUL":    withCRC("a=1234567890123456789012345678901234567890123456789012345678\x00", 64),
		"too short":       {1, 2, 3, 4},
		"larger than max": make([]byte, ubootenv.MaxSize+1),
	}
	for name, img := range cases {
		if _, _, err := ubootenv.Decode(img, false); !errors.Is(err, ubootenv.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	bad := withCRC("a=1\x00\x00", 64)
	bad[20] ^= 1
	if _, _, err := ubootenv.Decode(bad, false); !errors.Is(err, ubootenv.ErrCRC) {
		t.Errorf("bad CRC: %v, want ErrCRC", err)
	}
}

func TestParseConfig(t *testing.T) {
	good := map[string]ubootenv.Location{
		"/dev/mmcblk0 0x3800000 0x4000":          {Path: "/dev/mmcblk0", Offset: 0x3800000, Size: 0x4000},
		"/boot/uboot.env 0 4000":                 {Path: "/boot/uboot.env", Offset: 0, Size: 0x4000},
		"/dev/sda2\t-0x20000\t0x20000":           {Path: "/dev/sda2", Offset: -0x20000, Size: 0x20000},
		"/x 010 0x100 0x100 2 # octal offset":    {Path: "/x", Offset: 8, Size: 0x100, SectorSize: 0x100, Sectors: 2},
		"/x 4096 100 # decimal offset, hex size": {Path: "/x", Offset: 4096, Size: 0x100},
	}
	for line, want := range good {
		cfg, err := ubootenv.ParseConfig([]byte("# comment\n\n  \n" + line + "\n"))
		if err != nil {
			t.Errorf("%q: %v", line, err)
			continue
		}
		if len(cfg.Copies) != 1 || cfg.Copies[0] != want || cfg.LockFile != ubootenv.DefaultLockFile {
			t.Errorf("%q: %+v, want %+v", line, cfg, want)
		}
	}
	bad := []string{
		"/x 0x0",
		"/x zero 0x100",
		"/x 0 0x100\n/x 0x100 0x200",
		"/x 0 0x100\n/x 0x100 0x100\n/x 0x200 0x100",
		"/x 0 0x100\n/x 0x80 0x100",
		"/x 0 -0x100",
		"/x 0 0x4",
		"/x 0 0x200000",
		"/dev/mtd1 0 0x4000",
		"/dev/ubi0_1 0 0x4000",
		"/x 0 0x100 0x100 1 2",
		"/x 0_0 0x100",
		"",
	}
	for _, text := range bad {
		if _, err := ubootenv.ParseConfig([]byte(text)); !errors.Is(err, ubootenv.ErrConfig) {
			t.Errorf("%q: %v, want ErrConfig", text, err)
		}
	}
}

// A missing single-copy file: Read fails with ErrNoValidCopy (wrapping
// fs.ErrNotExist), Update creates it only with AllowEmpty.
func TestMissingFile(t *testing.T) {
	fx := newFixture(t, "%s/upkit.env 0x0 0x1000")
	ctx := context.Background()
	_, err := fx.st.Read(ctx)
	if !errors.Is(err, ubootenv.ErrNoValidCopy) || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("Read: %v", err)
	}
	if err := fx.st.Update(ctx, func(e *ubootenv.Env) error { return e.Set("a", "1") }); !errors.Is(err, ubootenv.ErrNoValidCopy) {
		t.Fatalf("Update without AllowEmpty: %v", err)
	}
	if _, err := os.Stat(filepath.Join(fx.dir, "upkit.env")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("Update without AllowEmpty created the file")
	}
	fx.st = mustOpen(t, fx.cfg, true)
	fx.write(t, map[string]string{"a": "1"})
	if got := fx.printenv(t); got != "a=1\n" {
		t.Fatalf("fw_printenv: %q", got)
	}
	fi, _ := os.Stat(filepath.Join(fx.dir, "upkit.env"))
	if fi.Size() != 0x1000 {
		t.Fatalf("created %d bytes", fi.Size())
	}
}

// While upkit holds fw_setenv's lock, fw_setenv waits.
func TestLockSharedWithFwSetenv(t *testing.T) {
	fx := newFixture(t, "%s/uboot.env 0x0 0x1000")
	fx.st = mustOpen(t, fx.cfg, true)
	fx.write(t, map[string]string{"a": "1"})
	// fw_setenv's lock is /var/lock/fw_printenv.lock: the fixture's
	// Storage uses the same file.
	if fx.cfg.LockFile != ubootenv.DefaultLockFile {
		t.Fatalf("lock %s", fx.cfg.LockFile)
	}
	release := make(chan struct{})
	held := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- fx.st.Update(context.Background(), func(e *ubootenv.Env) error {
			close(held)
			<-release
			return e.Set("a", "2")
		})
	}()
	<-held
	cmd := exec.Command(tool(t, "fw_setenv"), "-c", fx.config, "b", "3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("fw_setenv ran while upkit held the lock (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Fatal(err)
	}
	if got := fx.printenv(t); got != "a=2\nb=3\n" {
		t.Fatalf("fw_printenv: %q (a lost update?)", got)
	}
}

// fixCRC recomputes the CRC of a single-copy image.
func fixCRC(img []byte) []byte {
	binary.LittleEndian.PutUint32(img, crc32.ChecksumIEEE(img[4:]))
	return img
}

// On a real block device (a loop device), with the redundant copy at a
// negative offset (from the end of the device), upkit and libubootenv read
// each other's writes.
func TestBlockDevice(t *testing.T) {
	_, dev := looptest.NewFile(t, "disk.img", 1<<20)
	fx := newFixture(t, dev+" 0x8000 0x4000", dev+" -0x4000 0x4000")
	fx.st = mustOpen(t, fx.cfg, true)
	fx.write(t, sample)
	if got := fx.printenv(t); got != listing(sample) {
		t.Fatalf("fw_printenv:\n%s", got)
	}
	fx.setenv(t, "BOOT_B_LEFT", "1")
	want := map[string]string{}
	for k, v := range sample {
		want[k] = v
	}
	want["BOOT_B_LEFT"] = "1"
	if got := fx.read(t); listing(got) != listing(want) {
		t.Fatalf("upkit read:\n%s", listing(got))
	}
	states, cur, err := fx.st.Inspect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cur != 1 || states[1].Flags != 2 {
		t.Fatalf("fw_setenv's write: current copy %d flags %d, want 1 and 2", cur, states[1].Flags)
	}
	// The copy at -0x4000 is the last 16 KiB of the device.
	f, _ := os.Open(dev)
	defer f.Close()
	img := make([]byte, 0x4000)
	if _, err := f.ReadAt(img, 1<<20-0x4000); err != nil {
		t.Fatal(err)
	}
	if e, flags, err := ubootenv.Decode(img, true); err != nil || flags != 2 {
		t.Fatalf("last 16 KiB of the device: %v, flags %d", err, flags)
	} else if v, _ := e.Get("BOOT_B_LEFT"); v != "1" {
		t.Fatalf("BOOT_B_LEFT=%q", v)
	}
}
