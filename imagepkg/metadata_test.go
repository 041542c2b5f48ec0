package imagepkg_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/upkit/upkit/imagepkg"
)

const goodMetadata = `{"schemaVersion":1,"component":"rootfs","type":"os","version":"1.2.3","securityVersion":7,"hardware":["rpi4","imx8mm-evk"],"created":"2026-01-02T03:04:05Z","payload":{"kind":"file","compression":"zstd","size":100,"sha256":"sha256:0000000000000000000000000000000000000000000000000000000000000000","storedSize":50}}`

func TestParseMetadataGood(t *testing.T) {
	m, err := imagepkg.ParseMetadata([]byte(goodMetadata))
	if err != nil {
		t.Fatal(err)
	}
	out, err := imagepkg.MarshalMetadata(m)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != goodMetadata {
		t.Fatalf("re-encoding differs:\n got %s\nwant %s", out, goodMetadata)
	}
	// Whitespace is allowed (the signature covers the exact bytes).
	spaced := strings.ReplaceAll(goodMetadata, ",", ",\n  ")
	if _, err := imagepkg.ParseMetadata([]byte(spaced)); err != nil {
		t.Fatalf("whitespace: %v", err)
	}
	// No HTML escaping in the canonical form.
	m.Version = "1.0.0+a-b"
	out, _ = imagepkg.MarshalMetadata(m)
	if !bytes.Contains(out, []byte(`"1.0.0+a-b"`)) {
		t.Fatalf("escaped: %s", out)
	}
}

func TestParseMetadataStrict(t *testing.T) {
	rep := func(old, new string) string { return strings.Replace(goodMetadata, old, new, 1) }
	hw := make([]string, imagepkg.MaxHardware+1)
	for i := range hw {
		hw[i] = fmt.Sprintf(`"hw%d"`, i)
	}
	cases := []struct {
		name, json, field string
		want              error
	}{
		{"empty", ``, "empty", imagepkg.ErrMetadata},
		{"not an object", `[1]`, "object", imagepkg.ErrMetadata},
		{"invalid utf8", rep("rootfs", "root\xfffs"), "UTF-8", imagepkg.ErrMetadata},
		{"trailing data", goodMetadata + `{}`, "trailing", imagepkg.ErrMetadata},
		{"trailing garbage", goodMetadata + `x`, "", imagepkg.ErrMetadata},
		{"truncated", goodMetadata[:len(goodMetadata)-1], "", imagepkg.ErrMetadata},
		{"duplicate key", rep(`"type":"os"`, `"type":"os","type":"app"`), "type", imagepkg.ErrMetadata},
		{"duplicate nested key", rep(`"kind":"file"`, `"kind":"file","kind":"tar"`), "payload.kind", imagepkg.ErrMetadata},
		{"unknown field", rep(`"type":"os"`, `"type":"os","extra":1`), "extra", imagepkg.ErrMetadata},
		{"unknown nested field", rep(`"kind":"file"`, `"kind":"file","x":1`), "x", imagepkg.ErrMetadata},
		{"missing field", rep(`"securityVersion":7,`, ``), "securityVersion", imagepkg.ErrMetadata},
		{"missing nested field", rep(`,"storedSize":50`, ``), "payload.storedSize", imagepkg.ErrMetadata},
		{"null", rep(`"securityVersion":7`, `"securityVersion":null`), "securityVersion", imagepkg.ErrMetadata},
		{"schema version 2", rep(`"schemaVersion":1`, `"schemaVersion":2`), "schemaVersion", imagepkg.ErrMetadata},
		{"schema version string", rep(`"schemaVersion":1`, `"schemaVersion":"1"`), "schemaVersion", imagepkg.ErrMetadata},
		{"component empty", rep(`"rootfs"`, `""`), "component", imagepkg.ErrMetadata},
		{"component upper", rep(`"rootfs"`, `"RootFS"`), "component", imagepkg.ErrMetadata},
		{"component leading dash", rep(`"rootfs"`, `"-rootfs"`), "component", imagepkg.ErrMetadata},
		{"component too long", rep(`"rootfs"`, `"`+strings.Repeat("a", 65)+`"`), "component", imagepkg.ErrMetadata},
		{"component dot dot", rep(`"rootfs"`, `"root..fs"`), "component", imagepkg.ErrMetadata},
		{"type", rep(`"type":"os"`, `"type":"kernel"`), "type", imagepkg.ErrMetadata},
		{"version v prefix", rep(`"1.2.3"`, `"v1.2.3"`), "version", imagepkg.ErrMetadata},
		{"version two parts", rep(`"1.2.3"`, `"1.2"`), "version", imagepkg.ErrMetadata},
		{"version leading zero", rep(`"1.2.3"`, `"1.02.3"`), "version", imagepkg.ErrMetadata},
		{"version prerelease leading zero", rep(`"1.2.3"`, `"1.2.3-01"`), "version", imagepkg.ErrMetadata},
		{"version empty prerelease", rep(`"1.2.3"`, `"1.2.3-"`), "version", imagepkg.ErrMetadata},
		{"version empty build id", rep(`"1.2.3"`, `"1.2.3+a..b"`), "version", imagepkg.ErrMetadata},
		{"version too long", rep(`"1.2.3"`, `"1.2.3-`+strings.Repeat("a", 130)+`"`), "version", imagepkg.ErrMetadata},
		{"version empty", rep(`"1.2.3"`, `""`), "version", imagepkg.ErrMetadata},
		{"security version negative", rep(`"securityVersion":7`, `"securityVersion":-1`), "securityVersion", imagepkg.ErrMetadata},
		{"security version float", rep(`"securityVersion":7`, `"securityVersion":7.5`), "securityVersion", imagepkg.ErrMetadata},
		{"security version overflow", rep(`"securityVersion":7`, `"securityVersion":18446744073709551616`), "securityVersion", imagepkg.ErrMetadata},
		{"hardware empty list", rep(`["rpi4","imx8mm-evk"]`, `[]`), "hardware", imagepkg.ErrMetadata},
		{"hardware empty name", rep(`"rpi4"`, `""`), "hardware[0]", imagepkg.ErrMetadata},
		{"hardware space", rep(`"rpi4"`, `"rpi 4"`), "hardware[0]", imagepkg.ErrMetadata},
		{"hardware too long", rep(`"rpi4"`, `"`+strings.Repeat("a", 65)+`"`), "hardware[0]", imagepkg.ErrMetadata},
		{"hardware duplicate", rep(`"imx8mm-evk"`, `"rpi4"`), "hardware[1]", imagepkg.ErrMetadata},
		{"hardware too many", rep(`["rpi4","imx8mm-evk"]`, `[`+strings.Join(hw, ",")+`]`), "hardware", imagepkg.ErrMetadata},
		{"hardware nested", rep(`"rpi4"`, `["rpi4"]`), "hardware", imagepkg.ErrMetadata},
		{"created offset", rep(`03:04:05Z`, `03:04:05+01:00`), "created", imagepkg.ErrMetadata},
		{"created fraction", rep(`03:04:05Z`, `03:04:05.5Z`), "created", imagepkg.ErrMetadata},
		{"created invalid", rep(`2026-01-02T`, `2026-13-02T`), "created", imagepkg.ErrMetadata},
		{"created date only", rep(`2026-01-02T03:04:05Z`, `2026-01-02`), "created", imagepkg.ErrMetadata},
		{"created before 1970", rep(`2026-01-02`, `1969-12-31`), "created", imagepkg.ErrMetadata},
		{"kind", rep(`"kind":"file"`, `"kind":"zip"`), "payload.kind", imagepkg.ErrMetadata},
		{"compression", rep(`"compression":"zstd"`, `"compression":"gzip"`), "payload.compression", imagepkg.ErrMetadata},
		{"size negative", rep(`"size":100`, `"size":-1`), "payload.size", imagepkg.ErrMetadata},
		// Manifests refused -0 (read as 0); package metadata now shares their
		// strict JSON reader (issue 12, item 11).
		{"size negative zero", rep(`"size":100`, `"size":-0`), "payload.size", imagepkg.ErrMetadata},
		{"stored size negative zero", rep(`"storedSize":50`, `"storedSize":-0`), "payload.storedSize", imagepkg.ErrMetadata},
		{"security version negative zero", rep(`"securityVersion":7`, `"securityVersion":-0`), "securityVersion", imagepkg.ErrMetadata},
		{"digest upper", rep(`sha256:0000`, `sha256:AAAA`), "payload.sha256", imagepkg.ErrMetadata},
		{"digest short", rep(`0000000000000000000000000000000000000000000000000000000000000000`, `00`), "payload.sha256", imagepkg.ErrMetadata},
		{"digest algorithm", rep(`sha256:0000`, `sha512:0000`), "payload.sha256", imagepkg.ErrMetadata},
		{"stored size negative", rep(`"storedSize":50`, `"storedSize":-5`), "payload.storedSize", imagepkg.ErrMetadata},
		{"uncompressed size mismatch", rep(`"compression":"zstd"`, `"compression":"none"`), "payload.storedSize", imagepkg.ErrMetadata},
		{"too large", `{"component":"` + strings.Repeat("a", imagepkg.MaxMetadataSize) + `"}`, "", imagepkg.ErrMetadataTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := imagepkg.ParseMetadata([]byte(c.json))
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if c.field != "" && !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error %q does not name %q", err, c.field)
			}
		})
	}
}

// FuzzMetadata: ParseMetadata never panics, and what it accepts re-encodes
// to metadata that parses back to the same value.
func FuzzMetadata(f *testing.F) {
	f.Add([]byte(goodMetadata))
	f.Add([]byte(strings.Replace(goodMetadata, `"type":"os"`, `"type":"os","type":"app"`, 1)))
	f.Add([]byte(`{"schemaVersion":1}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"payload":{"payload":{}}}`))
	if g, err := os.ReadFile(filepath.Join("testdata", "golden-v2.upk")); err == nil && len(g) > 16 {
		if p, err := imagepkg.Open(bytes.NewReader(g)); err == nil {
			f.Add(p.MetadataBytes)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := imagepkg.ParseMetadata(data)
		if err != nil {
			if !errors.Is(err, imagepkg.ErrMetadata) && !errors.Is(err, imagepkg.ErrMetadataTooLarge) {
				t.Fatalf("error without sentinel: %v", err)
			}
			return
		}
		out, err := imagepkg.MarshalMetadata(m)
		if err != nil {
			t.Fatalf("accepted metadata does not re-encode: %v", err)
		}
		m2, err := imagepkg.ParseMetadata(out)
		if err != nil {
			t.Fatalf("re-encoded metadata does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the metadata:\n%+v\n%+v", m, m2)
		}
	})
}
