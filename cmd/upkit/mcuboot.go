package main

// MCUboot images in the CLI: `upkit pack --format mcuboot`, `upkit verify`
// and `upkit inspect` of an MCUboot image, `upkit release create --mcuboot`.
// The format is package mcuboot; this file only parses flags and prints.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/pubkey"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/mcuboot"
)

// Pack formats.
const (
	formatUPK     = "upk"
	formatMCUboot = "mcuboot"
)

// mcubootPackFlags are the pack flags of --format mcuboot: imgtool sign's
// options, with its names and defaults.
func mcubootPackFlags() []cli.Flag {
	cat := "MCUboot (--format mcuboot; imgtool sign's options)"
	return []cli.Flag{
		&cli.StringFlag{Name: "format", Value: formatUPK, Usage: "output `FORMAT`: upk (an upkit image package) or mcuboot (an MCUboot image, as imgtool sign writes it)"},
		&cli.Int64Flag{Category: cat, Name: "header-size", Usage: "header area `BYTES` before the firmware (imgtool -H), e.g. 0x200"},
		&cli.Int64Flag{Category: cat, Name: "slot-size", Usage: "size of the MCU's image slot in `BYTES` (imgtool -S); the image and its trailer must fit"},
		&cli.BoolFlag{Category: cat, Name: "pad-header", Usage: "prepend --header-size erased bytes to INPUT (imgtool --pad-header); without it INPUT must start with that many zero bytes"},
		&cli.BoolFlag{Category: cat, Name: "pad", Usage: "pad the image to --slot-size with a trailer asking MCUboot to install it (imgtool --pad)"},
		&cli.BoolFlag{Category: cat, Name: "confirm", Usage: "pad and mark the image confirmed, permanent (imgtool --confirm)"},
		&cli.BoolFlag{Category: cat, Name: "test", Usage: "pad and mark the image for a test swap (imgtool --test)"},
		&cli.IntFlag{Category: cat, Name: "align", Value: 1, Usage: "flash write alignment `N` of the trailer: 1, 2, 4, 8, 16 or 32 (imgtool --align)"},
		&cli.IntFlag{Category: cat, Name: "max-align", Usage: "largest write alignment `N` of the slots: 8, 16 or 32 (imgtool --max-align; default max(8, --align))"},
		&cli.IntFlag{Category: cat, Name: "max-sectors", Value: mcuboot.DefaultMaxSectors, Usage: "sectors `N` of the trailer's swap status (imgtool -M)"},
		&cli.BoolFlag{Category: cat, Name: "overwrite-only", Usage: "trailer for overwrite-only upgrades (imgtool --overwrite-only)"},
		&cli.Uint64Flag{Category: cat, Name: "load-addr", Usage: "RAM load `ADDRESS`; sets the RAM_LOAD flag (imgtool -L)"},
		&cli.Uint64Flag{Category: cat, Name: "rom-fixed", Usage: "flash `ADDRESS` the image is built for; sets ROM_FIXED (imgtool -F)"},
		&cli.StringFlag{Category: cat, Name: "erased-val", Value: "0xff", Usage: "`VALUE` of erased flash, for padding: 0xff or 0 (imgtool -R)"},
	}
}

// mcubootPackOnly are the flags that mean nothing for an image package.
var mcubootPackOnly = []string{"header-size", "slot-size", "pad-header", "pad", "confirm", "test", "align", "max-align",
	"max-sectors", "overwrite-only", "load-addr", "rom-fixed", "erased-val"}

// packCheckFormat refuses flags of the other format; it returns true for
// --format mcuboot.
func packCheckFormat(c *cli.Context) (bool, error) {
	switch f := c.String("format"); f {
	case formatUPK:
		for _, n := range mcubootPackOnly {
			if c.IsSet(n) {
				return false, usageError("--%s is an MCUboot option: add --format mcuboot", n)
			}
		}
		for _, n := range []string{"type", "component", "hardware"} {
			if !c.IsSet(n) {
				return false, usageError("--%s is required", n)
			}
		}
		return false, nil
	case formatMCUboot:
		for _, n := range []string{"component", "hardware"} {
			if c.IsSet(n) {
				return true, usageError("--%s: an MCUboot image has no %s field; name it in the release: upkit release create --mcuboot COMPONENT@HW=FILE", n, n)
			}
		}
		if c.IsSet("compress") {
			return true, usageError("--compress: MCUboot images are stored as MCUboot boots them, uncompressed")
		}
		if t := c.String("type"); t != "" && t != imagepkg.TypeFirmware {
			return true, usageError("--type %q: an MCUboot image is firmware", t)
		}
		return true, nil
	default:
		return false, usageError("--format %q: want upk or mcuboot", f)
	}
}

// packMCUbootAction writes an MCUboot image (pack --format mcuboot).
func packMCUbootAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one INPUT firmware file"); err != nil {
		return err
	}
	input, out := c.Args().First(), c.String("output")
	opts, err := mcubootOptions(c)
	if err != nil {
		return err
	}
	in, err := os.Open(input)
	if err != nil {
		return fmt.Errorf("input: %w", err)
	}
	defer in.Close()
	if fi, err := in.Stat(); err != nil {
		return fmt.Errorf("input: %w", err)
	} else if !fi.Mode().IsRegular() {
		return usageError("input %s: an MCUboot image is made from one firmware file", input)
	}
	signer, err := loadSigner(c, c.String("key"))
	if err != nil {
		return err
	}
	img, err := mcuboot.Sign(c.Context, in, opts, signer)
	if err != nil {
		if errors.Is(err, mcuboot.ErrInvalidOptions) || errors.Is(err, mcuboot.ErrTooLarge) {
			return usageError("%v", err)
		}
		return err
	}
	if err := atomicWrite(out, func(w io.Writer) error { _, err := w.Write(img); return err }); err != nil {
		return err
	}
	sum := sha256.Sum256(img)
	parsed, err := mcuboot.Parse(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		return err // cannot happen: Sign wrote it
	}
	fmt.Fprintf(c.App.ErrWriter, "packed MCUboot image %s (security counter %d, firmware %s, %s) into %s: %s, signed by %s (%s)\n",
		parsed.Header.Version, parsed.SecurityCounter, humanSize(int64(parsed.Header.ImageSize)), mcubootPadNote(parsed),
		out, humanSize(int64(len(img))), signer.KeyID(), parsed.Algorithm())
	fmt.Fprintln(c.App.Writer, "sha256:"+hex.EncodeToString(sum[:]))
	return nil
}

// mcubootOptions reads the pack flags into Sign options.
func mcubootOptions(c *cli.Context) (mcuboot.Options, error) {
	var o mcuboot.Options
	v, err := mcuboot.ParseVersion(c.String("version"))
	if err != nil {
		return o, usageError("--version: %v", err)
	}
	sv := c.Uint64("security-version")
	if sv > 0xffffffff {
		return o, usageError("--security-version %d: an MCUboot security counter (SEC_CNT) holds at most 4294967295", sv)
	}
	for _, n := range []string{"header-size", "slot-size"} {
		if !c.IsSet(n) {
			return o, usageError("--format mcuboot needs --%s (imgtool has no default for it either)", n)
		}
	}
	addr := func(name string) (uint32, error) {
		a := c.Uint64(name)
		if a > 0xffffffff {
			return 0, usageError("--%s 0x%x: an MCUboot header holds a 32-bit address", name, a)
		}
		return uint32(a), nil
	}
	o = mcuboot.Options{
		Version: v, SecurityCounter: uint32(sv),
		HeaderSize: int(min(c.Int64("header-size"), 1<<20)), SlotSize: c.Int64("slot-size"),
		PadHeader: c.Bool("pad-header"), Pad: c.Bool("pad"), Confirm: c.Bool("confirm"), Test: c.Bool("test"),
		Align: c.Int("align"), MaxAlign: c.Int("max-align"), MaxSectors: c.Int("max-sectors"),
		OverwriteOnly: c.Bool("overwrite-only"),
	}
	if o.LoadAddr, err = addr("load-addr"); err != nil {
		return o, err
	}
	if o.ROMFixed, err = addr("rom-fixed"); err != nil {
		return o, err
	}
	switch e := strings.ToLower(c.String("erased-val")); e {
	case "0xff":
	case "0":
		o.EraseZero = true
	default:
		return o, usageError("--erased-val %q: want 0xff or 0", c.String("erased-val"))
	}
	if _, err := o.TrailerSize(); err != nil { // checks the ranges
		return o, usageError("%v", err)
	}
	return o, nil
}

func mcubootPadNote(img *mcuboot.Image) string {
	switch {
	case img.Trailer == nil:
		return "unpadded"
	case img.Trailer.Confirmed():
		return "padded to the slot, confirmed"
	default:
		return "padded to the slot"
	}
}

// isMCUbootFile reports whether the file starts with the MCUboot magic.
func isMCUbootFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [4]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return false
	}
	return binary.LittleEndian.Uint32(b[:]) == mcuboot.Magic
}

// mcubootInfo is what inspect and verify print for an MCUboot image with
// --json.
type mcubootInfo struct {
	File            string              `json:"file"`
	Format          string              `json:"format"`
	Verified        *bool               `json:"verified,omitempty"`
	Error           string              `json:"error,omitempty"`
	PackageDigest   string              `json:"packageDigest,omitempty"`
	PackageSize     int64               `json:"packageSize,omitempty"`
	Version         string              `json:"version,omitempty"`
	SecurityCounter *uint32             `json:"securityCounter,omitempty"`
	Header          *mcubootHeaderInfo  `json:"header,omitempty"`
	ImageHash       string              `json:"imageHash,omitempty"` // the SHA256 TLV
	HashCheck       string              `json:"hashCheck,omitempty"`
	KeyID           string              `json:"keyId,omitempty"` // the KEYHASH TLV
	Algorithm       string              `json:"algorithm,omitempty"`
	Signature       string              `json:"signature,omitempty"`
	ProtectedTLVs   []mcubootTLVInfo    `json:"protectedTlvs,omitempty"`
	TLVs            []mcubootTLVInfo    `json:"tlvs,omitempty"`
	Trailer         *mcubootTrailerInfo `json:"trailer,omitempty"`
}

type mcubootHeaderInfo struct {
	Magic            string   `json:"magic"`
	LoadAddr         string   `json:"loadAddr"`
	HeaderSize       uint16   `json:"headerSize"`
	ProtectedTLVSize uint16   `json:"protectedTlvSize"`
	ImageSize        uint32   `json:"imageSize"`
	Flags            uint32   `json:"flags"`
	FlagNames        []string `json:"flagNames,omitempty"`
	Version          string   `json:"version"` // as imgtool prints it: MAJOR.MINOR.REVISION+BUILD
}

type mcubootTLVInfo struct {
	Offset int64  `json:"offset"`
	Type   uint16 `json:"type"`
	Name   string `json:"name"`
	Len    int    `json:"len"`
	Value  string `json:"value"` // hex
}

type mcubootTrailerInfo struct {
	Offset    int64  `json:"offset"`
	Size      int64  `json:"size"`
	MaxAlign  int    `json:"maxAlign"`
	Erased    string `json:"erased"`
	ImageOK   string `json:"imageOk"`
	Confirmed bool   `json:"confirmed"`
}

// mcubootOpen parses the image file at path and returns it with its file
// digest; the file is read once (the region hash comes from Verify).
func mcubootOpen(path string) (*os.File, *mcuboot.Image, *mcubootInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	info := &mcubootInfo{File: path, Format: formatMCUboot, PackageSize: fi.Size()}
	img, err := mcuboot.Parse(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, nil, info, err
	}
	d, _, err := pkgFileDigest(path)
	if err != nil {
		f.Close()
		return nil, nil, info, err
	}
	info.PackageDigest = d
	mcubootFill(info, img)
	return f, img, info, nil
}

func mcubootFill(info *mcubootInfo, img *mcuboot.Image) {
	h := img.Header
	info.Version = h.Version.String()
	if img.HasSecurityCounter {
		sc := img.SecurityCounter
		info.SecurityCounter = &sc
	}
	info.Header = &mcubootHeaderInfo{
		Magic: fmt.Sprintf("0x%08x", h.Magic), LoadAddr: fmt.Sprintf("0x%x", h.LoadAddr), HeaderSize: h.HeaderSize,
		ProtectedTLVSize: h.ProtectedTLVSize, ImageSize: h.ImageSize, Flags: h.Flags, FlagNames: mcuboot.FlagNames(h.Flags),
		Version: h.Version.ImgtoolString(),
	}
	info.ImageHash = hex.EncodeToString(img.Hash)
	info.KeyID = img.KeyID()
	info.Algorithm = img.Algorithm()
	info.Signature = hex.EncodeToString(img.Signature)
	tlvs := func(in []mcuboot.TLV) []mcubootTLVInfo {
		var out []mcubootTLVInfo
		for _, t := range in {
			out = append(out, mcubootTLVInfo{Offset: t.Offset, Type: t.Type, Name: mcuboot.TLVName(t.Type), Len: len(t.Value), Value: hex.EncodeToString(t.Value)})
		}
		return out
	}
	info.ProtectedTLVs, info.TLVs = tlvs(img.ProtectedTLVs), tlvs(img.TLVs)
	if t := img.Trailer; t != nil {
		info.Trailer = &mcubootTrailerInfo{Offset: t.Offset, Size: t.Size, MaxAlign: t.MaxAlign,
			Erased: fmt.Sprintf("0x%02x", t.Erased), ImageOK: fmt.Sprintf("0x%02x", t.ImageOK), Confirmed: t.Confirmed()}
	}
}

// mcubootVerifyAction is `upkit verify` of an MCUboot image: hash, key
// hash and signature against the --key public keys, as MCUboot checks them.
func mcubootVerifyAction(c *cli.Context, path string, keys []*pubkey.Key) error {
	if c.IsSet("extract") {
		return usageError("--extract: an MCUboot image is what the MCU flashes; there is no payload to extract")
	}
	f, img, info, err := mcubootOpen(path)
	fail := func(err error) error {
		if c.Bool("json") && info != nil {
			no := false
			info.Verified, info.Error = &no, err.Error()
			if perr := printJSON(c.App.Writer, info); perr != nil {
				return perr
			}
		}
		return verifyError(fmt.Errorf("%s: %w", path, err))
	}
	if err != nil {
		if info == nil {
			return err
		}
		return fail(err)
	}
	defer f.Close()
	key, err := img.Verify(c.Context, f, keys...)
	if err != nil {
		if !mcubootIsImageError(err) && !c.Bool("json") {
			return err
		}
		return fail(err)
	}
	info.HashCheck = "ok"
	if c.Bool("json") {
		yes := true
		info.Verified = &yes
		return printJSON(c.App.Writer, info)
	}
	sc := "none"
	if img.HasSecurityCounter {
		sc = fmt.Sprint(img.SecurityCounter)
	}
	fmt.Fprintf(c.App.ErrWriter, "verified MCUboot image %s: version %s, security counter %s, firmware %s, signed by %s (%s), image hash %s\n",
		path, img.Header.Version, sc, humanSize(int64(img.Header.ImageSize)), key.ID, key.Algorithm, info.ImageHash)
	return nil
}

// mcubootInspectAction is `upkit inspect` of an MCUboot image: every header
// field and TLV, the trailer, and a check of the image hash (not of the
// signature).
func mcubootInspectAction(c *cli.Context, path string) error {
	f, img, info, err := mcubootOpen(path)
	if err != nil {
		return verifyError(fmt.Errorf("%s: %w", path, err))
	}
	defer f.Close()
	// Verify with no key checks the hash first; ErrSignature or
	// ErrUnknownKey after it means the hash held.
	_, herr := img.Verify(c.Context, f)
	if herr != nil && (errors.Is(herr, mcuboot.ErrUnknownKey) || errors.Is(herr, mcuboot.ErrSignature)) {
		herr = nil
	}
	info.HashCheck = "ok"
	if herr != nil {
		info.HashCheck = herr.Error()
	}
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, info); err != nil {
			return err
		}
	} else {
		mcubootPrint(c.App.Writer, info)
	}
	if herr != nil {
		return verifyError(fmt.Errorf("%s: %w", path, herr))
	}
	return nil
}

func mcubootPrint(w io.Writer, info *mcubootInfo) {
	var b strings.Builder
	row := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "%-18s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	h := info.Header
	row("File", "%s", info.File)
	row("Format", "MCUboot image")
	row("Package digest", "%s", info.PackageDigest)
	row("Package size", "%d bytes (%s)", info.PackageSize, humanSize(info.PackageSize))
	row("Version", "%s (header %s)", info.Version, h.Version)
	if info.SecurityCounter != nil {
		row("Security counter", "%d", *info.SecurityCounter)
	} else {
		row("Security counter", "none (no SEC_CNT TLV)")
	}
	row("Header size", "%d bytes (0x%x)", h.HeaderSize, h.HeaderSize)
	row("Firmware size", "%d bytes (0x%x)", h.ImageSize, h.ImageSize)
	row("Load address", "%s", h.LoadAddr)
	flags := "none"
	if len(h.FlagNames) > 0 {
		flags = strings.Join(h.FlagNames, ", ")
	}
	row("Flags", "0x%x (%s)", h.Flags, flags)
	row("Protected TLVs", "%d bytes", h.ProtectedTLVSize)
	for _, t := range info.ProtectedTLVs {
		row("  "+t.Name, "%s", t.Value)
	}
	row("TLVs", "")
	for _, t := range info.TLVs {
		row("  "+t.Name, "%s", t.Value)
	}
	if info.KeyID != "" {
		row("Key ID", "%s", info.KeyID)
		row("Algorithm", "%s", info.Algorithm)
		row("Signature", "%d bytes (not checked: use upkit verify --key)", len(info.Signature)/2)
	} else {
		row("Signature", "none: the image is not signed")
	}
	if t := info.Trailer; t != nil {
		state := "install on next boot (test)"
		if t.Confirmed {
			state = "install permanently (confirmed)"
		}
		row("Trailer", "%d bytes at 0x%x, max alignment %d, erased %s, image_ok %s: %s", t.Size, t.Offset, t.MaxAlign, t.Erased, t.ImageOK, state)
	}
	row("Image hash", "%s", info.ImageHash)
	row("Hash check", "%s", info.HashCheck)
	io.WriteString(w, b.String())
}

// mcubootIsImageError tells verification failures from I/O errors.
func mcubootIsImageError(err error) bool {
	for _, e := range []error{mcuboot.ErrMagic, mcuboot.ErrTruncated, mcuboot.ErrMalformed, mcuboot.ErrUnsupported,
		mcuboot.ErrTrailingData, mcuboot.ErrTooLarge, mcuboot.ErrHash, mcuboot.ErrUnknownKey, mcuboot.ErrSignature,
		mcuboot.ErrSecurityCounter} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// mcubootReleaseFlag is release create's flag for MCUboot images.
func mcubootReleaseFlag() cli.Flag {
	return &cli.GenericFlag{Name: "mcuboot", Value: &mcubootSpecs{},
		Usage: "MCUboot image to list, as `COMPONENT@HW[,HW...]=FILE`: the component and hardware it is for (an MCUboot image names neither) (repeatable)"}
}

// mcubootSpecs collects repeated --mcuboot values whole (a string slice
// flag would split them at the commas of the hardware list).
type mcubootSpecs struct{ specs []string }

func (m *mcubootSpecs) Set(s string) error { m.specs = append(m.specs, s); return nil }
func (m *mcubootSpecs) String() string {
	if m == nil {
		return ""
	}
	return strings.Join(m.specs, " ")
}

// mcubootSpecsOf returns the --mcuboot values of a command.
func mcubootSpecsOf(c *cli.Context) []string {
	if m, ok := c.Generic("mcuboot").(*mcubootSpecs); ok && m != nil {
		return m.specs
	}
	return nil
}

// mfReadMCUboot reads an MCUboot image named by a --mcuboot spec and returns
// its release entry: component and hardware from the spec, type firmware,
// version and security version from the image's header and SEC_CNT, and the
// image file as both package and payload (the device installs the file as
// it is). With keys, the image must verify against one of them.
func mfReadMCUboot(ctx context.Context, spec string, keys []*pubkey.Key) (*manifest.Image, error) {
	compHW, path, ok := strings.Cut(spec, "=")
	comp, hw, ok2 := strings.Cut(compHW, "@")
	if !ok || !ok2 || comp == "" || hw == "" || path == "" {
		return nil, usageError("--mcuboot %q: want COMPONENT@HW[,HW...]=FILE", spec)
	}
	if err := imagepkg.ValidateComponent(comp); err != nil {
		return nil, usageError("--mcuboot %q: %v", spec, err)
	}
	var hardware []string
	seen := map[string]bool{}
	for _, h := range strings.Split(hw, ",") {
		if err := imagepkg.ValidateHardware(h); err != nil {
			return nil, usageError("--mcuboot %q: %v", spec, err)
		}
		if seen[h] {
			return nil, usageError("--mcuboot %q: hardware %q given twice", spec, h)
		}
		seen[h] = true
		hardware = append(hardware, h)
	}
	f, img, info, err := mcubootOpen(path)
	if err != nil {
		if info == nil {
			return nil, err
		}
		return nil, verifyError(fmt.Errorf("--mcuboot %s: %w", path, err))
	}
	defer f.Close()
	if len(keys) > 0 {
		if _, err := img.Verify(ctx, f, keys...); err != nil {
			return nil, verifyError(fmt.Errorf("--mcuboot %s: %w", path, err))
		}
	} else if _, err := img.Verify(ctx, f); errors.Is(err, mcuboot.ErrHash) || errors.Is(err, mcuboot.ErrTruncated) {
		return nil, verifyError(fmt.Errorf("--mcuboot %s: %w", path, err))
	}
	if !img.HasSecurityCounter {
		return nil, verifyError(fmt.Errorf("--mcuboot %s: %w: no SEC_CNT TLV: sign it with a security counter (upkit pack --security-version, imgtool -s)", path, mcuboot.ErrSecurityCounter))
	}
	blob := manifest.Blob{Digest: info.PackageDigest, Size: info.PackageSize}
	return &manifest.Image{
		Component:       comp,
		Type:            imagepkg.TypeFirmware,
		Version:         img.Header.Version.String(),
		SecurityVersion: uint64(img.SecurityCounter),
		Hardware:        hardware,
		Package:         blob,
		Payload:         blob,
	}, nil
}
