package imagepkg_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/spec"
)

var update = flag.Bool("update", false, "rewrite testdata/golden-v2.upk")

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestRoundTripFile(t *testing.T) {
	ctx := context.Background()
	signers := map[string]*testkeys.Signer{"ed25519": testkeys.Ed25519(1), "ecdsa": testkeys.ECDSA()}
	payloads := map[string][]byte{
		"empty": {},
		"one":   {42},
		"small": mixedPayload(100<<10, 1),
		"large": mixedPayload(3<<20, 2),
	}
	for sname, s := range signers {
		for _, comp := range []string{imagepkg.CompressionNone, imagepkg.CompressionZstd} {
			for pname, payload := range payloads {
				t.Run(sname+"/"+comp+"/"+pname, func(t *testing.T) {
					pkg := pack(t, payload, testOptions(comp), s)
					p, err := imagepkg.Open(bytes.NewReader(pkg))
					if err != nil {
						t.Fatalf("Open: %v", err)
					}
					m := p.Metadata
					if m.Payload.Size != int64(len(payload)) || m.Payload.SHA256 != digestOf(payload) ||
						m.Payload.Compression != comp || m.Payload.Kind != imagepkg.KindFile {
						t.Fatalf("payload info %+v", m.Payload)
					}
					if m.Component != "rootfs" || m.Type != "os" || m.Version != "1.2.3-rc.1+build.5" ||
						m.SecurityVersion != 7 || strings.Join(m.Hardware, ",") != "rpi4,imx8mm-evk" || !m.Created.Equal(goldenCreated) {
						t.Fatalf("metadata %+v", m)
					}
					if p.KeyID != s.KeyID() || p.Algorithm != s.Public().Algorithm {
						t.Fatalf("key %s/%s, want %s/%s", p.KeyID, p.Algorithm, s.KeyID(), s.Public().Algorithm)
					}
					if p.HeaderSize+m.Payload.StoredSize != int64(len(pkg)) {
						t.Fatalf("header %d + stored %d != file %d", p.HeaderSize, m.Payload.StoredSize, len(pkg))
					}
					if err := p.VerifySignature(s.Public()); err != nil {
						t.Fatalf("VerifySignature: %v", err)
					}
					got, err := io.ReadAll(p.Payload())
					if err != nil {
						t.Fatalf("reading payload: %v", err)
					}
					if !bytes.Equal(got, payload) {
						t.Fatalf("payload differs: %d bytes, want %d", len(got), len(payload))
					}
					if _, err := imagepkg.Verify(ctx, bytes.NewReader(pkg), testkeys.Ed25519(99).Public(), s.Public()); err != nil {
						t.Fatalf("Verify: %v", err)
					}
				})
			}
		}
	}
}

func TestPayloadOnlyOnce(t *testing.T) {
	pkg := pack(t, []byte("x"), testOptions("none"), testkeys.Ed25519(1))
	p, err := imagepkg.Open(bytes.NewReader(pkg))
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(p.Payload())
	if _, err := io.ReadAll(p.Payload()); !errors.Is(err, imagepkg.ErrPayloadConsumed) {
		t.Fatalf("second Payload: %v, want ErrPayloadConsumed", err)
	}
}

func TestReproducible(t *testing.T) {
	s := testkeys.Ed25519(1)
	// Several zstd jobs (8 MiB each) so that the concurrent-blocks mode splits.
	payload := mixedPayload(20<<20, 3)
	var first []byte
	for _, conc := range []int{1, 2, 5} {
		opts := testOptions(imagepkg.CompressionZstd)
		opts.Concurrency = conc
		got := pack(t, payload, opts, s)
		if first == nil {
			first = got
			continue
		}
		if !bytes.Equal(first, got) {
			t.Fatalf("concurrency %d: package differs (%s vs %s)", conc, digestOf(got), digestOf(first))
		}
	}
	p, err := imagepkg.Verify(context.Background(), bytes.NewReader(first), s.Public())
	if err != nil {
		t.Fatal(err)
	}
	if p.Metadata.Payload.StoredSize >= p.Metadata.Payload.Size {
		t.Fatalf("zstd did not compress: %d >= %d", p.Metadata.Payload.StoredSize, p.Metadata.Payload.Size)
	}
	// ECDSA: the same bytes apart from the signature block.
	e := testkeys.ECDSA()
	a := pack(t, payload[:1<<20], testOptions("zstd"), e)
	b := pack(t, payload[:1<<20], testOptions("zstd"), e)
	pa, _ := imagepkg.Open(bytes.NewReader(a))
	pb, _ := imagepkg.Open(bytes.NewReader(b))
	if !bytes.Equal(pa.SignedMessage(), pb.SignedMessage()) || !bytes.Equal(a[pa.HeaderSize:], b[pb.HeaderSize:]) {
		t.Fatal("ECDSA packages differ outside the signature block")
	}
}

// goldenPayload is the payload of testdata/golden-v2.upk and golden-v1.upk.
func goldenPayload() []byte {
	return bytes.Repeat([]byte("upkit golden payload: TEST-ONLY, signed with testkeys.Ed25519(1)\n"), 40)
}

func goldenPackage(t testing.TB) []byte {
	opts := testOptions(imagepkg.CompressionZstd)
	opts.Component = "golden-app"
	opts.Type = imagepkg.TypeApp
	return pack(t, goldenPayload(), opts, testkeys.Ed25519(1))
}

// TestGolden pins the format byte for byte: any change to the layout,
// metadata encoding, signature or zstd encoder shows up as a diff of
// testdata/golden-v2.upk (regenerate with go test ./imagepkg -run TestGolden -update).
func TestGolden(t *testing.T) {
	got := goldenPackage(t)
	path := filepath.Join("testdata", "golden-v2.upk")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("packing the golden input gives %s (%d bytes), testdata/golden-v2.upk is %s (%d bytes): the format changed; if intended, rerun with -update and document it in docs/FORMAT.md",
			digestOf(got), len(got), digestOf(want), len(want))
	}
	p, err := imagepkg.Verify(context.Background(), bytes.NewReader(want), testkeys.Ed25519(1).Public())
	if err != nil {
		t.Fatalf("Verify golden: %v", err)
	}
	// The documented layout, checked independently of the parser.
	m := binary.BigEndian.Uint32(want[12:16])
	off := binary.BigEndian.Uint32(want[16:20])
	s := binary.BigEndian.Uint16(want[20+m:])
	sigEnd := 22 + m + uint32(s)
	// The writer reserves room for 19-digit payload sizes: 2600 and the
	// stored size have 4 and 2 or 3 digits, so 30 to 32 bytes of padding.
	metaLimit := `{"schemaVersion":1,"component":"golden-app","type":"app","version":"1.2.3-rc.1+build.5","securityVersion":7,"hardware":["rpi4","imx8mm-evk"],"created":"2026-01-02T03:04:05Z","payload":{"kind":"file","compression":"zstd","size":2600,"sha256":"sha256:`
	checks := []struct {
		what string
		ok   bool
	}{
		{"magic", string(want[:8]) == "\x89UPK\r\n\x1a\n"},
		{"version", binary.BigEndian.Uint16(want[8:]) == 2},
		{"flags", binary.BigEndian.Uint16(want[10:]) == 0},
		{"payload offset", int64(off) == p.HeaderSize && off > sigEnd && off-sigEnd <= 40},
		{"metadata", bytes.Equal(want[20:20+m], p.MetadataBytes)},
		{"metadata is canonical JSON", strings.HasPrefix(string(want[20:20+m]), metaLimit)},
		{"sig length", s == 32+1+64},
		{"key id", hex.EncodeToString(want[22+m:54+m]) == testkeys.Ed25519(1).KeyID()},
		{"algorithm", want[54+m] == 2},
		{"padding is zero", bytes.Count(want[sigEnd:off], []byte{0}) == int(off-sigEnd)},
		{"zstd magic at payload start", bytes.Equal(want[off:][:4], []byte{0x28, 0xb5, 0x2f, 0xfd})},
		{"signed message", string(p.SignedMessage()) == "upkit-package-v2\x00"+string(want[:20+m])},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("golden layout: %s", c.what)
		}
	}
}

// TestGoldenV1 keeps format version 1 readable: testdata/golden-v1.upk was
// written by the version 1 writer (upkit before format version 2) from the
// same input as golden-v2.upk, and must verify, with the version 1 layout.
func TestGoldenV1(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("testdata", "golden-v1.upk"))
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 536 || digestOf(want) != "sha256:08a8ce123276ddfbcba0e49b45d99d9fc18215849749a28f04ae3a2a94590c87" {
		t.Fatalf("testdata/golden-v1.upk changed (%d bytes, %s): it is a fixed sample of version 1", len(want), digestOf(want))
	}
	p, err := imagepkg.Open(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.VerifySignature(testkeys.Ed25519(1).Public()); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(p.Payload())
	if err != nil || !bytes.Equal(got, goldenPayload()) {
		t.Fatalf("payload: %v", err)
	}
	m := binary.BigEndian.Uint32(want[12:16])
	s := binary.BigEndian.Uint16(want[16+m:])
	if p.FormatVersion != 1 || p.HeaderSize != int64(18+m+uint32(s)) ||
		string(p.SignedMessage()) != "upkit-package-v1\x00"+string(want[:16+m]) {
		t.Fatalf("version %d, header %d, signed message %q", p.FormatVersion, p.HeaderSize, p.SignedMessage())
	}
	// Every byte matters in version 1 too.
	for i := range want {
		bad := bytes.Clone(want)
		bad[i] ^= 0x01
		if _, err := imagepkg.Verify(context.Background(), bytes.NewReader(bad), testkeys.Ed25519(1).Public()); err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
	}
	// A version 1 signature does not verify as version 2 (and the reverse):
	// the signed message starts with the version's own context.
	v2 := goldenPackage(t)
	p2, err := imagepkg.Open(bytes.NewReader(v2))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(p2.Signature, p.Signature) {
		t.Fatal("versions 1 and 2 sign the same message")
	}
}

// tamperCase flips one byte of a package.
type tamperCase struct {
	name string
	off  func(pkg []byte, p *imagepkg.Reader) int
	xor  byte
	want error
}

func TestTamper(t *testing.T) {
	s := testkeys.Ed25519(1)
	metaLen := func(pkg []byte) int { return int(binary.BigEndian.Uint32(pkg[12:])) }
	cases := []tamperCase{
		{"magic", func(b []byte, _ *imagepkg.Reader) int { return 1 }, 0x01, imagepkg.ErrMagic},
		{"magic/last", func(b []byte, _ *imagepkg.Reader) int { return 7 }, 0x20, imagepkg.ErrMagic},
		{"version", func(b []byte, _ *imagepkg.Reader) int { return 9 }, 0x04, imagepkg.ErrVersion},
		{"version/1", func(b []byte, _ *imagepkg.Reader) int { return 9 }, 0x03, imagepkg.ErrMetadata},
		{"version/high", func(b []byte, _ *imagepkg.Reader) int { return 8 }, 0x01, imagepkg.ErrVersion},
		{"flags", func(b []byte, _ *imagepkg.Reader) int { return 11 }, 0x01, imagepkg.ErrUnsupported},
		{"flags/high", func(b []byte, _ *imagepkg.Reader) int { return 10 }, 0x80, imagepkg.ErrUnsupported},
		{"metadata length/huge", func(b []byte, _ *imagepkg.Reader) int { return 12 }, 0x01, imagepkg.ErrMetadataTooLarge},
		{"metadata length/shorter", func(b []byte, _ *imagepkg.Reader) int { return 15 }, 0x01, imagepkg.ErrMetadata},
		{"payload offset/huge", func(b []byte, _ *imagepkg.Reader) int { return 16 }, 0x01, imagepkg.ErrPadding},
		{"payload offset/into payload", func(b []byte, _ *imagepkg.Reader) int { return 18 }, 0x01, imagepkg.ErrPadding},
		{"metadata/brace", func(b []byte, _ *imagepkg.Reader) int { return 20 }, 0x01, imagepkg.ErrMetadata},
		{"metadata/security version", func(b []byte, _ *imagepkg.Reader) int {
			return 20 + bytes.Index(b[20:], []byte(`"securityVersion":7`)) + len(`"securityVersion":`)
		}, 0x01, imagepkg.ErrSignature},
		{"metadata/sha256", func(b []byte, _ *imagepkg.Reader) int {
			return 20 + bytes.Index(b[20:], []byte(`"sha256:`)) + 10
		}, 0x01, imagepkg.ErrSignature},
		{"sig length/high", func(b []byte, _ *imagepkg.Reader) int { return 20 + metaLen(b) }, 0x01, imagepkg.ErrSignatureBlock},
		{"sig length/longer", func(b []byte, _ *imagepkg.Reader) int { return 21 + metaLen(b) }, 0x01, imagepkg.ErrSignatureBlock},
		{"sig length/shorter", func(b []byte, _ *imagepkg.Reader) int { return 21 + metaLen(b) }, 0x02, imagepkg.ErrSignatureBlock},
		{"key id", func(b []byte, _ *imagepkg.Reader) int { return 22 + metaLen(b) + 5 }, 0x10, imagepkg.ErrUnknownKey},
		{"algorithm/unknown", func(b []byte, _ *imagepkg.Reader) int { return 54 + metaLen(b) }, 0x04, imagepkg.ErrSignatureBlock},
		{"algorithm/ecdsa", func(b []byte, _ *imagepkg.Reader) int { return 54 + metaLen(b) }, 0x03, imagepkg.ErrSignatureBlock},
		{"signature/first", func(b []byte, _ *imagepkg.Reader) int { return 55 + metaLen(b) }, 0x01, imagepkg.ErrSignature},
		{"signature/last", func(b []byte, _ *imagepkg.Reader) int { return 55 + metaLen(b) + 63 }, 0x80, imagepkg.ErrSignature},
		{"padding/first", func(b []byte, _ *imagepkg.Reader) int { return 55 + metaLen(b) + 64 }, 0x01, imagepkg.ErrPadding},
		{"padding/last", func(b []byte, p *imagepkg.Reader) int { return int(p.HeaderSize) - 1 }, 0x80, imagepkg.ErrPadding},
		{"payload/start", func(b []byte, p *imagepkg.Reader) int { return int(p.HeaderSize) }, 0x01, imagepkg.ErrPayloadDigest},
		{"payload/middle", func(b []byte, p *imagepkg.Reader) int { return (int(p.HeaderSize) + len(b)) / 2 }, 0x01, imagepkg.ErrPayloadDigest},
		{"payload/end", func(b []byte, p *imagepkg.Reader) int { return len(b) - 1 }, 0x01, imagepkg.ErrPayloadDigest},
	}
	for _, comp := range []string{imagepkg.CompressionNone, imagepkg.CompressionZstd} {
		good := pack(t, mixedPayload(200<<10, 4), testOptions(comp), s)
		p, err := imagepkg.Open(bytes.NewReader(good))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			t.Run(comp+"/"+c.name, func(t *testing.T) {
				bad := bytes.Clone(good)
				bad[c.off(bad, p)] ^= c.xor
				_, err := imagepkg.Verify(context.Background(), bytes.NewReader(bad), s.Public())
				if !errors.Is(err, c.want) {
					t.Fatalf("got %v, want %v", err, c.want)
				}
				if err := verifyByRead(bad, s.Public()); !errors.Is(err, c.want) {
					t.Fatalf("reading with Read: got %v, want %v", err, c.want)
				}
			})
		}
	}
}

// TestPayloadOffsetSigned: the payload offset is signed, and the padding
// before it must be zero, so moving the payload either way is refused.
func TestPayloadOffsetSigned(t *testing.T) {
	s := testkeys.Ed25519(1)
	good := pack(t, bytes.Repeat([]byte{0xa5}, 4096), testOptions(imagepkg.CompressionNone), s)
	off := binary.BigEndian.Uint32(good[16:])
	for _, c := range []struct {
		delta int
		want  error
	}{{-1, imagepkg.ErrSignature}, {+1, imagepkg.ErrPadding}, {-1000, imagepkg.ErrPadding}, {+2000, imagepkg.ErrPadding}} {
		bad := bytes.Clone(good)
		binary.BigEndian.PutUint32(bad[16:], uint32(int(off)+c.delta))
		if _, err := imagepkg.Verify(context.Background(), bytes.NewReader(bad), s.Public()); !errors.Is(err, c.want) {
			t.Errorf("payload offset %+d: got %v, want %v", c.delta, err, c.want)
		}
	}
}

// verifyByRead verifies like Verify but reads the payload through its Read
// method only (Verify uses WriteTo).
func verifyByRead(pkg []byte, keys ...*spec.PublicKey) error {
	p, err := imagepkg.Open(bytes.NewReader(pkg))
	if err != nil {
		return err
	}
	if err := p.VerifySignature(keys...); err != nil {
		return err
	}
	_, err = io.ReadAll(p.Payload())
	return err
}

func TestTruncate(t *testing.T) {
	s := testkeys.Ed25519(1)
	for _, comp := range []string{imagepkg.CompressionNone, imagepkg.CompressionZstd} {
		good := pack(t, mixedPayload(150<<10, 5), testOptions(comp), s)
		p, _ := imagepkg.Open(bytes.NewReader(good))
		points := []int{0, 1, 7, 8, 9, 12, 15, 16, 17, int(p.HeaderSize) - 66, int(p.HeaderSize) - 1,
			int(p.HeaderSize), int(p.HeaderSize) + 1, len(good) / 2, len(good) - 4, len(good) - 1}
		for i := 0; i < int(p.HeaderSize); i += 7 {
			points = append(points, i)
		}
		for _, n := range points {
			_, err := imagepkg.Verify(context.Background(), bytes.NewReader(good[:n]), s.Public())
			if !errors.Is(err, imagepkg.ErrTruncated) {
				t.Errorf("%s: truncated to %d of %d bytes: got %v, want ErrTruncated", comp, n, len(good), err)
			}
			if err := verifyByRead(good[:n], s.Public()); !errors.Is(err, imagepkg.ErrTruncated) {
				t.Errorf("%s: truncated to %d of %d bytes, Read: got %v, want ErrTruncated", comp, n, len(good), err)
			}
		}
	}
}

func TestTrailingData(t *testing.T) {
	s := testkeys.Ed25519(1)
	for _, comp := range []string{imagepkg.CompressionNone, imagepkg.CompressionZstd} {
		good := pack(t, mixedPayload(10<<10, 6), testOptions(comp), s)
		for _, extra := range [][]byte{{0}, []byte("garbage"), good} {
			bad := append(bytes.Clone(good), extra...)
			_, err := imagepkg.Verify(context.Background(), bytes.NewReader(bad), s.Public())
			if !errors.Is(err, imagepkg.ErrTrailingData) {
				t.Errorf("%s: %d bytes appended: got %v, want ErrTrailingData", comp, len(extra), err)
			}
			if err := verifyByRead(bad, s.Public()); !errors.Is(err, imagepkg.ErrTrailingData) {
				t.Errorf("%s: %d bytes appended, Read: got %v, want ErrTrailingData", comp, len(extra), err)
			}
		}
	}
}

func TestUnknownKey(t *testing.T) {
	good := pack(t, []byte("payload"), testOptions("none"), testkeys.Ed25519(1))
	for name, keys := range map[string][]*spec.PublicKey{
		"none":     nil,
		"other":    {testkeys.Ed25519(2).Public()},
		"ecdsa":    {testkeys.ECDSA().Public()},
		"nil keys": {nil, nil},
	} {
		_, err := imagepkg.Verify(context.Background(), bytes.NewReader(good), keys...)
		if !errors.Is(err, imagepkg.ErrUnknownKey) {
			t.Errorf("%s: got %v, want ErrUnknownKey", name, err)
		}
	}
	// A key with the right ID but another algorithm is a signature failure.
	k := *testkeys.Ed25519(1).Public()
	k.Algorithm = spec.AlgorithmECDSAP256
	if _, err := imagepkg.Verify(context.Background(), bytes.NewReader(good), &k); !errors.Is(err, imagepkg.ErrSignature) {
		t.Errorf("algorithm mismatch: got %v, want ErrSignature", err)
	}
}

func TestExtractNeedsVerifiedSignature(t *testing.T) {
	good := pack(t, []byte("payload"), testOptions("none"), testkeys.Ed25519(1))
	p, err := imagepkg.Open(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "out")
	if err := imagepkg.Extract(context.Background(), p, dest); !errors.Is(err, imagepkg.ErrSignature) {
		t.Fatalf("got %v, want ErrSignature", err)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatalf("dest exists after refused extraction: %v", err)
	}
}

func TestExtractFile(t *testing.T) {
	s := testkeys.Ed25519(1)
	payload := mixedPayload(300<<10, 7)
	for _, comp := range []string{"none", "zstd"} {
		good := pack(t, payload, testOptions(comp), s)
		dir := t.TempDir()
		dest := filepath.Join(dir, "image.bin")
		p, _ := imagepkg.Open(bytes.NewReader(good))
		if err := p.VerifySignature(s.Public()); err != nil {
			t.Fatal(err)
		}
		if err := imagepkg.Extract(context.Background(), p, dest); err != nil {
			t.Fatalf("Extract: %v", err)
		}
		got, _ := os.ReadFile(dest)
		if !bytes.Equal(got, payload) {
			t.Fatalf("%s: extracted payload differs", comp)
		}
		// A tampered payload leaves no file behind.
		bad := bytes.Clone(good)
		bad[len(bad)-10] ^= 1
		dest2 := filepath.Join(dir, "bad.bin")
		p, _ = imagepkg.Open(bytes.NewReader(bad))
		if err := p.VerifySignature(s.Public()); err != nil {
			t.Fatal(err)
		}
		if err := imagepkg.Extract(context.Background(), p, dest2); !errors.Is(err, imagepkg.ErrPayloadDigest) {
			t.Fatalf("%s: tampered extract: got %v, want ErrPayloadDigest", comp, err)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Fatalf("%s: leftover files after failed extract: %v", comp, entries)
		}
	}
}

// TestPackPathMatchesPack: packing a file with PackPath (no spool when
// uncompressed) gives the bytes Pack gives for the same payload, and the
// Digest option receives exactly the package bytes.
func TestPackPathMatchesPack(t *testing.T) {
	s := testkeys.Ed25519(1)
	dir := t.TempDir()
	payload := mixedPayload(3<<20+17, 11)
	in := filepath.Join(dir, "in.img")
	if err := os.WriteFile(in, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, comp := range []string{imagepkg.CompressionNone, imagepkg.CompressionZstd} {
		want := pack(t, payload, testOptions(comp), s)
		opts := testOptions(comp)
		h := sha256.New()
		opts.Digest = h
		var progress int64
		opts.Progress = func(n int64) { progress = n }
		out := filepath.Join(dir, comp+".upk")
		if _, err := imagepkg.PackPath(context.Background(), out, in, opts, s); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(out)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: PackPath gives %s, Pack %s", comp, digestOf(got), digestOf(want))
		}
		if d := "sha256:" + hex.EncodeToString(h.Sum(nil)); d != digestOf(got) {
			t.Fatalf("%s: Digest option gave %s, package is %s", comp, d, digestOf(got))
		}
		if progress != int64(len(payload)) {
			t.Fatalf("%s: last progress %d, want %d", comp, progress, len(payload))
		}
	}
}

// ErrRejected covers every refusal of a package, so that callers (the
// CLI's exit code) test one sentinel; misuse of the API is not a refusal.
func TestErrRejectedCoversRefusals(t *testing.T) {
	for _, s := range []error{imagepkg.ErrMagic, imagepkg.ErrVersion, imagepkg.ErrUnsupported, imagepkg.ErrMetadata,
		imagepkg.ErrMetadataTooLarge, imagepkg.ErrSignatureBlock, imagepkg.ErrUnknownKey, imagepkg.ErrSignature,
		imagepkg.ErrTruncated, imagepkg.ErrPayloadDigest, imagepkg.ErrPayloadSize, imagepkg.ErrTrailingData, imagepkg.ErrUnsafePath} {
		if !errors.Is(fmt.Errorf("context: %w", s), imagepkg.ErrRejected) || errors.Is(imagepkg.ErrRejected, s) {
			t.Errorf("%v and ErrRejected", s)
		}
	}
	for _, s := range []error{imagepkg.ErrInvalidOptions, imagepkg.ErrPayloadConsumed, imagepkg.ErrSignerMisbehaving} {
		if errors.Is(s, imagepkg.ErrRejected) {
			t.Errorf("%v matches ErrRejected", s)
		}
	}
	if _, err := imagepkg.Open(bytes.NewReader([]byte("not a package at all"))); !errors.Is(err, imagepkg.ErrMagic) || !errors.Is(err, imagepkg.ErrRejected) {
		t.Fatalf("garbage: %v, want ErrMagic matching ErrRejected", err)
	}
}
