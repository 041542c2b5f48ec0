package report

import (
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/upkit/upkit/internal/humanize"
	"github.com/upkit/upkit/internal/mcubootfile"
	"github.com/upkit/upkit/mcuboot"
	"github.com/upkit/upkit/spec"
)

// MCUboot reports an MCUboot image: every header field and TLV, the key
// hash, the security counter and the trailer.
type MCUboot struct {
	File            string       `json:"file"`
	Format          string       `json:"format"`
	Verified        *bool        `json:"verified,omitempty"`
	Error           string       `json:"error,omitempty"`
	PackageDigest   string       `json:"packageDigest,omitempty"`
	PackageSize     int64        `json:"packageSize,omitempty"`
	Version         string       `json:"version,omitempty"`
	SecurityCounter *uint32      `json:"securityCounter,omitempty"`
	Header          *HeaderInfo  `json:"header,omitempty"`
	ImageHash       string       `json:"imageHash,omitempty"` // the SHA256 TLV
	HashCheck       string       `json:"hashCheck,omitempty"`
	KeyID           string       `json:"keyId,omitempty"` // the KEYHASH TLV
	Algorithm       string       `json:"algorithm,omitempty"`
	Signature       string       `json:"signature,omitempty"` // hex
	ProtectedTLVs   []TLVInfo    `json:"protectedTlvs,omitempty"`
	TLVs            []TLVInfo    `json:"tlvs,omitempty"`
	Trailer         *TrailerInfo `json:"trailer,omitempty"`

	title    string          // mcubootfile.File.Summary
	signedBy *spec.PublicKey // the key that verified
}

// HeaderInfo is the image header.
type HeaderInfo struct {
	Magic            string   `json:"magic"`
	LoadAddr         string   `json:"loadAddr"`
	HeaderSize       uint16   `json:"headerSize"`
	ProtectedTLVSize uint16   `json:"protectedTlvSize"`
	ImageSize        uint32   `json:"imageSize"`
	Flags            uint32   `json:"flags"`
	FlagNames        []string `json:"flagNames,omitempty"`
	Version          string   `json:"version"` // as imgtool prints it: MAJOR.MINOR.REVISION+BUILD
}

// TLVInfo is one TLV.
type TLVInfo struct {
	Offset int64  `json:"offset"`
	Type   uint16 `json:"type"`
	Name   string `json:"name"`
	Len    int    `json:"len"`
	Value  string `json:"value"` // hex
}

// TrailerInfo is the padding imgtool --pad writes.
type TrailerInfo struct {
	Offset    int64  `json:"offset"`
	Size      int64  `json:"size"`
	MaxAlign  int    `json:"maxAlign"`
	Erased    string `json:"erased"`
	ImageOK   string `json:"imageOk"`
	Confirmed bool   `json:"confirmed"`
}

// NewMCUboot reports the image file f.
func NewMCUboot(f *mcubootfile.File) *MCUboot {
	img := f.Image
	h := img.Header
	m := &MCUboot{File: f.Path, Format: mcubootfile.Format, PackageDigest: f.Digest, PackageSize: f.Size, Version: h.Version.String(),
		Header: &HeaderInfo{
			Magic: fmt.Sprintf("0x%08x", h.Magic), LoadAddr: fmt.Sprintf("0x%x", h.LoadAddr), HeaderSize: h.HeaderSize,
			ProtectedTLVSize: h.ProtectedTLVSize, ImageSize: h.ImageSize, Flags: h.Flags, FlagNames: mcuboot.FlagNames(h.Flags),
			Version: h.Version.ImgtoolString(),
		},
		ImageHash: hex.EncodeToString(img.Hash), KeyID: img.KeyID(), Algorithm: img.Algorithm(), Signature: hex.EncodeToString(img.Signature),
		ProtectedTLVs: tlvInfos(img.ProtectedTLVs), TLVs: tlvInfos(img.TLVs), title: f.Summary(),
	}
	if img.HasSecurityCounter {
		sc := img.SecurityCounter
		m.SecurityCounter = &sc
	}
	if t := img.Trailer; t != nil {
		m.Trailer = &TrailerInfo{Offset: t.Offset, Size: t.Size, MaxAlign: t.MaxAlign,
			Erased: fmt.Sprintf("0x%02x", t.Erased), ImageOK: fmt.Sprintf("0x%02x", t.ImageOK), Confirmed: t.Confirmed()}
	}
	return m
}

func tlvInfos(in []mcuboot.TLV) []TLVInfo {
	var out []TLVInfo
	for _, t := range in {
		out = append(out, TLVInfo{Offset: t.Offset, Type: t.Type, Name: mcuboot.TLVName(t.Type), Len: len(t.Value), Value: hex.EncodeToString(t.Value)})
	}
	return out
}

// Summary implements Report.
func (m *MCUboot) Summary() string {
	if m.signedBy == nil {
		return m.title
	}
	return fmt.Sprintf("verified %s: %s, signed by %s (%s), image hash %s", m.File, m.title, m.signedBy.ID, m.signedBy.Algorithm, m.ImageHash)
}

// WriteText implements Report.
func (info *MCUboot) WriteText(w io.Writer) error {
	var b strings.Builder
	row := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "%-18s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	h := info.Header
	row("File", "%s", info.File)
	row("Format", "MCUboot image")
	row("Package digest", "%s", info.PackageDigest)
	row("Package size", "%d bytes (%s)", info.PackageSize, humanize.Bytes(info.PackageSize))
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
	if info.HashCheck != "" {
		row("Hash check", "%s", info.HashCheck)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
