package report

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/humanize"
	"github.com/upkit/upkit/spec"
)

// Package reports an image package.
type Package struct {
	File          string          `json:"file"`
	Verified      *bool           `json:"verified,omitempty"`
	Error         string          `json:"error,omitempty"`
	FormatVersion int             `json:"formatVersion,omitempty"`
	PackageDigest string          `json:"packageDigest,omitempty"`
	PackageSize   int64           `json:"packageSize,omitempty"`
	HeaderSize    int64           `json:"headerSize,omitempty"`
	KeyID         string          `json:"keyId,omitempty"`
	Algorithm     string          `json:"algorithm,omitempty"`
	Signature     string          `json:"signature,omitempty"` // hex
	PayloadCheck  string          `json:"payloadCheck,omitempty"`
	Extracted     string          `json:"extractedTo,omitempty"`
	Metadata      json.RawMessage `json:"metadata,omitempty"` // exactly as signed

	meta *imagepkg.Metadata
}

// NewPackage reports the package p read from path.
func NewPackage(path string, p *imagepkg.Reader) *Package {
	return &Package{
		File:          path,
		FormatVersion: p.FormatVersion,
		HeaderSize:    p.HeaderSize,
		KeyID:         p.KeyID,
		Algorithm:     p.Algorithm,
		Signature:     hex.EncodeToString(p.Signature),
		Metadata:      json.RawMessage(p.MetadataBytes),
		meta:          &p.Metadata,
	}
}

// Summary implements Report.
func (p *Package) Summary() string {
	m := p.meta
	if m == nil {
		return "package " + p.File
	}
	s := fmt.Sprintf("verified %s: %s %s (%s, security version %d, hardware %v), signed by %s (%s), payload %s %s",
		p.File, m.Component, m.Version, m.Type, m.SecurityVersion, m.Hardware, p.KeyID, p.Algorithm,
		humanize.Bytes(m.Payload.Size), m.Payload.SHA256)
	if p.Extracted != "" {
		s += fmt.Sprintf("\nextracted the %s payload to %s", m.Payload.Kind, p.Extracted)
	}
	return s
}

// WriteText implements Report.
func (p *Package) WriteText(w io.Writer) error {
	if p.meta == nil {
		_, err := fmt.Fprintf(w, "%s: %s\n", p.File, p.Error)
		return err
	}
	m := p.meta
	pi := m.Payload
	var b strings.Builder
	row := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "%-18s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	row("File", "%s", p.File)
	row("Format", "upkit image package v%d", p.FormatVersion)
	if p.PackageDigest != "" {
		row("Package digest", "%s", p.PackageDigest)
		row("Package size", "%d bytes (%s)", p.PackageSize, humanize.Bytes(p.PackageSize))
	}
	row("Header size", "%d bytes", p.HeaderSize)
	row("Component", "%s", m.Component)
	row("Type", "%s", m.Type)
	row("Version", "%s", m.Version)
	row("Security version", "%d", m.SecurityVersion)
	row("Hardware", "%s", strings.Join(m.Hardware, ", "))
	row("Created", "%s", spec.FormatTime(m.Created))
	row("Schema version", "%d", m.SchemaVersion)
	row("Payload kind", "%s", pi.Kind)
	row("Compression", "%s", pi.Compression)
	row("Payload size", "%d bytes (%s)", pi.Size, humanize.Bytes(pi.Size))
	row("Stored size", "%d bytes (%s)", pi.StoredSize, humanize.Bytes(pi.StoredSize))
	row("Payload digest", "%s", pi.SHA256)
	row("Key ID", "%s", p.KeyID)
	row("Algorithm", "%s", p.Algorithm)
	row("Signature", "%d bytes (not checked: use upkit verify --key)", len(p.Signature)/2)
	if p.PayloadCheck != "" {
		row("Payload check", "%s", p.PayloadCheck)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
