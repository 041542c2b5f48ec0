package mcuboot_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/mcuboot"
	"github.com/upkit/upkit/spec"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.bin")

// hasSentinel reports whether err is a refusal: every one matches
// ErrRejected (TestSentinels checks the umbrella).
func hasSentinel(err error) bool { return errors.Is(err, mcuboot.ErrRejected) }

// TestSentinels: each refusal matches ErrRejected; errors about the
// caller's options or signer do not.
func TestSentinels(t *testing.T) {
	for _, s := range []error{
		mcuboot.ErrMagic, mcuboot.ErrTruncated, mcuboot.ErrMalformed, mcuboot.ErrUnsupported,
		mcuboot.ErrTrailingData, mcuboot.ErrTooLarge, mcuboot.ErrHash, mcuboot.ErrUnknownKey,
		mcuboot.ErrSignature, mcuboot.ErrSecurityCounter,
	} {
		if !errors.Is(s, mcuboot.ErrRejected) || errors.Is(mcuboot.ErrRejected, s) {
			t.Errorf("%v: not under ErrRejected", s)
		}
	}
	for _, s := range []error{mcuboot.ErrInvalidOptions, mcuboot.ErrSignerMisbehaving} {
		if errors.Is(s, mcuboot.ErrRejected) {
			t.Errorf("%v matches ErrRejected", s)
		}
	}
}

func goldenOptions() mcuboot.Options {
	return mcuboot.Options{
		Version: mcuboot.Version{Major: 1, Minor: 2, Revision: 3, Build: 4}, SecurityCounter: 7,
		HeaderSize: 0x200, PadHeader: true, SlotSize: 0x4000,
	}
}

func sign(t testing.TB, body []byte, opts mcuboot.Options, s spec.Signer) []byte {
	t.Helper()
	img, err := mcuboot.Sign(context.Background(), bytes.NewReader(body), opts, s)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestGolden pins the bytes of an Ed25519 image: testdata/golden.bin
// (regenerate with go test ./mcuboot -run TestGolden -update). imgtool
// writes the same bytes for the same input (TestImgtoolParity).
func TestGolden(t *testing.T) {
	got := sign(t, firmware(1000, 9), goldenOptions(), testkeys.Ed25519(1))
	path := filepath.Join("testdata", "golden.bin")
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
		t.Fatalf("signing the golden input gives %d bytes, testdata/golden.bin has %d: the format changed; if intended, rerun with -update and document it in docs/FORMAT.md", len(got), len(want))
	}
	if !mcuboot.IsImage(want) || mcuboot.IsImage(want[:3]) || mcuboot.IsImage([]byte("UPKIMG\x00\x01")) {
		t.Fatal("IsImage does not tell the golden image's magic")
	}
	img, key, err := mcuboot.Verify(context.Background(), bytes.NewReader(want), int64(len(want)), testkeys.Ed25519(1).Public())
	if err != nil {
		t.Fatal(err)
	}
	h := img.Header
	if h.Magic != mcuboot.Magic || h.HeaderSize != 0x200 || h.ProtectedTLVSize != 12 || h.ImageSize != 1000 || h.Flags != 0 ||
		h.Version.String() != "1.2.3+4" || !img.HasSecurityCounter || img.SecurityCounter != 7 || key.ID != testkeys.Ed25519(1).KeyID() ||
		img.TLVOffset != 0x200+1000+12 || img.End != int64(len(want)) || img.Trailer != nil || img.Algorithm() != spec.AlgorithmEd25519 {
		t.Fatalf("golden image parsed as %+v", img)
	}
	sum := sha256.Sum256(want[:img.TLVOffset])
	if !bytes.Equal(sum[:], img.Hash) {
		t.Fatal("SHA256 TLV is not the hash of the signed region")
	}
	for i := 32; i < 0x200; i++ {
		if want[i] != 0xff {
			t.Fatalf("header padding byte %d is 0x%02x, want 0xff", i, want[i])
		}
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	for _, s := range []*testkeys.Signer{testkeys.Ed25519(1), testkeys.ECDSA()} {
		for _, opts := range []mcuboot.Options{
			goldenOptions(),
			{HeaderSize: 32, PadHeader: true, SlotSize: 0x2000, Confirm: true, SecurityCounter: 1},
			{HeaderSize: 0x100, PadHeader: true, SlotSize: 0x4000, Pad: true, Align: 32, EraseZero: true, LoadAddr: 0x10000},
		} {
			img := sign(t, firmware(2000, 3), opts, s)
			parsed, key, err := mcuboot.Verify(ctx, bytes.NewReader(img), int64(len(img)), testkeys.Ed25519(9).Public(), s.Public())
			if err != nil {
				t.Fatalf("%s %+v: %v", s.Public().Algorithm, opts, err)
			}
			if key.ID != s.KeyID() || parsed.KeyID() != s.KeyID() || parsed.Algorithm() != s.Public().Algorithm ||
				parsed.SecurityCounter != opts.SecurityCounter || int(parsed.Header.ImageSize) != 2000 {
				t.Fatalf("parsed %+v", parsed)
			}
			pad := opts.Pad || opts.Confirm
			if (parsed.Trailer != nil) != pad || (pad && int64(len(img)) != opts.SlotSize) || parsed.Trailer.Confirmed() != opts.Confirm {
				t.Fatalf("trailer %+v, image %d bytes, options %+v", parsed.Trailer, len(img), opts)
			}
			if opts.LoadAddr != 0 && (parsed.Header.Flags != mcuboot.FlagRAMLoad || parsed.Header.LoadAddr != opts.LoadAddr) {
				t.Fatalf("load address: flags %x addr %x", parsed.Header.Flags, parsed.Header.LoadAddr)
			}
			// ParseSlot reads the same image out of a larger flash slot.
			flash := append(bytes.Clone(img[:parsed.End]), bytes.Repeat([]byte{0xa5}, 512)...)
			ps, err := mcuboot.ParseSlot(bytes.NewReader(flash), int64(len(flash)))
			if err != nil || ps.End != parsed.End || ps.Size != parsed.End {
				t.Fatalf("ParseSlot: %v %+v", err, ps)
			}
			if _, err := ps.Verify(ctx, bytes.NewReader(flash), s.Public()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestParseVersion(t *testing.T) {
	good := map[string]mcuboot.Version{
		"0.0.0":                    {},
		"1.2.3":                    {Major: 1, Minor: 2, Revision: 3},
		"1.2.3+4":                  {Major: 1, Minor: 2, Revision: 3, Build: 4},
		"255.255.65535+4294967295": {Major: 255, Minor: 255, Revision: 65535, Build: 4294967295},
	}
	for s, want := range good {
		got, err := mcuboot.ParseVersion(s)
		if err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %+v, %v", s, got, err)
		}
		if want.Build != 0 && got.String() != s {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), s)
		}
	}
	if v, _ := mcuboot.ParseVersion("1.2.3+0"); v.String() != "1.2.3" || v.ImgtoolString() != "1.2.3+0" {
		t.Errorf("1.2.3+0 prints as %q / %q", v.String(), v.ImgtoolString())
	}
	for _, s := range []string{"", "1", "1.2", "1.2.3.4", "256.0.0", "0.256.0", "0.0.65536", "1.2.3+4294967296",
		"01.2.3", "1.02.3", "1.2.03", "1.2.3+04", "1.2.3-rc.1", "1.2.3+build.5", "v1.2.3", "1.2.3+", " 1.2.3", "1.-2.3"} {
		if _, err := mcuboot.ParseVersion(s); !errors.Is(err, mcuboot.ErrInvalidOptions) {
			t.Errorf("ParseVersion(%q): %v, want ErrInvalidOptions", s, err)
		}
	}
}

func TestSignRefusesBadOptions(t *testing.T) {
	s := testkeys.Ed25519(1)
	body := firmware(1000, 1)
	base := goldenOptions()
	cases := map[string]struct {
		mod  func(*mcuboot.Options)
		body []byte
		want error
	}{
		"header too small":     {mod: func(o *mcuboot.Options) { o.HeaderSize = 31 }, want: mcuboot.ErrInvalidOptions},
		"header too large":     {mod: func(o *mcuboot.Options) { o.HeaderSize = 0x10000 }, want: mcuboot.ErrInvalidOptions},
		"no slot size":         {mod: func(o *mcuboot.Options) { o.SlotSize = 0 }, want: mcuboot.ErrInvalidOptions},
		"slot over limit":      {mod: func(o *mcuboot.Options) { o.SlotSize = mcuboot.MaxSlotSize + 1 }, want: mcuboot.ErrInvalidOptions},
		"alignment 3":          {mod: func(o *mcuboot.Options) { o.Align = 3 }, want: mcuboot.ErrInvalidOptions},
		"max alignment 64":     {mod: func(o *mcuboot.Options) { o.MaxAlign = 64 }, want: mcuboot.ErrInvalidOptions},
		"load and rom address": {mod: func(o *mcuboot.Options) { o.LoadAddr, o.ROMFixed = 1, 2 }, want: mcuboot.ErrInvalidOptions},
		"image and trailer do not fit": {mod: func(o *mcuboot.Options) { o.SlotSize = 0x200 + 1000 + 12 + 150 + 100 },
			want: mcuboot.ErrTooLarge},
		"input larger than slot": {mod: func(o *mcuboot.Options) { o.SlotSize = 999 }, want: mcuboot.ErrTooLarge},
		"no room for header":     {mod: func(o *mcuboot.Options) { o.PadHeader = false }, want: mcuboot.ErrInvalidOptions},
		"input shorter than header": {mod: func(o *mcuboot.Options) { o.PadHeader = false }, body: make([]byte, 100),
			want: mcuboot.ErrInvalidOptions},
	}
	for name, tc := range cases {
		o := base
		tc.mod(&o)
		b := body
		if tc.body != nil {
			b = tc.body
		}
		if _, err := mcuboot.Sign(context.Background(), bytes.NewReader(b), o, s); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// The smallest slot that fits: image + default trailer (128*3 + 8*4 + 16).
	o := base
	o.SlotSize = 0x200 + 1000 + 12 + 4 + 36 + 36 + 68 + 128*3 + 32 + 16
	if _, err := mcuboot.Sign(context.Background(), bytes.NewReader(body), o, s); err != nil {
		t.Fatalf("exact fit: %v", err)
	}
	o.SlotSize--
	if _, err := mcuboot.Sign(context.Background(), bytes.NewReader(body), o, s); !errors.Is(err, mcuboot.ErrTooLarge) {
		t.Fatalf("one byte short: %v", err)
	}
}

// bareSigner has only the two methods of the foundation's Signer: Sign
// must find the algorithm from the signature.
type bareSigner struct{ s *testkeys.Signer }

func (b bareSigner) KeyID() string { return b.s.KeyID() }
func (b bareSigner) Sign(ctx context.Context, m []byte) ([]byte, error) {
	return b.s.Sign(ctx, m)
}

// lyingSigner signs with one key and claims another.
type lyingSigner struct {
	*testkeys.Signer
	id string
}

func (l lyingSigner) KeyID() string { return l.id }

func TestSigners(t *testing.T) {
	ctx := context.Background()
	for _, s := range []*testkeys.Signer{testkeys.Ed25519(2), testkeys.ECDSA()} {
		img := sign(t, firmware(500, 1), goldenOptions(), bareSigner{s})
		if _, _, err := mcuboot.Verify(ctx, bytes.NewReader(img), int64(len(img)), s.Public()); err != nil {
			t.Fatalf("%s without a public key method: %v", s.Public().Algorithm, err)
		}
		if s.Public().Algorithm == spec.AlgorithmEd25519 && !bytes.Equal(img, sign(t, firmware(500, 1), goldenOptions(), s)) {
			t.Fatal("Ed25519 image differs between a bare signer and one with its public key")
		}
		_, err := mcuboot.Sign(ctx, bytes.NewReader(firmware(500, 1)), goldenOptions(), lyingSigner{s, testkeys.Ed25519(7).KeyID()})
		if !errors.Is(err, mcuboot.ErrSignerMisbehaving) {
			t.Fatalf("signer lying about its key ID: %v", err)
		}
	}
	if _, err := mcuboot.Sign(ctx, bytes.NewReader(nil), goldenOptions(), lyingSigner{testkeys.Ed25519(1), "ABC"}); !errors.Is(err, mcuboot.ErrInvalidOptions) {
		t.Fatalf("bad key ID: %v", err)
	}
}

// TestParseRefuses breaks the structure of a good image in each way the
// parser must notice, re-hashing nothing: every case is caught before the
// signature is looked at, with the right sentinel.
func TestParseRefuses(t *testing.T) {
	good := sign(t, firmware(300, 5), mcuboot.Options{HeaderSize: 32, PadHeader: true, SlotSize: 0x2000, SecurityCounter: 3}, testkeys.Ed25519(1))
	img, err := mcuboot.Parse(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		t.Fatal(err)
	}
	tlv := img.TLVOffset
	le16 := func(b []byte, off int64, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }
	le32 := func(b []byte, off int64, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
	cases := map[string]struct {
		mod  func(b []byte) []byte
		want error
	}{
		"magic":               {func(b []byte) []byte { b[0]++; return b }, mcuboot.ErrMagic},
		"header size 16":      {func(b []byte) []byte { le16(b, 8, 16); return b }, mcuboot.ErrMalformed},
		"reserved word":       {func(b []byte) []byte { le32(b, 28, 1); return b }, mcuboot.ErrMalformed},
		"encrypted flag":      {func(b []byte) []byte { le32(b, 16, mcuboot.FlagEncryptedAES128); return b }, mcuboot.ErrUnsupported},
		"compressed flag":     {func(b []byte) []byte { le32(b, 16, mcuboot.FlagCompressedLZMA2); return b }, mcuboot.ErrUnsupported},
		"unknown flag":        {func(b []byte) []byte { le32(b, 16, 0x8000); return b }, mcuboot.ErrUnsupported},
		"image size too big":  {func(b []byte) []byte { le32(b, 12, 1<<30); return b }, mcuboot.ErrTruncated},
		"protected size 2":    {func(b []byte) []byte { le16(b, 10, 2); return b }, mcuboot.ErrMalformed},
		"protected size off":  {func(b []byte) []byte { le16(b, 10, 16); return b }, mcuboot.ErrMalformed},
		"protected magic":     {func(b []byte) []byte { b[img.ProtectedOffset]++; return b }, mcuboot.ErrMalformed},
		"protected total":     {func(b []byte) []byte { le16(b, img.ProtectedOffset+2, 11); return b }, mcuboot.ErrMalformed},
		"SEC_CNT length":      {func(b []byte) []byte { le16(b, img.ProtectedOffset+6, 3); return b }, mcuboot.ErrMalformed},
		"TLV magic":           {func(b []byte) []byte { b[tlv]++; return b }, mcuboot.ErrMalformed},
		"TLV total short":     {func(b []byte) []byte { le16(b, tlv+2, 3); return b }, mcuboot.ErrMalformed},
		"TLV total long":      {func(b []byte) []byte { le16(b, tlv+2, 0xfff0); return b }, mcuboot.ErrTruncated},
		"TLV entry overruns":  {func(b []byte) []byte { le16(b, tlv+6, 200); return b }, mcuboot.ErrMalformed},
		"SHA256 length":       {func(b []byte) []byte { le16(b, tlv+2, uint16(len(b)-int(tlv)-1)); return b[:len(b)-1] }, mcuboot.ErrMalformed},
		"unknown TLV type":    {func(b []byte) []byte { le16(b, tlv+4, 0x99); return b }, mcuboot.ErrMalformed},
		"RSA signature TLV":   {func(b []byte) []byte { le16(b, int64(len(b))-68, mcuboot.TLVRSA2048); return b }, mcuboot.ErrUnsupported},
		"SHA512 TLV":          {func(b []byte) []byte { le16(b, tlv+4, mcuboot.TLVSHA512); return b }, mcuboot.ErrUnsupported},
		"two keys":            {func(b []byte) []byte { le16(b, int64(len(b))-68, mcuboot.TLVKeyHash); return b }, mcuboot.ErrMalformed},
		"signature first":     {func(b []byte) []byte { le16(b, tlv+4+36, mcuboot.TLVEd25519); return b }, mcuboot.ErrMalformed},
		"truncated":           {func(b []byte) []byte { return b[:len(b)-1] }, mcuboot.ErrTruncated},
		"trailing byte":       {func(b []byte) []byte { return append(b, 0xff) }, mcuboot.ErrTrailingData},
		"trailing zeros":      {func(b []byte) []byte { return append(b, make([]byte, 64)...) }, mcuboot.ErrTrailingData},
		"SEC_CNT unprotected": {func(b []byte) []byte { le16(b, tlv+4, mcuboot.TLVSecCnt); return b }, mcuboot.ErrMalformed},
	}
	for name, tc := range cases {
		b := tc.mod(bytes.Clone(good))
		_, err := mcuboot.Parse(bytes.NewReader(b), int64(len(b)))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if _, err := mcuboot.Parse(bytes.NewReader(good), mcuboot.MaxSlotSize+1); !errors.Is(err, mcuboot.ErrTooLarge) {
		t.Errorf("size over MaxSlotSize: %v", err)
	}
	for n := 0; n < len(good); n++ {
		_, err := mcuboot.Parse(bytes.NewReader(good[:n]), int64(n))
		if err == nil || !hasSentinel(err) {
			t.Fatalf("first %d bytes: %v", n, err)
		}
	}
	// An unsigned image (imgtool sign without -k) parses but does not verify.
	unsigned := bytes.Clone(good[:tlv+4+36])
	le16(unsigned, tlv+2, 40)
	u, err := mcuboot.Parse(bytes.NewReader(unsigned), int64(len(unsigned)))
	if err != nil || u.KeyID() != "" || u.Algorithm() != "" {
		t.Fatalf("unsigned image: %v %+v", err, u)
	}
	if _, err := u.Verify(context.Background(), bytes.NewReader(unsigned), testkeys.Ed25519(1).Public()); !errors.Is(err, mcuboot.ErrSignature) {
		t.Fatalf("unsigned image verifies: %v", err)
	}
	// A key of the wrong algorithm with the same hash cannot exist; a
	// signature TLV of the other type is refused.
	other := bytes.Clone(good)
	le16(other, int64(len(other))-68, mcuboot.TLVECDSASig)
	if _, _, err := mcuboot.Verify(context.Background(), bytes.NewReader(other), int64(len(other)), testkeys.Ed25519(1).Public()); !errors.Is(err, mcuboot.ErrSignature) {
		t.Fatalf("ECDSASIG TLV for an Ed25519 key: %v", err)
	}
}

// TestTrailerRules checks the padding rules on a padded image.
func TestTrailerRules(t *testing.T) {
	opts := mcuboot.Options{HeaderSize: 32, PadHeader: true, SlotSize: 0x1000, Confirm: true}
	good := sign(t, firmware(300, 5), opts, testkeys.Ed25519(1))
	img, err := mcuboot.Parse(bytes.NewReader(good), int64(len(good)))
	if err != nil || img.Trailer == nil || !img.Trailer.Confirmed() || img.Trailer.MaxAlign != 8 || img.Trailer.Erased != 0xff {
		t.Fatalf("%v %+v", err, img.Trailer)
	}
	okAt := len(good) - 24
	for name, mod := range map[string]func(b []byte){
		"image_ok 2":   func(b []byte) { b[okAt] = 2 },
		"padding byte": func(b []byte) { b[img.End+5] = 0 },
		"magic":        func(b []byte) { b[len(b)-1] ^= 1 },
		"alignment 64": func(b []byte) {
			b[len(b)-16], b[len(b)-15] = 64, 0
			copy(b[len(b)-14:], []byte{0x2d, 0xe1, 0x5d, 0x29, 0x41, 0x0b, 0x8d, 0x77, 0x67, 0x9c, 0x11, 0x0f, 0x1f, 0x8a})
		},
		"last before flag": func(b []byte) { b[len(b)-17] = 0 },
	} {
		b := bytes.Clone(good)
		mod(b)
		if _, err := mcuboot.Parse(bytes.NewReader(b), int64(len(b))); !errors.Is(err, mcuboot.ErrTrailingData) {
			t.Errorf("%s: %v, want ErrTrailingData", name, err)
		}
	}
	// image_ok erased: a plain --pad (or --test) image.
	b := bytes.Clone(good)
	b[okAt] = 0xff
	if p, err := mcuboot.Parse(bytes.NewReader(b), int64(len(b))); err != nil || p.Trailer.Confirmed() {
		t.Fatalf("unconfirmed trailer: %v", err)
	}
}

// imgtoolLong names imgtool's short options by their long names.
var imgtoolLong = map[string]string{"-H": "header-size", "-S": "slot-size", "-L": "load-addr", "-F": "rom-fixed", "-M": "max-sectors", "-R": "erased-val"}

// TestOptionsFromImgtool reads each parity case's imgtool arguments by
// name: Sign writes the same Ed25519 image as with the case's Options.
func TestOptionsFromImgtool(t *testing.T) {
	switches := map[string]bool{}
	for _, o := range mcuboot.ImgtoolOptions() {
		switches[o.Name] = o.Switch
	}
	for _, tc := range parityCases() {
		given := map[string]string{}
		var secCnt uint64
		for i := 0; i < len(tc.args); i++ {
			name := strings.TrimPrefix(tc.args[i], "--")
			if long, ok := imgtoolLong[tc.args[i]]; ok {
				name = long
			}
			switch {
			case tc.args[i] == "-s":
				i++
				n, err := strconv.ParseUint(tc.args[i], 0, 64)
				if err != nil {
					t.Fatal(err)
				}
				secCnt = n
			case switches[name]:
				given[name] = "true"
			default:
				i++
				given[name] = tc.args[i]
			}
		}
		opts, err := mcuboot.OptionsFromImgtool(tc.version, secCnt, given)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body := firmware(3000, 1)
		if tc.body != nil {
			body = tc.body()
		}
		if !bytes.Equal(sign(t, body, opts, testkeys.Ed25519(3)), sign(t, body, tc.opts, testkeys.Ed25519(3))) {
			t.Errorf("%s: %v read as %+v, want %+v", tc.name, given, opts, tc.opts)
		}
	}
}

func TestOptionsFromImgtoolRefuses(t *testing.T) {
	base := func(extra ...string) map[string]string {
		m := map[string]string{"header-size": "0x200", "slot-size": "0x8000"}
		for i := 0; i < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name, version string
		secCnt        uint64
		given         map[string]string
		want          string
	}{
		{"no header size", "1.0.0", 1, map[string]string{"slot-size": "0x8000"}, "--header-size is required"},
		{"no slot size", "1.0.0", 1, map[string]string{"header-size": "0x200"}, "--slot-size is required"},
		{"pre-release", "1.0.0-rc.1", 1, base(), "pre-release"},
		{"security counter", "1.0.0", 1 << 32, base(), "4294967295"},
		{"unknown option", "1.0.0", 1, base("key", "k.pem"), "no imgtool option --key"},
		{"bad number", "1.0.0", 1, base("align", "four"), "--align"},
		{"bad alignment", "1.0.0", 1, base("align", "3"), "alignment 3"},
		{"address over 32 bits", "1.0.0", 1, base("load-addr", "0x100000000"), "--load-addr"},
		{"erased value", "1.0.0", 1, base("erased-val", "1"), "--erased-val"},
		{"switch value", "1.0.0", 1, base("pad", "maybe"), "--pad"},
		{"load and fixed", "1.0.0", 1, base("load-addr", "0x1000", "rom-fixed", "0x2000"), "cannot be set together"},
		{"header too small", "1.0.0", 1, base("header-size", "16"), "header size 16"},
	} {
		_, err := mcuboot.OptionsFromImgtool(tc.version, tc.secCnt, tc.given)
		if !errors.Is(err, mcuboot.ErrInvalidOptions) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalidOptions naming %q", tc.name, err, tc.want)
		}
	}
	o, err := mcuboot.OptionsFromImgtool("1.2.3+4", 9, base("erased-val", "0", "confirm", "true", "pad-header", "false"))
	if err != nil || !o.EraseZero || !o.Confirm || o.PadHeader || o.Align != 1 || o.MaxSectors != mcuboot.DefaultMaxSectors ||
		o.SecurityCounter != 9 || o.Version.String() != "1.2.3+4" || o.HeaderSize != 0x200 || o.SlotSize != 0x8000 {
		t.Fatalf("%+v %v", o, err)
	}
}
