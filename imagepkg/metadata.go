package imagepkg

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/upkit/upkit/spec"
)

// Image types.
const (
	TypeOS         = "os"
	TypeApp        = "app"
	TypeFirmware   = "firmware"
	TypeBootloader = "bootloader"
)

// Payload kinds: a single file, or a directory packed as a tar archive.
const (
	KindFile = "file"
	KindTar  = "tar"
)

// Payload compressions.
const (
	CompressionNone = "none"
	CompressionZstd = "zstd"
)

// Metadata is the signed description of a package's image.
//
// Its JSON form has exactly these fields, in this order, all required:
//
//	{"schemaVersion":1,"component":"...","type":"os|app|firmware|bootloader",
//	 "version":"SEMVER","securityVersion":N,"hardware":["..."],
//	 "created":"YYYY-MM-DDTHH:MM:SSZ",
//	 "payload":{"kind":"file|tar","compression":"none|zstd","size":N,
//	            "sha256":"sha256:<64 lowercase hex>","storedSize":N}}
type Metadata struct {
	SchemaVersion   int         // SchemaVersion (1)
	Component       string      // spec.CheckName: [a-z0-9][a-z0-9._-]{0,63}, no ".."
	Type            string      // TypeOS, TypeApp, TypeFirmware or TypeBootloader
	Version         string      // semantic version 2.0.0, no "v" prefix, at most MaxStringSize bytes
	SecurityVersion uint64      // anti-rollback counter
	Hardware        []string    // 1..MaxHardware distinct compatible hardware names
	Created         time.Time   // UTC, whole seconds, years 1970..9999
	Payload         PayloadInfo // what follows the header
}

// PayloadInfo describes the payload.
type PayloadInfo struct {
	Kind        string // KindFile or KindTar
	Compression string // CompressionNone or CompressionZstd
	Size        int64  // bytes of the uncompressed payload
	SHA256      string // "sha256:<hex>" of the uncompressed payload
	StoredSize  int64  // bytes of the payload as stored in the package (== Size when uncompressed)
}

// wire forms: the exact JSON field names and order.
type wireMetadata struct {
	SchemaVersion   int         `json:"schemaVersion"`
	Component       string      `json:"component"`
	Type            string      `json:"type"`
	Version         string      `json:"version"`
	SecurityVersion uint64      `json:"securityVersion"`
	Hardware        []string    `json:"hardware"`
	Created         string      `json:"created"`
	Payload         wirePayload `json:"payload"`
}

type wirePayload struct {
	Kind        string `json:"kind"`
	Compression string `json:"compression"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	StoredSize  int64  `json:"storedSize"`
}

// metadataFields lists every member name of the metadata (and its payload
// object), for spec's strict JSON reader.
func metadataFields() []string {
	return []string{"schemaVersion", "component", "type", "version", "securityVersion", "hardware", "created", "payload",
		"kind", "compression", "size", "sha256", "storedSize"}
}

// MarshalMetadata validates m and returns its canonical JSON encoding: the
// fields in the documented order, no insignificant whitespace, no HTML
// escaping, no trailing newline. The same Metadata always gives the same
// bytes.
func MarshalMetadata(m *Metadata) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	w := wireMetadata{
		SchemaVersion:   m.SchemaVersion,
		Component:       m.Component,
		Type:            m.Type,
		Version:         m.Version,
		SecurityVersion: m.SecurityVersion,
		Hardware:        m.Hardware,
		Created:         spec.FormatTime(m.Created),
		Payload: wirePayload{
			Kind:        m.Payload.Kind,
			Compression: m.Payload.Compression,
			Size:        m.Payload.Size,
			SHA256:      m.Payload.SHA256,
			StoredSize:  m.Payload.StoredSize,
		},
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&w); err != nil {
		return nil, fmt.Errorf("imagepkg: encoding metadata: %w", err)
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(out) > MaxMetadataSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMetadataTooLarge, len(out), MaxMetadataSize)
	}
	return out, nil
}

// ParseMetadata decodes and validates metadata JSON strictly: the input must
// be valid UTF-8 of at most MaxMetadataSize bytes holding exactly one JSON
// object with exactly the documented fields (unknown, missing, duplicate
// or null fields are errors), nothing after it, and values that pass
// Validate. Every error wraps ErrMetadata (or ErrMetadataTooLarge) and names
// the offending field.
func ParseMetadata(data []byte) (*Metadata, error) {
	if len(data) > MaxMetadataSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMetadataTooLarge, len(data), MaxMetadataSize)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMetadata)
	}
	// The top-level object holds the payload object and the hardware
	// array: nothing nests deeper.
	rules := spec.JSONRules{MaxDepth: 2, Fields: metadataFields()}
	var w wireMetadata
	if err := spec.CheckJSON(data, "metadata", rules); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMetadata, err)
	}
	if err := spec.DecodeJSON(data, "metadata", &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMetadata, err)
	}
	m := &Metadata{
		SchemaVersion:   w.SchemaVersion,
		Component:       w.Component,
		Type:            w.Type,
		Version:         w.Version,
		SecurityVersion: w.SecurityVersion,
		Hardware:        w.Hardware,
		Payload: PayloadInfo{
			Kind:        w.Payload.Kind,
			Compression: w.Payload.Compression,
			Size:        w.Payload.Size,
			SHA256:      w.Payload.SHA256,
			StoredSize:  w.Payload.StoredSize,
		},
	}
	if w.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("%w: field schemaVersion: %d is not supported (want %d)", ErrMetadata, w.SchemaVersion, SchemaVersion)
	}
	t, err := spec.ParseTime(w.Created)
	if err != nil {
		return nil, fmt.Errorf("%w: field created: %v", ErrMetadata, err)
	}
	m.Created = t
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// Validate checks every field of m against the schema and returns an error
// wrapping ErrMetadata that names the first offending field.
func (m *Metadata) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: field %s: %s", ErrMetadata, field, fmt.Sprintf(format, args...))
	}
	if m.SchemaVersion != SchemaVersion {
		return bad("schemaVersion", "%d is not supported (want %d)", m.SchemaVersion, SchemaVersion)
	}
	if err := spec.CheckName(m.Component); err != nil {
		return bad("component", "%v", err)
	}
	switch m.Type {
	case TypeOS, TypeApp, TypeFirmware, TypeBootloader:
	default:
		return bad("type", "%q is not one of os, app, firmware, bootloader", truncate(m.Type))
	}
	if err := spec.CheckSemver(m.Version); err != nil {
		return bad("version", "%v", err)
	}
	if len(m.Hardware) == 0 {
		return bad("hardware", "at least one compatible hardware name is required")
	}
	if len(m.Hardware) > MaxHardware {
		return bad("hardware", "%d entries, limit %d", len(m.Hardware), MaxHardware)
	}
	seen := make(map[string]bool, len(m.Hardware))
	for i, h := range m.Hardware {
		if err := spec.CheckHardware(h); err != nil {
			return bad(fmt.Sprintf("hardware[%d]", i), "%v", err)
		}
		if seen[h] {
			return bad(fmt.Sprintf("hardware[%d]", i), "duplicate %q", h)
		}
		seen[h] = true
	}
	if m.Created.Location() != time.UTC {
		return bad("created", "not in UTC")
	}
	if err := spec.CheckTime(m.Created); err != nil {
		return bad("created", "%v", err)
	}
	p := m.Payload
	switch p.Kind {
	case KindFile, KindTar:
	default:
		return bad("payload.kind", "%q is not one of file, tar", truncate(p.Kind))
	}
	switch p.Compression {
	case CompressionNone, CompressionZstd:
	default:
		return bad("payload.compression", "%q is not one of none, zstd", truncate(p.Compression))
	}
	if p.Size < 0 {
		return bad("payload.size", "negative (%d)", p.Size)
	}
	if err := spec.CheckDigest(p.SHA256); err != nil {
		return bad("payload.sha256", "%v", err)
	}
	if p.StoredSize < 0 {
		return bad("payload.storedSize", "negative (%d)", p.StoredSize)
	}
	if p.Compression == CompressionNone && p.StoredSize != p.Size {
		return bad("payload.storedSize", "%d differs from payload.size %d although the payload is not compressed", p.StoredSize, p.Size)
	}
	return nil
}

// truncate shortens untrusted strings quoted in error messages.
func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
