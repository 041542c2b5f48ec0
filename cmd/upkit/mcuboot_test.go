package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	// sigstore's in-memory KMS provider, for fakekms:// keys (tests only).
	"github.com/sigstore/sigstore/pkg/signature/kms/fake"

	"github.com/upkit/upkit/internal/report"
	"github.com/upkit/upkit/internal/testutil/imgtooltest"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/spec"
)

// mcuKeyFiles writes s as an unencrypted PKCS#8 PEM (what imgtool keygen
// writes, and what upkit's --key also reads) and its public key.
func mcuKeyFiles(t *testing.T, dir string, s *testkeys.Signer) (priv, pub string) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(s.Private())
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, "mcu.pem"), filepath.Join(dir, "mcu.pub")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, s.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

func mcuFirmware(t *testing.T, dir string, n int) string {
	t.Helper()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	p := filepath.Join(dir, "zephyr.bin")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPackMCUbootMatchesImgtool: `upkit pack --format mcuboot` and `imgtool
// sign` with the same key file and options write the same bytes (Ed25519);
// imgtool verifies upkit's ECDSA image and dumpinfo shows its version and
// security counter; upkit verify and inspect read both.
func TestPackMCUbootMatchesImgtool(t *testing.T) {
	imgtooltest.Path(t)
	for _, s := range []*testkeys.Signer{testkeys.Ed25519(8), testkeys.ECDSA()} {
		alg := s.Public().Algorithm
		t.Run(alg, func(t *testing.T) {
			dir := t.TempDir()
			priv, pub := mcuKeyFiles(t, dir, s)
			fw := mcuFirmware(t, dir, 5000)
			ours, ref := filepath.Join(dir, "upkit.bin"), filepath.Join(dir, "imgtool.bin")
			r := mustRun(t, nil, "pack", "--format", "mcuboot", "--version", "2.3.4+56", "--security-version", "9",
				"--header-size", "0x200", "--pad-header", "--slot-size", "0x10000", "--confirm", "--align", "4",
				"--load-addr", "0x20008000", "--key", priv, "-o", ours, fw)
			imgtooltest.Run(t, "sign", "-k", priv, "-v", "2.3.4+56", "-s", "9", "-H", "0x200", "--pad-header",
				"-S", "0x10000", "--confirm", "--align", "4", "-L", "0x20008000", fw, ref)
			a, _ := os.ReadFile(ours)
			b, _ := os.ReadFile(ref)
			if alg == spec.AlgorithmEd25519 && !bytes.Equal(a, b) {
				t.Fatalf("upkit's image (%d bytes) differs from imgtool's (%d bytes)", len(a), len(b))
			}
			if len(a) != 0x10000 || !strings.HasPrefix(r.stdout, "sha256:") {
				t.Fatalf("image of %d bytes, stdout %q", len(a), r.stdout)
			}
			out := imgtooltest.Run(t, "verify", "-k", pub, ours)
			if !strings.Contains(out, "Image was correctly validated") || !strings.Contains(out, "Image version: 2.3.4+56") {
				t.Fatalf("imgtool verify: %s", out)
			}
			dump := imgtooltest.Run(t, "dumpinfo", ours)
			if !strings.Contains(dump, "version:            2.3.4+56") || !strings.Contains(dump, "type: SEC_CNT (0x50)") ||
				!strings.Contains(dump, "data: 0x09 0x00 0x00 0x00") || !strings.Contains(dump, "RAM_LOAD") || !strings.Contains(dump, "image_ok:    SET (0x1)") {
				t.Fatalf("imgtool dumpinfo:\n%s", dump)
			}
			for _, file := range []string{ours, ref} {
				var info report.MCUboot
				r := mustRun(t, nil, "verify", "--key", pub, "--json", file)
				if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
					t.Fatal(err)
				}
				if info.Verified == nil || !*info.Verified || info.Version != "2.3.4+56" || info.SecurityCounter == nil || *info.SecurityCounter != 9 ||
					info.KeyID != s.KeyID() || info.Algorithm != alg || info.Header.LoadAddr != "0x20008000" || info.Trailer == nil || !info.Trailer.Confirmed {
					t.Fatalf("verify --json %s: %s", file, r.stdout)
				}
				r = mustRun(t, nil, "inspect", file)
				for _, want := range []string{"MCUboot image", "Security counter:  9", "2.3.4+56", "RAM_LOAD", "confirmed", "Hash check:        ok", s.KeyID()} {
					if !strings.Contains(r.stdout, want) {
						t.Fatalf("inspect %s lacks %q:\n%s", file, want, r.stdout)
					}
				}
			}
		})
	}
}

// TestVerifyMCUbootRefuses: a flipped firmware byte, a wrong key, a
// truncated file exit 1 with the reason; inspect notices the flipped byte
// too (it checks the hash, not the signature).
func TestVerifyMCUbootRefuses(t *testing.T) {
	dir := t.TempDir()
	s := testkeys.ECDSA()
	priv, pub := mcuKeyFiles(t, dir, s)
	_, otherPub := mcuKeyFiles(t, t.TempDir(), testkeys.Ed25519(3))
	img := filepath.Join(dir, "fw.bin")
	mustRun(t, nil, "pack", "--format", "mcuboot", "--version", "1.0.0", "--security-version", "1",
		"--header-size", "32", "--pad-header", "--slot-size", "0x4000", "--key", priv, "-o", img, mcuFirmware(t, dir, 900))
	good, _ := os.ReadFile(img)
	bad := bytes.Clone(good)
	bad[100] ^= 1
	badPath := filepath.Join(dir, "bad.bin")
	os.WriteFile(badPath, bad, 0o644)
	shortPath := filepath.Join(dir, "short.bin")
	os.WriteFile(shortPath, good[:len(good)-10], 0o644)
	for _, tc := range []struct{ key, file, want string }{
		{pub, badPath, "hash mismatch"},
		{otherPub, img, "unknown key"},
		{pub, shortPath, "truncated"},
	} {
		r := runCLI(t, nil, "verify", "--key", tc.key, tc.file)
		if r.code != exitFailed || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("verify %s with %s: exit %d, stderr %q, want %q", tc.file, tc.key, r.code, r.stderr, tc.want)
		}
	}
	r := runCLI(t, nil, "verify", "--key", pub, "--json", badPath)
	var info report.MCUboot
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil || r.code != exitFailed || info.Verified == nil || *info.Verified || !strings.Contains(info.Error, "hash") {
		t.Fatalf("verify --json of a tampered image: exit %d %s", r.code, r.stdout)
	}
	if r := runCLI(t, nil, "inspect", badPath); r.code != exitFailed || !strings.Contains(r.stdout, "Hash check:        mcuboot: image hash mismatch") {
		t.Fatalf("inspect of a tampered image: exit %d\n%s", r.code, r.stdout)
	}
	if r := runCLI(t, nil, "verify", "--key", pub, "--extract", filepath.Join(dir, "x"), img); r.code != exitUsage {
		t.Fatalf("verify --extract of an MCUboot image: exit %d", r.code)
	}
}

func TestPackMCUbootUsageErrors(t *testing.T) {
	dir := t.TempDir()
	priv, _ := mcuKeyFiles(t, dir, testkeys.Ed25519(1))
	fw := mcuFirmware(t, dir, 100)
	base := []string{"pack", "--format", "mcuboot", "--version", "1.0.0", "--security-version", "1", "--key", priv, "-o", filepath.Join(dir, "o.bin")}
	for _, extra := range [][]string{
		{"--slot-size", "0x1000"}, // no --header-size
		{"--header-size", "0x20"}, // no --slot-size
		{"--header-size", "0x20", "--slot-size", "0x1000", "--component", "x"}, // not in an MCUboot image
		{"--header-size", "0x20", "--slot-size", "0x1000", "--pad-header", "--component", "x"},
		{"--header-size", "0x20", "--slot-size", "0x1000", "--pad-header", "--compress", "zstd"},
		{"--header-size", "0x20", "--slot-size", "0x1000", "--hardware", "x"},
		{"--header-size", "0x20", "--slot-size", "0x1000", "--type", "os"},
		{"--header-size", "0x20", "--slot-size", "0x1000", "--compress", "none"},
		{"--header-size", "0x10", "--slot-size", "0x1000", "--pad-header"},
		{"--header-size", "0x20", "--slot-size", "0x1000", "--align", "3", "--pad-header"},
		{"--header-size", "0x20", "--slot-size", "0x1000", "--erased-val", "1", "--pad-header"},
		{"--header-size", "0x20", "--slot-size", "0x100", "--pad-header"}, // does not fit
		{"--header-size", "0x20", "--slot-size", "0x1000"},                // no room for the header in INPUT
		{"--header-size", "0x20", "--slot-size", "0x1000", "--pad-header", "--load-addr", "0x100000000"},
	} {
		r := runCLI(t, nil, append(append(append([]string{}, base...), extra...), fw)...)
		if r.code != exitUsage {
			t.Errorf("%v: exit %d, stderr %q", extra, r.code, r.stderr)
		}
	}
	for _, args := range [][]string{
		{"pack", "--format", "mcuboot", "--version", "1.0.0-rc.1", "--security-version", "1", "--header-size", "0x20", "--slot-size", "0x1000", "--pad-header", "--key", priv, "-o", filepath.Join(dir, "o.bin"), fw},
		{"pack", "--format", "mcuboot", "--version", "1.0.0", "--security-version", "4294967296", "--header-size", "0x20", "--slot-size", "0x1000", "--pad-header", "--key", priv, "-o", filepath.Join(dir, "o.bin"), fw},
		{"pack", "--format", "elf", "--version", "1.0.0", "--security-version", "1", "--key", priv, "-o", filepath.Join(dir, "o.bin"), fw},
		{"pack", "--slot-size", "0x1000", "--type", "os", "--component", "c", "--hardware", "h", "--version", "1.0.0", "--security-version", "1", "--key", priv, "-o", filepath.Join(dir, "o.upk"), fw},
		{"pack", "--version", "1.0.0", "--security-version", "1", "--key", priv, "-o", filepath.Join(dir, "o.upk"), fw}, // .upk needs --type etc.
	} {
		if r := runCLI(t, nil, args...); r.code != exitUsage {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "o.bin")); !os.IsNotExist(err) {
		t.Fatal("a refused pack left an output")
	}
}

// TestPackMCUbootKMS signs an MCUboot image with a KMS key (sigstore's
// in-memory provider, seeded with a known key so that imgtool can check
// the result).
func TestPackMCUbootKMS(t *testing.T) {
	imgtooltest.Path(t)
	dir := t.TempDir()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := testkeys.Wrap(priv)
	if err != nil {
		t.Fatal(err)
	}
	_, pub := mcuKeyFiles(t, dir, s)
	out := filepath.Join(dir, "kms.bin")
	ctx := context.WithValue(context.Background(), fake.KmsCtxKey{}, priv)
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"upkit", "pack", "--format", "mcuboot", "--version", "1.0.0", "--security-version", "2",
		"--header-size", "0x200", "--pad-header", "--slot-size", "0x8000", "--key", "fakekms://mcu", "-o", out, mcuFirmware(t, dir, 3000)},
		strings.NewReader(""), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("pack with a KMS key: exit %d: %s", code, stderr.String())
	}
	if o := imgtooltest.Run(t, "verify", "-k", pub, out); !strings.Contains(o, "Image was correctly validated") {
		t.Fatalf("imgtool verify of a KMS-signed image: %s", o)
	}
}

// TestReleaseCreateMCUboot lists an MCUboot image next to a package: the
// entry's component and hardware come from --mcuboot, version and security
// version from the image, the file is both package and payload. Images
// without a security counter, or signed by a key that is not a release key
// of --root, are refused.
func TestReleaseCreateMCUboot(t *testing.T) {
	imgtooltest.Path(t)
	dir := t.TempDir()
	env := map[string]string{"UPKIT_PASSWORD": "pw"}
	s := testkeys.Ed25519(6)
	priv, pub := mcuKeyFiles(t, dir, s)
	mustRun(t, env, "root", "init", "--root-key", pub, "--release-key", pub, "-o", filepath.Join(dir, "root.json"))
	mustRun(t, env, "root", "sign", "--key", priv, filepath.Join(dir, "root.json"))
	fw := mcuFirmware(t, dir, 2000)
	img := filepath.Join(dir, "sensor.bin")
	mustRun(t, nil, "pack", "--format", "mcuboot", "--version", "1.4.0+7", "--security-version", "3",
		"--header-size", "0x200", "--pad-header", "--slot-size", "0x8000", "--key", priv, "-o", img, fw)
	upk := filepath.Join(dir, "rootfs.upk")
	mustRun(t, nil, "pack", "--type", "os", "--component", "rootfs", "--version", "1.0.0", "--security-version", "1",
		"--hardware", "gw", "--key", priv, "-o", upk, fw)
	rel := filepath.Join(dir, "release.json")
	mustRun(t, nil, "release", "create", "--product", "gw", "--version", "1", "--root", filepath.Join(dir, "root.json"),
		"--mcuboot", "sensor@sensor-v2,sensor-v3="+img, "-o", rel, upk)
	data, _ := os.ReadFile(rel)
	e, err := manifest.ParseEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	r, err := manifest.ParseRelease(e.Payload)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	digest, size := fileDigest(t, img), fi.Size()
	m, ok := r.Image("sensor")
	if !ok || m.Type != "firmware" || m.Version != "1.4.0+7" || m.SecurityVersion != 3 || strings.Join(m.Hardware, ",") != "sensor-v2,sensor-v3" ||
		m.Package.Digest != digest || m.Package.Size != size || m.Payload != m.Package {
		t.Fatalf("release entry %+v", m)
	}

	// imgtool without -s: no SEC_CNT, refused.
	noCnt := filepath.Join(dir, "nocnt.bin")
	imgtooltest.Run(t, "sign", "-k", priv, "-v", "1.0.0", "-H", "0x200", "--pad-header", "-S", "0x8000", fw, noCnt)
	if r := runCLI(t, nil, "release", "create", "--product", "gw", "--version", "1", "--mcuboot", "sensor@x="+noCnt, "-o", filepath.Join(dir, "r2.json")); r.code != exitFailed || !strings.Contains(r.stderr, "SEC_CNT") {
		t.Fatalf("image without SEC_CNT: exit %d %s", r.code, r.stderr)
	}
	// Signed by a key the root does not list.
	otherPriv, _ := mcuKeyFiles(t, t.TempDir(), testkeys.Ed25519(9))
	other := filepath.Join(dir, "other.bin")
	imgtooltest.Run(t, "sign", "-k", otherPriv, "-v", "1.0.0", "-s", "1", "-H", "0x200", "--pad-header", "-S", "0x8000", fw, other)
	if r := runCLI(t, nil, "release", "create", "--product", "gw", "--version", "1", "--root", filepath.Join(dir, "root.json"), "--mcuboot", "sensor@x="+other, "-o", filepath.Join(dir, "r3.json")); r.code != exitFailed || !strings.Contains(r.stderr, "unknown key") {
		t.Fatalf("image by a key outside the root: exit %d %s", r.code, r.stderr)
	}
	for _, spec := range []string{"sensor=" + img, "@hw=" + img, "sensor@=" + img, "Sensor@hw=" + img, "sensor@hw", "sensor@a,a=" + img} {
		if r := runCLI(t, nil, "release", "create", "--product", "gw", "--version", "1", "--mcuboot", spec, "-o", filepath.Join(dir, "r4.json")); r.code != exitUsage {
			t.Errorf("--mcuboot %q: exit %d %s", spec, r.code, r.stderr)
		}
	}
}
