package imagepkg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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

// createdLayout is the only accepted form of metadata.created.
const createdLayout = "2006-01-02T15:04:05Z"

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
	Component       string      // [a-z0-9][a-z0-9._-]{0,63}
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

// fieldsOf lists the members of the object at path ("" or "payload").
func fieldsOf(path string) []string {
	if path == "payload" {
		return []string{"kind", "compression", "size", "sha256", "storedSize"}
	}
	return []string{"schemaVersion", "component", "type", "version", "securityVersion", "hardware", "created", "payload"}
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
		Created:         m.Created.UTC().Format(createdLayout),
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
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrMetadata)
	}
	if err := checkJSONShape(data); err != nil {
		return nil, err
	}
	var w wireMetadata
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%w: field %s: JSON %s where %s expected", ErrMetadata, te.Field, te.Value, te.Type)
		}
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
	t, err := parseCreated(w.Created)
	if err != nil {
		return nil, err
	}
	m.Created = t
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

func parseCreated(s string) (time.Time, error) {
	t, err := time.Parse(createdLayout, s)
	if err != nil || t.Format(createdLayout) != s {
		return time.Time{}, fmt.Errorf("%w: field created: %q is not an RFC 3339 UTC time of the form YYYY-MM-DDTHH:MM:SSZ", ErrMetadata, truncate(s))
	}
	return t, nil
}

// checkJSONShape walks the tokens of data and rejects what encoding/json
// would accept silently: duplicate keys (it keeps the last), null values,
// missing fields, nesting beyond the schema, and anything after the
// top-level object.
func checkJSONShape(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMetadata, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("%w: top level is not a JSON object", ErrMetadata)
	}
	top, err := walkObject(dec, "", 1)
	if err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON object", ErrMetadata)
	}
	for _, f := range fieldsOf("") {
		if !top[f] {
			return fmt.Errorf("%w: field %s: missing", ErrMetadata, f)
		}
	}
	return nil
}

// walkObject consumes an object whose '{' was already read and returns the
// set of its keys.
func walkObject(dec *json.Decoder, path string, depth int) (map[string]bool, error) {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMetadata, err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%w: object key expected in %s", ErrMetadata, orTop(path))
		}
		field := key
		if path != "" {
			field = path + "." + key
		}
		if seen[key] {
			return nil, fmt.Errorf("%w: field %s: duplicate key", ErrMetadata, truncate(field))
		}
		if !knownField(path, key) {
			return nil, fmt.Errorf("%w: field %s: unknown field", ErrMetadata, truncate(field))
		}
		seen[key] = true
		if err := walkValue(dec, field, depth); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, fmt.Errorf("%w: %v", ErrMetadata, err)
	}
	if path == "payload" {
		for _, f := range fieldsOf(path) {
			if !seen[f] {
				return nil, fmt.Errorf("%w: field payload.%s: missing", ErrMetadata, f)
			}
		}
	}
	return seen, nil
}

func walkValue(dec *json.Decoder, field string, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: field %s: %v", ErrMetadata, truncate(field), err)
	}
	switch t := tok.(type) {
	case nil:
		return fmt.Errorf("%w: field %s: null is not allowed", ErrMetadata, truncate(field))
	case json.Number:
		// No number in the metadata is negative; "-0" would otherwise
		// decode as 0 into the signed size fields (manifest refuses it too).
		if strings.HasPrefix(string(t), "-") {
			return fmt.Errorf("%w: field %s: negative number %.32s", ErrMetadata, truncate(field), string(t))
		}
	case json.Delim:
		switch {
		case t == '{' && field == "payload":
			_, err := walkObject(dec, field, depth+1)
			return err
		case t == '[' && field == "hardware":
			for dec.More() {
				if err := walkValue(dec, field+"[]", depth+1); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil {
				return fmt.Errorf("%w: field %s: %v", ErrMetadata, truncate(field), err)
			}
		default:
			return fmt.Errorf("%w: field %s: unexpected JSON %s", ErrMetadata, truncate(field), kindOfDelim(t))
		}
	}
	return nil
}

func kindOfDelim(d json.Delim) string {
	if d == '[' {
		return "array"
	}
	return "object"
}

func knownField(path, key string) bool {
	for _, f := range fieldsOf(path) {
		if f == key {
			return true
		}
	}
	return false
}

func orTop(path string) string {
	if path == "" {
		return "the top-level object"
	}
	return path
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
	if err := ValidateComponent(m.Component); err != nil {
		return bad("component", "%v", err)
	}
	switch m.Type {
	case TypeOS, TypeApp, TypeFirmware, TypeBootloader:
	default:
		return bad("type", "%q is not one of os, app, firmware, bootloader", truncate(m.Type))
	}
	if err := ValidateSemver(m.Version); err != nil {
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
		if err := ValidateHardware(h); err != nil {
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
	if m.Created.Nanosecond() != 0 {
		return bad("created", "not a whole second")
	}
	if y := m.Created.Year(); y < 1970 || y > 9999 {
		return bad("created", "year %d outside 1970..9999", y)
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
	if err := ValidateDigest(p.SHA256); err != nil {
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

// ValidateComponent checks a component name: [a-z0-9][a-z0-9._-]{0,63}.
func ValidateComponent(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > 64 {
		return fmt.Errorf("%d bytes, limit 64", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return fmt.Errorf("%q: want [a-z0-9][a-z0-9._-]{0,63}", truncate(s))
		}
	}
	return nil
}

// ValidateHardware checks a hardware name: 1..64 bytes of [A-Za-z0-9._:+-],
// starting with a letter or digit.
func ValidateHardware(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > 64 {
		return fmt.Errorf("%d bytes, limit 64", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._:+-", rune(c))) {
			return fmt.Errorf("%q: want a letter or digit, then letters, digits or ._:+-", truncate(s))
		}
	}
	return nil
}

// ValidateDigest checks a digest string "sha256:<64 lowercase hex>".
func ValidateDigest(s string) error {
	hex, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hex) != 64 {
		return fmt.Errorf("%q: want \"sha256:<64 lowercase hex>\"", truncate(s))
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("%q: want \"sha256:<64 lowercase hex>\"", truncate(s))
		}
	}
	return nil
}

// ValidateSemver checks a semantic version 2.0.0 string
// (MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], no leading zeros, no "v"
// prefix) of at most MaxStringSize bytes.
func ValidateSemver(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > MaxStringSize {
		return fmt.Errorf("%d bytes, limit %d", len(s), MaxStringSize)
	}
	bad := fmt.Errorf("%q is not a semantic version (MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD])", truncate(s))
	rest, build, hasBuild := strings.Cut(s, "+")
	core, pre, hasPre := strings.Cut(rest, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return bad
	}
	for _, p := range parts {
		if !isNumericID(p) {
			return bad
		}
		if _, err := strconv.ParseUint(p, 10, 64); err != nil {
			return bad
		}
	}
	if hasPre {
		for _, id := range strings.Split(pre, ".") {
			if !isAlnumID(id) || isDigits(id) && !isNumericID(id) {
				return bad
			}
		}
	}
	if hasBuild {
		for _, id := range strings.Split(build, ".") {
			if !isAlnumID(id) {
				return bad
			}
		}
	}
	return nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isNumericID: digits without a leading zero (except "0" itself).
func isNumericID(s string) bool {
	return isDigits(s) && (s == "0" || s[0] != '0')
}

func isAlnumID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// truncate shortens untrusted strings quoted in error messages.
func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
