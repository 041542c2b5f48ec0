package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/mcubootfile"
	"github.com/upkit/upkit/internal/report"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/mcuboot"
	"github.com/upkit/upkit/spec"
)

// files writes an image package, an MCUboot image and a signed release
// manifest listing both into a new folder.
func files(t *testing.T) (pkg, mcu, rel string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	in := filepath.Join(dir, "fw.bin")
	if err := os.WriteFile(in, []byte(strings.Repeat("firmware ", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := testkeys.Ed25519(1)
	pkg = filepath.Join(dir, "rootfs.upk")
	if _, err := imagepkg.PackPath(ctx, pkg, in, imagepkg.PackOptions{Component: "rootfs", Type: "os", Version: "1.0.0",
		SecurityVersion: 2, Hardware: []string{"gw-100"}}, s); err != nil {
		t.Fatal(err)
	}
	opts, err := mcuboot.OptionsFromImgtool("1.4.0+17", 3, map[string]string{"header-size": "0x200", "pad-header": "true", "slot-size": "0x8000", "confirm": "true"})
	if err != nil {
		t.Fatal(err)
	}
	mcu = filepath.Join(dir, "sensor.bin")
	f, err := mcubootfile.Sign(ctx, mcu, in, opts, s)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pf, err := imagepkg.ReadPackageFile(ctx, pkg)
	if err != nil {
		t.Fatal(err)
	}
	sensor, err := mcubootfile.Listing{Component: "sensor", Hardware: []string{"gw-100"}, Path: mcu}.ReleaseImage(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	env, err := manifest.NewReleaseEnvelope(&manifest.Release{SchemaVersion: manifest.SchemaVersion, Product: "gw", Version: 13,
		Created: created, Expires: created.Add(time.Hour), Images: []manifest.Image{{Component: "rootfs", Type: "os", Version: "1.0.0",
			SecurityVersion: 2, Hardware: []string{"gw-100"}, Package: manifest.Blob{Digest: pf.Digest, Size: pf.Size},
			Payload: manifest.Blob{Digest: pf.Metadata.Payload.SHA256, Size: pf.Metadata.Payload.Size}}, *sensor}})
	if err != nil {
		t.Fatal(err)
	}
	if err := manifest.Sign(ctx, env, s); err != nil {
		t.Fatal(err)
	}
	rel = filepath.Join(dir, "release.json")
	if err := manifest.WriteEnvelopeFile(rel, env); err != nil {
		t.Fatal(err)
	}
	return pkg, mcu, rel
}

func text(t *testing.T, r report.Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func jsonOf(t *testing.T, r report.Report) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestInspect reports each kind of file, its check passed.
func TestInspect(t *testing.T) {
	ctx := context.Background()
	pkg, mcu, rel := files(t)
	for _, tc := range []struct {
		path string
		kind report.Kind
		text []string
		json string
	}{
		{pkg, report.KindPackage, []string{"upkit image package v2", "Component:         rootfs", "Payload check:     ok"}, `"payloadCheck":"ok"`},
		{mcu, report.KindMCUboot, []string{"MCUboot image", "Security counter:  3", "1.4.0+17 (header 1.4.0+17)", "SEC_CNT", "confirmed", "Hash check:        ok", testkeys.Ed25519(1).KeyID()},
			`"format":"mcuboot"`},
		{rel, report.KindDocument, []string{"release gw version 13", "sensor: firmware 1.4.0+17", "NOT verified", testkeys.Ed25519(1).KeyID()},
			`{"payloadType":"application/vnd.upkit.release.v1+json","release":{`},
	} {
		if k, err := report.Sniff(tc.path); err != nil || k != tc.kind {
			t.Errorf("Sniff(%s) = %v, %v; want %v", tc.path, k, err, tc.kind)
		}
		r, err := report.Inspect(ctx, tc.path)
		if err != nil {
			t.Fatalf("Inspect(%s): %v", tc.path, err)
		}
		got := text(t, r)
		for _, want := range tc.text {
			if !strings.Contains(got, want) {
				t.Errorf("%s: text lacks %q:\n%s", tc.path, want, got)
			}
		}
		if j := jsonOf(t, r); !strings.Contains(j, tc.json) {
			t.Errorf("%s: JSON lacks %s: %s", tc.path, tc.json, j)
		}
	}
}

// TestInspectRefuses: a flipped byte fails the payload or hash check,
// with the report; what does not parse has no report.
func TestInspectRefuses(t *testing.T) {
	ctx := context.Background()
	pkg, mcu, rel := files(t)
	for _, tc := range []struct {
		path  string
		at    int
		want  error
		check string
	}{
		{pkg, -10, imagepkg.ErrPayloadDigest, "payload digest mismatch"},
		{mcu, 0x300, mcuboot.ErrHash, "mcuboot: image hash mismatch"},
	} {
		data, _ := os.ReadFile(tc.path)
		data[(tc.at+len(data))%len(data)] ^= 1
		bad := filepath.Join(t.TempDir(), "bad")
		os.WriteFile(bad, data, 0o644)
		r, err := report.Inspect(ctx, bad)
		if !errors.Is(err, tc.want) || r == nil || !strings.Contains(text(t, r), tc.check) {
			t.Errorf("%s: %v", tc.path, err)
		}
	}
	data, _ := os.ReadFile(rel)
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, bytes.Replace(data, []byte(`"signatures"`), []byte(`"signatures", "x": 1, "y"`), 1), 0o644)
	if r, err := report.Inspect(ctx, bad); r != nil || !errors.Is(err, manifest.ErrMalformed) {
		t.Errorf("broken document: %v %v", r, err)
	}
	if r, err := report.Inspect(ctx, filepath.Join(t.TempDir(), "none")); r != nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v %v", r, err)
	}
}

// TestVerify: a package and an MCUboot image verify under their key and
// are refused, with a report, under another; an MCUboot image has nothing
// to extract.
func TestVerify(t *testing.T) {
	ctx := context.Background()
	pkg, mcu, _ := files(t)
	good := []*spec.PublicKey{testkeys.Ed25519(1).Public()}
	other := []*spec.PublicKey{testkeys.Ed25519(2).Public()}
	for _, tc := range []struct {
		path, summary string
		refused       error
	}{
		{pkg, "verified " + pkg + ": rootfs 1.0.0 (os, security version 2", imagepkg.ErrUnknownKey},
		{mcu, "verified " + mcu + ": MCUboot image 1.4.0+17 (security counter 3", mcuboot.ErrUnknownKey},
	} {
		r, err := report.Verify(ctx, tc.path, good, "", nil)
		if err != nil || !strings.HasPrefix(r.Summary(), tc.summary) || !strings.Contains(jsonOf(t, r), `"verified":true`) {
			t.Fatalf("%s: %v %v", tc.path, r, err)
		}
		r, err = report.Verify(ctx, tc.path, other, "", nil)
		if !errors.Is(err, tc.refused) || r == nil || !strings.Contains(jsonOf(t, r), `"verified":false`) || !strings.Contains(err.Error(), tc.path) {
			t.Fatalf("%s with another key: %v %v", tc.path, r, err)
		}
	}
	dest := filepath.Join(t.TempDir(), "out")
	if r, err := report.Verify(ctx, pkg, good, dest, nil); err != nil || !strings.Contains(r.Summary(), "extracted the file payload to "+dest) {
		t.Fatalf("extract: %v", err)
	}
	if _, err := report.Verify(ctx, mcu, good, filepath.Join(t.TempDir(), "x"), nil); !errors.Is(err, report.ErrNotExtractable) {
		t.Fatalf("extract an MCUboot image: %v", err)
	}
	if r, err := report.Verify(ctx, filepath.Join(t.TempDir(), "none"), good, "", nil); r != nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v %v", r, err)
	}
	short := filepath.Join(t.TempDir(), "short.bin")
	data, _ := os.ReadFile(mcu)
	os.WriteFile(short, data[:40], 0o644)
	if r, err := report.Verify(ctx, short, good, "", nil); !errors.Is(err, mcuboot.ErrTruncated) || r == nil || !strings.Contains(jsonOf(t, r), `"error":"`) {
		t.Fatalf("truncated image: %v %v", r, err)
	}
}
