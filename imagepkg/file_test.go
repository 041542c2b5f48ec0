package imagepkg_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/spec"
)

func TestReadPackageFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := testkeys.Ed25519(1)
	payload := mixedPayload(100<<10, 1)
	pkg := pack(t, payload, testOptions(imagepkg.CompressionZstd), k)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sum := sha256.Sum256(pkg)
	good := write("good.upk", pkg)
	pf, err := imagepkg.ReadPackageFile(ctx, good, k.Public())
	if err != nil || pf.Digest != "sha256:"+hex.EncodeToString(sum[:]) || pf.Size != int64(len(pkg)) || pf.Metadata.Component != "rootfs" {
		t.Fatalf("good package: %+v, %v", pf, err)
	}
	// Without keys the signature is not checked; with another key it fails.
	if _, err := imagepkg.ReadPackageFile(ctx, good); err != nil {
		t.Fatal(err)
	}
	if _, err := imagepkg.ReadPackageFile(ctx, good, testkeys.Ed25519(2).Public()); !errors.Is(err, imagepkg.ErrUnknownKey) {
		t.Fatalf("other key: %v, want ErrUnknownKey", err)
	}
	// A damaged payload: the file is returned for diagnostics, with its
	// digest, and the error.
	bad := bytes.Clone(pkg)
	bad[len(bad)-10] ^= 1
	pf, err = imagepkg.ReadPackageFile(ctx, write("bad.upk", bad))
	if !errors.Is(err, imagepkg.ErrRejected) || pf == nil || pf.Size != int64(len(bad)) {
		t.Fatalf("damaged payload: %+v, %v", pf, err)
	}
	if pf, err := imagepkg.ReadPackageFile(ctx, write("raw", payload)); !errors.Is(err, imagepkg.ErrMagic) || pf != nil {
		t.Fatalf("raw file: %v", err)
	}
}

func TestOpenImage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	payload := mixedPayload(64<<10, 2)
	raw := filepath.Join(dir, "raw.img")
	if err := os.WriteFile(raw, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := imagepkg.OpenImage(ctx, raw, dir)
	if err != nil || img.Path != raw || img.Package != nil {
		t.Fatalf("raw image: %+v, %v", img, err)
	}
	img.Close()
	if _, err := os.Stat(raw); err != nil {
		t.Fatal("Close removed the raw image")
	}
	upk := filepath.Join(dir, "img.upk")
	pkg := pack(t, payload, testOptions(imagepkg.CompressionZstd), testkeys.Ed25519(1))
	if err := os.WriteFile(upk, pkg, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err = imagepkg.OpenImage(ctx, upk, dir)
	if err != nil || img.Package == nil {
		t.Fatalf("package: %v", err)
	}
	if got, _ := os.ReadFile(img.Path); !bytes.Equal(got, payload) {
		t.Fatal("extracted payload differs")
	}
	img.Close()
	if _, err := os.Stat(img.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Close left %s", img.Path)
	}
	// A damaged payload leaves nothing behind.
	pkg[len(pkg)-10] ^= 1
	if err := os.WriteFile(upk, pkg, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := imagepkg.OpenImage(ctx, upk, dir); !errors.Is(err, imagepkg.ErrRejected) {
		t.Fatalf("damaged package: %v", err)
	}
	if es, _ := os.ReadDir(dir); len(es) != 2 {
		t.Fatalf("left files behind: %v", es)
	}
}

func TestVerifyFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := testkeys.Ed25519(3)
	payload := mixedPayload(50<<10, 3)
	pkg := pack(t, payload, testOptions(imagepkg.CompressionNone), k)
	path := filepath.Join(dir, "p.upk")
	if err := os.WriteFile(path, pkg, 0o644); err != nil {
		t.Fatal(err)
	}
	var done, total int64
	p, err := imagepkg.VerifyFile(ctx, path, []*spec.PublicKey{k.Public()}, "", func(d, tot int64) { done, total = d, tot })
	if err != nil || p == nil || done != int64(len(pkg)) || total != int64(len(pkg)) {
		t.Fatalf("VerifyFile: %v, progress %d/%d", err, done, total)
	}
	dest := filepath.Join(dir, "out.img")
	if _, err := imagepkg.VerifyFile(ctx, path, []*spec.PublicKey{k.Public()}, dest, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, payload) {
		t.Fatal("extracted payload differs")
	}
	if p, err := imagepkg.VerifyFile(ctx, path, []*spec.PublicKey{testkeys.Ed25519(4).Public()}, "", nil); !errors.Is(err, imagepkg.ErrUnknownKey) || p == nil {
		t.Fatalf("other key: %v", err)
	}
}
