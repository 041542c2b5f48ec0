package mcubootfile_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upkit/upkit/internal/mcubootfile"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/mcuboot"
	"github.com/upkit/upkit/spec"
)

func options(t *testing.T, version string, secCnt uint64) mcuboot.Options {
	t.Helper()
	o, err := mcuboot.OptionsFromImgtool(version, secCnt, map[string]string{"header-size": "0x200", "pad-header": "true", "slot-size": "0x8000"})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// signed writes firmware and signs it into an image file with key n.
func signed(t *testing.T, dir, version string, secCnt uint64, n int) string {
	t.Helper()
	in := filepath.Join(dir, "zephyr-"+version+".bin")
	if err := os.WriteFile(in, []byte(strings.Repeat("firmware "+version, 300)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "sensor-"+version+".bin")
	f, err := mcubootfile.Sign(context.Background(), out, in, options(t, version, secCnt), testkeys.Ed25519(n))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return out
}

// TestSignOpenVerify: the file Sign writes opens with its whole-file
// digest, verifies under its key only, and describes itself.
func TestSignOpenVerify(t *testing.T) {
	ctx := context.Background()
	path := signed(t, t.TempDir(), "1.4.0+17", 3, 1)
	if !mcubootfile.IsImage(path) {
		t.Fatal("IsImage(an image) = false")
	}
	f, err := mcubootfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, _ := os.ReadFile(path)
	sum := sha256.Sum256(data)
	if f.Digest != "sha256:"+hex.EncodeToString(sum[:]) || f.Size != int64(len(data)) || f.Image.SecurityCounter != 3 {
		t.Fatalf("opened %+v", f)
	}
	if k, err := f.Verify(ctx, testkeys.Ed25519(2).Public(), testkeys.Ed25519(1).Public()); err != nil || k.ID != testkeys.Ed25519(1).KeyID() {
		t.Fatalf("Verify: %v", err)
	}
	if _, err := f.Verify(ctx, testkeys.Ed25519(2).Public()); !errors.Is(err, mcuboot.ErrUnknownKey) {
		t.Fatalf("Verify with another key: %v", err)
	}
	if err := f.CheckHash(ctx); err != nil {
		t.Fatalf("CheckHash: %v", err)
	}
	if s := f.Summary(); !strings.Contains(s, "MCUboot image 1.4.0+17 (security counter 3") || !strings.Contains(s, "unpadded") {
		t.Fatalf("Summary: %s", s)
	}

	// A flipped firmware byte: the structure parses, the hash does not hold.
	data[0x300] ^= 1
	bad := filepath.Join(t.TempDir(), "bad.bin")
	os.WriteFile(bad, data, 0o644)
	g, err := mcubootfile.Open(bad)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.CheckHash(ctx); !errors.Is(err, mcuboot.ErrHash) || !errors.Is(err, mcuboot.ErrRejected) {
		t.Fatalf("CheckHash of a tampered image: %v", err)
	}
	if _, err := mcubootfile.Open(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open of a missing file: %v", err)
	}
	if mcubootfile.IsImage(filepath.Join(t.TempDir(), "none")) {
		t.Fatal("IsImage(missing file) = true")
	}
}

// TestSignRefuses: a directory as input, or an image that does not fit
// its slot, is refused and leaves no output.
func TestSignRefuses(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.bin")
	if _, err := mcubootfile.Sign(context.Background(), out, dir, options(t, "1.0.0", 1), testkeys.Ed25519(1)); !errors.Is(err, mcuboot.ErrInvalidOptions) {
		t.Fatalf("directory input: %v", err)
	}
	in := filepath.Join(dir, "big.bin")
	os.WriteFile(in, make([]byte, 0x9000), 0o644)
	if _, err := mcubootfile.Sign(context.Background(), out, in, options(t, "1.0.0", 1), testkeys.Ed25519(1)); !errors.Is(err, mcuboot.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
}

func TestParseListing(t *testing.T) {
	l, err := mcubootfile.ParseListing("sensor@gw-100,gw-200=dir/sensor=1.bin")
	if err != nil || l.Component != "sensor" || strings.Join(l.Hardware, "|") != "gw-100|gw-200" || l.Path != "dir/sensor=1.bin" {
		t.Fatalf("%+v %v", l, err)
	}
	for _, s := range []string{"sensor=f", "@hw=f", "sensor@=f", "Sensor@hw=f", "sensor@hw", "sensor@hw=", "sensor@a,a=f", "sensor@a,,b=f", "../x@hw=f"} {
		if _, err := mcubootfile.ParseListing(s); !errors.Is(err, mcubootfile.ErrListing) {
			t.Errorf("%q: %v", s, err)
		}
	}
}

// TestReleaseImage: the entry takes component and hardware from the
// listing, version and security version from the image, and the file as
// package and payload; with keys the image must verify.
func TestReleaseImage(t *testing.T) {
	ctx := context.Background()
	path := signed(t, t.TempDir(), "2.1.0+5", 7, 1)
	l := mcubootfile.Listing{Component: "sensor", Hardware: []string{"gw-100"}, Path: path}
	img, err := l.ReleaseImage(ctx, []*spec.PublicKey{testkeys.Ed25519(1).Public()})
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if img.Component != "sensor" || img.Type != "firmware" || img.Version != "2.1.0+5" || img.SecurityVersion != 7 ||
		img.Hardware[0] != "gw-100" || img.Package.Size != fi.Size() || !img.IsMCUboot() {
		t.Fatalf("entry %+v", img)
	}
	if _, err := l.ReleaseImage(ctx, nil); err != nil {
		t.Fatalf("without keys: %v", err)
	}
	if _, err := l.ReleaseImage(ctx, []*spec.PublicKey{testkeys.Ed25519(2).Public()}); !errors.Is(err, mcuboot.ErrUnknownKey) || !strings.Contains(err.Error(), path) {
		t.Fatalf("another key: %v", err)
	}
}
