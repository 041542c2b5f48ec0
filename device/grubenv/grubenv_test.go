package grubenv_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upkit/upkit/device/grubenv"
)

// grubEditenv runs the real grub-editenv and returns its output; the test
// fails (never skips) when the tool is missing.
func grubEditenv(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("grub-editenv")
	if err != nil {
		t.Fatal("grub-editenv not found: install GRUB's tools (Debian/Ubuntu: apt-get install grub-common)")
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("grub-editenv %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// values that exercise GRUB's escaping and parsing.
var tricky = []struct{ name, value string }{
	{"ORDER", "A B"},
	{"A_OK", "1"},
	{"empty", ""},
	{"backslash", `C:\boot\x`},
	{"trailing_backslash", `end\`},
	{"newline", "line1\nline2\n"},
	{"equals", "a=b=c"},
	{"hash", "#not a comment"},
	{"utf8", "héllo wörld ✓"},
	{"spaces", "  leading and trailing  "},
}

// What upkit writes, grub-editenv lists, variable for variable and in order.
func TestWrittenByUpkitReadByGrubEditenv(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "grubenv")
	f := grubenv.NewFile(path, nil)
	err := f.Update(ctx, func(b *grubenv.Block) error {
		for _, v := range tricky {
			if err := b.Set(v.name, v.value); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, v := range tricky {
		want.WriteString(v.name + "=" + v.value + "\n")
	}
	if got := grubEditenv(t, path, "list"); got != want.String() {
		t.Fatalf("grub-editenv list:\n%q\nwant\n%q", got, want.String())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != grubenv.DefaultSize {
		t.Fatalf("file is %d bytes, want %d", fi.Size(), grubenv.DefaultSize)
	}
	// grub-editenv can edit what upkit wrote.
	grubEditenv(t, path, "set", "A_OK=0")
	grubEditenv(t, path, "unset", "empty")
	b, err := f.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := b.Get("A_OK"); v != "0" {
		t.Fatalf("A_OK = %q after grub-editenv set", v)
	}
	if _, ok := b.Get("empty"); ok {
		t.Fatal("empty still set after grub-editenv unset")
	}
}

// The same edits made by grub-editenv and by upkit give the same bytes:
// values set in place, new ones appended, deletions closing the gap,
// Debian's warning comment kept.
func TestSameBytesAsGrubEditenv(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	theirs := filepath.Join(dir, "theirs")
	grubEditenv(t, theirs, "create")
	ours := filepath.Join(dir, "ours")
	created, err := os.ReadFile(theirs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ours, created, 0o644); err != nil {
		t.Fatal(err)
	}
	f := grubenv.NewFile(ours, nil)
	steps := []struct {
		unset       bool
		name, value string
	}{
		{false, "ORDER", "A B"},
		{false, "A_OK", "1"},
		{false, "A_TRY", "0"},
		{false, "B_OK", "0"},
		{false, "B_TRY", "0"},
		{false, "A_TRY", "1"},           // in place, same length
		{false, "ORDER", "B A C D"},     // in place, longer
		{false, "ORDER", "B"},           // in place, shorter
		{false, "path", `\EFI\upkit`},   // escaped
		{false, "multi", "one\ntwo"},    // escaped newline
		{true, "A_OK", ""},              // deletion in the middle
		{false, "A_OK", "1"},            // back at the end
		{true, "missing", ""},           // deleting nothing
		{false, "path", `\EFI\upkit\2`}, // escaped, in place
	}
	for i, s := range steps {
		if s.unset {
			grubEditenv(t, theirs, "unset", s.name)
		} else {
			grubEditenv(t, theirs, "set", s.name+"="+s.value)
		}
		err := f.Update(ctx, func(b *grubenv.Block) error {
			if s.unset {
				b.Delete(s.name)
				return nil
			}
			return b.Set(s.name, s.value)
		})
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		want, _ := os.ReadFile(theirs)
		got, _ := os.ReadFile(ours)
		if !bytes.Equal(got, want) {
			t.Fatalf("step %d (%+v): bytes differ\nupkit:        %q\ngrub-editenv: %q", i, s, got, want)
		}
	}
}

// What grub-editenv writes, upkit reads, and re-encodes to the same bytes.
func TestWrittenByGrubEditenvReadByUpkit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grubenv")
	grubEditenv(t, path, "create")
	args := []string{path, "set"}
	for _, v := range tricky {
		args = append(args, v.name+"="+v.value)
	}
	grubEditenv(t, args...)
	grubEditenv(t, path, "set", "#hidden=1") // a comment line to GRUB
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := grubenv.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range tricky {
		if got, ok := b.Get(v.name); !ok || got != v.value {
			t.Errorf("%s = %q, %v; want %q", v.name, got, ok, v.value)
		}
	}
	if _, ok := b.Get("#hidden"); ok {
		t.Error("a comment line was read as a variable")
	}
	if got, want := len(b.Names()), len(tricky); got != want {
		t.Errorf("%d variables, want %d: %q", got, want, b.Names())
	}
	if !bytes.Equal(b.Encode(), data) {
		t.Fatalf("re-encoded block differs from grub-editenv's")
	}
}

// A full block refuses a variable, as grub-editenv does, and stays as it was.
func TestNoSpace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grubenv")
	grubEditenv(t, path, "create")
	data, _ := os.ReadFile(path)
	b, err := grubenv.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 900)
	if err := b.Set("big", big); err != nil {
		t.Fatal(err)
	}
	before := b.Encode()
	if err := b.Set("more", strings.Repeat("y", 200)); !errors.Is(err, grubenv.ErrNoSpace) {
		t.Fatalf("Set past the size: %v, want ErrNoSpace", err)
	}
	if err := b.Set("big", big+strings.Repeat("z", 200)); !errors.Is(err, grubenv.ErrNoSpace) {
		t.Fatalf("growing a value past the size: %v, want ErrNoSpace", err)
	}
	if !bytes.Equal(b.Encode(), before) {
		t.Fatal("a refused Set changed the block")
	}
	// grub-editenv agrees that the second variable does not fit.
	if err := os.WriteFile(path, before, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("grub-editenv", path, "set", "more="+strings.Repeat("y", 200)).CombinedOutput(); err == nil {
		t.Fatalf("grub-editenv accepted what upkit refused: %s", out)
	}
	if len(b.Encode()) != grubenv.DefaultSize {
		t.Fatalf("block is %d bytes", len(b.Encode()))
	}
}

func TestSetRefusesBadNames(t *testing.T) {
	b, _ := grubenv.New(0)
	for _, name := range []string{"", "#x", "a=b", "a\nb", `a\b`, "a\x00b"} {
		if err := b.Set(name, "1"); !errors.Is(err, grubenv.ErrName) {
			t.Errorf("Set(%q): %v, want ErrName", name, err)
		}
	}
	if err := b.Set("x", "a\x00b"); !errors.Is(err, grubenv.ErrName) {
		t.Errorf("Set with NUL value: %v, want ErrName", err)
	}
	if len(b.Names()) != 0 {
		t.Fatalf("refused names were set: %q", b.Names())
	}
}

func TestCorrupt(t *testing.T) {
	pad := func(s string) []byte {
		return []byte(s + strings.Repeat("#", grubenv.DefaultSize-len(s)))
	}
	cases := map[string][]byte{
		"no header":           pad("# GRUB Environment Blok\nA=1\n"),
		"empty":               nil,
		"no equals":           pad(grubenv.Signature + "A\nB=1\n"),
		"unterminated value":  []byte(grubenv.Signature + "A=1"),
		"escape at end":       []byte(grubenv.Signature + `A=1\`),
		"duplicate":           pad(grubenv.Signature + "A=1\nA=2\n"),
		"NUL":                 pad(grubenv.Signature + "A=1\x00\n"),
		"garbage in padding":  []byte(grubenv.Signature + "A=1\n###x###"),
		"zeros after content": append([]byte(grubenv.Signature+"A=1\n"), make([]byte, 100)...),
		"too large":           bytes.Repeat([]byte("#"), grubenv.MaxSize+1),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			if name == "too large" {
				copy(data, grubenv.Signature)
			}
			if _, err := grubenv.Parse(data); !errors.Is(err, grubenv.ErrCorrupt) {
				t.Fatalf("Parse: %v, want ErrCorrupt", err)
			}
		})
	}
}

// A block exactly full (no padding) and a header-only block are valid, as
// for GRUB.
func TestEdgeSizes(t *testing.T) {
	full := []byte(grubenv.Signature + "A=1\n")
	b, err := grubenv.Parse(full)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Set("B", ""); !errors.Is(err, grubenv.ErrNoSpace) {
		t.Fatalf("Set in a full block: %v", err)
	}
	if _, err := grubenv.Parse([]byte(grubenv.Signature)); err != nil {
		t.Fatalf("header only: %v", err)
	}
}

// Update on a damaged file fails and leaves it alone; on a missing one it
// creates a DefaultSize block; an unchanged block is not rewritten.
func TestUpdateFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "grubenv")
	f := grubenv.NewFile(path, nil)
	if _, err := f.Read(ctx); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read of a missing file: %v", err)
	}
	if err := f.Update(ctx, func(b *grubenv.Block) error { return b.Set("A", "1") }); err != nil {
		t.Fatal(err)
	}
	st1, _ := os.Stat(path)
	if st1.Size() != grubenv.DefaultSize {
		t.Fatalf("created %d bytes", st1.Size())
	}
	// Unchanged: the file is not replaced (same inode).
	if err := f.Update(ctx, func(b *grubenv.Block) error { return b.Set("A", "1") }); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(path)
	if !os.SameFile(st1, st2) {
		t.Fatal("an update that changed nothing replaced the file")
	}
	// An error from fn writes nothing.
	boom := errors.New("boom")
	if err := f.Update(ctx, func(b *grubenv.Block) error { b.Set("A", "2"); return boom }); !errors.Is(err, boom) {
		t.Fatalf("Update: %v", err)
	}
	if b, _ := f.Read(ctx); b == nil || mustGet(t, b, "A") != "1" {
		t.Fatal("a failed update changed the file")
	}
	// Damaged: refused, not overwritten.
	bad := []byte("not a grubenv")
	os.WriteFile(path, bad, 0o644)
	if err := f.Update(ctx, func(b *grubenv.Block) error { return b.Set("A", "1") }); !errors.Is(err, grubenv.ErrCorrupt) {
		t.Fatalf("Update of a damaged file: %v", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, bad) {
		t.Fatal("a damaged file was overwritten")
	}
	// No temporary file left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries", len(entries))
	}
}

func mustGet(t *testing.T, b *grubenv.Block, name string) string {
	t.Helper()
	v, ok := b.Get(name)
	if !ok {
		t.Fatalf("%s not set", name)
	}
	return v
}
