package mcuboot_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upkit/upkit/internal/testutil/imgtooltest"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/mcuboot"
	"github.com/upkit/upkit/spec"
)

// writeKeys writes s's private key (PKCS#8 PEM, as imgtool keygen does) and
// public key (PEM) into dir and returns their absolute paths.
func writeKeys(t testing.TB, dir string, s *testkeys.Signer) (priv, pub string) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(s.Private())
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, "key.pem"), filepath.Join(dir, "key.pub")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, s.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// firmware returns n bytes that look like code (not random: deltas and
// compression see structure), different per seed.
func firmware(n, seed int) []byte {
	b := make([]byte, n)
	x := uint32(seed*2654435761 + 1)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// parityCase is one set of sign options, as imgtool flags and as Options.
type parityCase struct {
	name    string
	args    []string
	opts    mcuboot.Options
	version string
	body    func() []byte // nil: 3000 bytes of firmware
}

func parityCases() []parityCase {
	v := func(s string) mcuboot.Version {
		ver, err := mcuboot.ParseVersion(s)
		if err != nil {
			panic(err)
		}
		return ver
	}
	zeros := func(hs, n int) func() []byte {
		return func() []byte { return append(make([]byte, hs), firmware(n, 7)...) }
	}
	return []parityCase{
		{name: "basic", version: "1.2.3+4",
			args: []string{"-H", "0x200", "--pad-header", "-S", "0x20000", "-s", "7"},
			opts: mcuboot.Options{Version: v("1.2.3+4"), SecurityCounter: 7, HeaderSize: 0x200, PadHeader: true, SlotSize: 0x20000}},
		{name: "pad", version: "1.2.3",
			args: []string{"-H", "0x200", "--pad-header", "-S", "0x8000", "-s", "1", "--pad"},
			opts: mcuboot.Options{Version: v("1.2.3"), SecurityCounter: 1, HeaderSize: 0x200, PadHeader: true, SlotSize: 0x8000, Pad: true}},
		{name: "confirm-align8-load-addr", version: "0.0.1",
			args: []string{"-H", "0x400", "--pad-header", "-S", "0x9000", "-s", "0", "--confirm", "--align", "8", "-L", "0x20000000"},
			opts: mcuboot.Options{Version: v("0.0.1"), HeaderSize: 0x400, PadHeader: true, SlotSize: 0x9000, Confirm: true, Align: 8, LoadAddr: 0x20000000}},
		{name: "test-align16", version: "2.0.0+1",
			args: []string{"-H", "0x200", "--pad-header", "-S", "0x10000", "-s", "3", "--test", "--align", "16"},
			opts: mcuboot.Options{Version: v("2.0.0+1"), SecurityCounter: 3, HeaderSize: 0x200, PadHeader: true, SlotSize: 0x10000, Test: true, Align: 16}},
		{name: "confirm-max-align32-sectors", version: "3.1.4+15",
			args: []string{"-H", "0x200", "--pad-header", "-S", "0x12000", "-s", "12", "--confirm", "--align", "4", "--max-align", "32", "-M", "64"},
			opts: mcuboot.Options{Version: v("3.1.4+15"), SecurityCounter: 12, HeaderSize: 0x200, PadHeader: true, SlotSize: 0x12000, Confirm: true, Align: 4, MaxAlign: 32, MaxSectors: 64}},
		{name: "room-for-header-rom-fixed", version: "1.0.0", body: zeros(0x100, 4000),
			args: []string{"-H", "0x100", "-S", "0x4000", "-s", "2", "-F", "0x8000"},
			opts: mcuboot.Options{Version: v("1.0.0"), SecurityCounter: 2, HeaderSize: 0x100, SlotSize: 0x4000, ROMFixed: 0x8000}},
		{name: "overwrite-only-confirm", version: "1.1.1",
			args: []string{"-H", "0x20", "--pad-header", "-S", "0x2000", "-s", "5", "--confirm", "--overwrite-only"},
			opts: mcuboot.Options{Version: v("1.1.1"), SecurityCounter: 5, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x2000, Confirm: true, OverwriteOnly: true}},
		{name: "erased-zero-pad", version: "4.5.6",
			args: []string{"-H", "0x200", "--pad-header", "-S", "0x3000", "-s", "9", "--pad", "-R", "0"},
			opts: mcuboot.Options{Version: v("4.5.6"), SecurityCounter: 9, HeaderSize: 0x200, PadHeader: true, SlotSize: 0x3000, Pad: true, EraseZero: true}},
		{name: "max-fields", version: "255.255.65535+4294967295",
			args: []string{"-H", "0xffe0", "--pad-header", "-S", "0x20000", "-s", "0xffffffff"},
			opts: mcuboot.Options{Version: v("255.255.65535+4294967295"), SecurityCounter: 0xffffffff, HeaderSize: 0xffe0, PadHeader: true, SlotSize: 0x20000}},
	}
}

// TestImgtoolParity signs the same input with the same key and options with
// imgtool and with Sign: Ed25519 images are identical byte for byte; ECDSA
// ones differ only in the signature (and the TLV area's length with it).
// imgtool verify accepts upkit's image, dumpinfo shows its version and
// security counter, and upkit verifies imgtool's.
func TestImgtoolParity(t *testing.T) {
	imgtooltest.Path(t)
	for _, alg := range []string{spec.AlgorithmEd25519, spec.AlgorithmECDSAP256} {
		for _, tc := range parityCases() {
			t.Run(alg+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				s := testkeys.Ed25519(3)
				if alg == spec.AlgorithmECDSAP256 {
					s = testkeys.ECDSA()
				}
				dir := t.TempDir()
				priv, pub := writeKeys(t, dir, s)
				body := firmware(3000, 1)
				if tc.body != nil {
					body = tc.body()
				}
				in := filepath.Join(dir, "fw.bin")
				if err := os.WriteFile(in, body, 0o644); err != nil {
					t.Fatal(err)
				}
				refPath := filepath.Join(dir, "imgtool.bin")
				args := append([]string{"sign", "-k", priv, "-v", tc.version}, tc.args...)
				imgtooltest.Run(t, append(args, in, refPath)...)
				ref, err := os.ReadFile(refPath)
				if err != nil {
					t.Fatal(err)
				}
				got, err := mcuboot.Sign(context.Background(), bytes.NewReader(body), tc.opts, s)
				if err != nil {
					t.Fatal(err)
				}
				comparePair(t, alg, ref, got)

				// imgtool accepts upkit's image.
				ourPath := filepath.Join(dir, "upkit.bin")
				if err := os.WriteFile(ourPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				out := imgtooltest.Run(t, "verify", "-k", pub, ourPath)
				if !strings.Contains(out, "Image was correctly validated") || !strings.Contains(out, "Image version: "+imgtoolVersion(tc.version)) {
					t.Fatalf("imgtool verify:\n%s", out)
				}
				info := dumpinfo(t, ourPath)
				if info.Header.Version != imgtoolVersion(tc.version) {
					t.Errorf("dumpinfo version %q, want %q", info.Header.Version, imgtoolVersion(tc.version))
				}
				if info.secCnt(t) != uint64(tc.opts.SecurityCounter) {
					t.Errorf("dumpinfo SEC_CNT %d, want %d", info.secCnt(t), tc.opts.SecurityCounter)
				}

				// upkit verifies imgtool's image, with its security counter.
				img, key, err := mcuboot.Verify(context.Background(), bytes.NewReader(ref), int64(len(ref)), s.Public())
				if err != nil {
					t.Fatalf("verifying imgtool's image: %v", err)
				}
				if key.ID != s.KeyID() || img.SecurityCounter != tc.opts.SecurityCounter || img.Header.Version != tc.opts.Version {
					t.Fatalf("imgtool's image: key %s, counter %d, version %v", key.ID, img.SecurityCounter, img.Header.Version)
				}
				if (img.Trailer != nil) != (tc.opts.Pad || tc.opts.Confirm || tc.opts.Test) || img.Trailer.Confirmed() != tc.opts.Confirm && !tc.opts.OverwriteOnly {
					t.Fatalf("imgtool's image trailer %+v for options %+v", img.Trailer, tc.opts)
				}
			})
		}
	}
}

// imgtoolVersion is how imgtool prints a version (always with +BUILD).
func imgtoolVersion(v string) string {
	if !strings.Contains(v, "+") {
		return v + "+0"
	}
	return v
}

// comparePair checks upkit's image against imgtool's.
func comparePair(t *testing.T, alg string, ref, got []byte) {
	t.Helper()
	if alg == spec.AlgorithmEd25519 {
		if !bytes.Equal(ref, got) {
			at := firstDiff(ref, got)
			t.Fatalf("Ed25519 image differs from imgtool's: %d vs %d bytes, first difference at offset %d (0x%x)", len(got), len(ref), at, at)
		}
		return
	}
	ri, err := mcuboot.Parse(bytes.NewReader(ref), int64(len(ref)))
	if err != nil {
		t.Fatalf("parsing imgtool's image: %v", err)
	}
	gi, err := mcuboot.Parse(bytes.NewReader(got), int64(len(got)))
	if err != nil {
		t.Fatalf("parsing upkit's image: %v", err)
	}
	if ri.TLVOffset != gi.TLVOffset || !bytes.Equal(ref[:ri.TLVOffset], got[:gi.TLVOffset]) {
		t.Fatalf("signed regions differ: %d and %d bytes, first difference at %d", ri.TLVOffset, gi.TLVOffset, firstDiff(ref[:ri.TLVOffset], got[:gi.TLVOffset]))
	}
	if len(ri.TLVs) != len(gi.TLVs) {
		t.Fatalf("TLV areas: imgtool %d entries, upkit %d", len(ri.TLVs), len(gi.TLVs))
	}
	for i := range ri.TLVs {
		r, g := ri.TLVs[i], gi.TLVs[i]
		if r.Type != g.Type || (r.Type != mcuboot.TLVECDSASig && !bytes.Equal(r.Value, g.Value)) {
			t.Fatalf("TLV %d: imgtool %s %x, upkit %s %x", i, mcuboot.TLVName(r.Type), r.Value, mcuboot.TLVName(g.Type), g.Value)
		}
	}
	if len(ref) != len(got) && (ri.Trailer != nil || gi.Trailer != nil) {
		t.Fatalf("padded images of %d and %d bytes", len(ref), len(got))
	}
	if ri.Trailer != nil {
		// Same trailer, from the first byte where both are padding.
		from := max(ri.End, gi.End)
		if !bytes.Equal(ref[from:], got[from:]) {
			t.Fatalf("trailers differ at %d", from+int64(firstDiff(ref[from:], got[from:])))
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// imgtoolInfo is the part of `imgtool dumpinfo -f json` the tests read.
type imgtoolInfo struct {
	Header struct {
		Magic            uint32 `json:"magic"`
		HdrSize          int    `json:"hdr_size"`
		ProtectedTLVSize int    `json:"protected_tlv_size"`
		ImgSize          int    `json:"img_size"`
		Version          string `json:"version"`
	} `json:"header"`
	TLVArea struct {
		Prot []struct {
			Type int    `json:"type"`
			Name string `json:"type_name"`
			Data string `json:"data"`
		} `json:"tlvs_prot"`
		TLVs []struct {
			Type int    `json:"type"`
			Name string `json:"type_name"`
			Data string `json:"data"`
		} `json:"tlvs"`
	} `json:"tlv_area"`
}

func dumpinfo(t *testing.T, path string) *imgtoolInfo {
	t.Helper()
	out := imgtooltest.Run(t, "dumpinfo", "-f", "json", path)
	var info imgtoolInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("imgtool dumpinfo -f json: %v\n%s", err, out)
	}
	return &info
}

func (i *imgtoolInfo) secCnt(t *testing.T) uint64 {
	t.Helper()
	for _, p := range i.TLVArea.Prot {
		if p.Name == "SEC_CNT" {
			b, err := hex.DecodeString(p.Data)
			if err != nil || len(b) != 4 {
				t.Fatalf("dumpinfo SEC_CNT data %q", p.Data)
			}
			return uint64(binary.LittleEndian.Uint32(b))
		}
	}
	t.Fatal("dumpinfo shows no SEC_CNT TLV")
	return 0
}

// TestImgtoolSignedRefused takes images imgtool signed and breaks them: a
// flipped byte anywhere (header, body, TLVs, trailer), a wrong key, a lower
// security counter: upkit refuses each, and imgtool refuses the
// signed-region flips too.
func TestImgtoolSignedRefused(t *testing.T) {
	imgtooltest.Path(t)
	for _, alg := range []string{spec.AlgorithmEd25519, spec.AlgorithmECDSAP256} {
		for _, padded := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/pad=%v", alg, padded), func(t *testing.T) {
				t.Parallel()
				s := testkeys.Ed25519(4)
				other := testkeys.Ed25519(5)
				if alg == spec.AlgorithmECDSAP256 {
					s, other = testkeys.ECDSA(), testkeys.ECDSA()
				}
				dir := t.TempDir()
				priv, _ := writeKeys(t, dir, s)
				in, out := filepath.Join(dir, "fw.bin"), filepath.Join(dir, "signed.bin")
				if err := os.WriteFile(in, firmware(700, 2), 0o644); err != nil {
					t.Fatal(err)
				}
				args := []string{"sign", "-k", priv, "-v", "1.4.0+2", "-s", "6", "-H", "0x40", "--pad-header", "-S", "0x1000"}
				if padded {
					args = append(args, "--confirm")
				}
				imgtooltest.Run(t, append(args, in, out)...)
				good, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				img, _, err := mcuboot.Verify(ctx, bytes.NewReader(good), int64(len(good)), s.Public())
				if err != nil {
					t.Fatalf("good image: %v", err)
				}
				if err := img.CheckSecurityCounter(6); err != nil {
					t.Fatalf("counter 6 against minimum 6: %v", err)
				}
				if err := img.CheckSecurityCounter(7); !errors.Is(err, mcuboot.ErrSecurityCounter) {
					t.Fatalf("counter 6 against minimum 7: %v, want ErrSecurityCounter", err)
				}
				if _, _, err := mcuboot.Verify(ctx, bytes.NewReader(good), int64(len(good)), other.Public()); !errors.Is(err, mcuboot.ErrUnknownKey) {
					t.Fatalf("wrong key: %v, want ErrUnknownKey", err)
				}
				bad := bytes.Clone(good)
				for i := range bad {
					bad[i] ^= 0xff
					if _, _, err := mcuboot.Verify(ctx, bytes.NewReader(bad), int64(len(bad)), s.Public()); err == nil {
						t.Fatalf("flipping the byte at offset %d (0x%x) of %d: still verifies", i, i, len(bad))
					}
					bad[i] ^= 0xff
				}
				// A lowered SEC_CNT (1 instead of 6), without re-signing.
				bad = bytes.Clone(good)
				binary.LittleEndian.PutUint32(bad[img.ProtectedTLVs[0].Offset+4:], 1)
				if _, _, err := mcuboot.Verify(ctx, bytes.NewReader(bad), int64(len(bad)), s.Public()); !errors.Is(err, mcuboot.ErrHash) {
					t.Fatalf("lowered SEC_CNT: %v, want ErrHash", err)
				}
				// imgtool agrees: a body byte flipped is an invalid hash.
				bad = bytes.Clone(good)
				bad[0x40+10] ^= 1
				badPath := filepath.Join(dir, "bad.bin")
				if err := os.WriteFile(badPath, bad, 0o644); err != nil {
					t.Fatal(err)
				}
				if o, _, err := imgtooltest.RunErr(t, "verify", "-k", priv, badPath); err == nil || !strings.Contains(o, "invalid hash") {
					t.Fatalf("imgtool verify of a tampered body: %v\n%s", err, o)
				}
			})
		}
	}
}

// TestImgtoolKeyHash checks that the KEYHASH TLV is what imgtool getpubhash
// prints for the key: upkit's key ID.
func TestImgtoolKeyHash(t *testing.T) {
	for _, s := range []*testkeys.Signer{testkeys.Ed25519(1), testkeys.ECDSA()} {
		priv, _ := writeKeys(t, t.TempDir(), s)
		out := imgtooltest.Run(t, "getpubhash", "-k", priv, "-e", "lang-c")
		var got []string
		for _, f := range strings.FieldsFunc(out, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '{' || r == '}' }) {
			if strings.HasPrefix(f, "0x") && len(f) == 4 {
				got = append(got, f[2:])
			}
		}
		if strings.Join(got, "") != s.KeyID() {
			t.Fatalf("imgtool getpubhash %s, key ID %s\n%s", strings.Join(got, ""), s.KeyID(), out)
		}
		sum := sha256.Sum256(s.Public().DER)
		if hex.EncodeToString(sum[:]) != s.KeyID() {
			t.Fatal("key ID is not sha256 of the DER key")
		}
	}
}
