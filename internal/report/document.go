package report

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/upkit/upkit/internal/humanize"
	"github.com/upkit/upkit/manifest"
)

// Document reports a trust root or release manifest envelope, NOT
// verified: its payload type, the key IDs that signed it, and the
// document. (Its fields are in the order of the JSON object it replaced.)
type Document struct {
	PayloadType string            `json:"payloadType"`
	Release     *manifest.Release `json:"release,omitempty"`
	Root        *manifest.Root    `json:"root,omitempty"`
	Signatures  []string          `json:"signatures"` // key IDs
	Verified    bool              `json:"verified"`   // always false: inspect verifies no document
}

// NewDocument parses a trust root or release manifest strictly
// (manifest.ParseDocument), without checking its signatures.
func NewDocument(data []byte) (*Document, error) {
	doc, err := manifest.ParseDocument(data)
	if err != nil {
		return nil, err
	}
	d := &Document{PayloadType: doc.Envelope.PayloadType, Release: doc.Release, Root: doc.Root, Signatures: []string{}}
	for _, s := range doc.Envelope.Signatures {
		d.Signatures = append(d.Signatures, s.KeyID)
	}
	return d, nil
}

// Summary implements Report.
func (d *Document) Summary() string {
	if d.Root != nil {
		return fmt.Sprintf("trust root version %d", d.Root.Version)
	}
	return fmt.Sprintf("release %s version %d", d.Release.Product, d.Release.Version)
}

// WriteText implements Report.
func (d *Document) WriteText(w io.Writer) error {
	var b strings.Builder
	if root := d.Root; root != nil {
		fmt.Fprintf(&b, "trust root version %d (schema %d), expires %s\n", root.Version, root.SchemaVersion, root.Expires.Format(time.RFC3339))
		for _, role := range []struct {
			name string
			r    manifest.Role
		}{{"root", root.Roles.Root}, {"release", root.Roles.Release}} {
			fmt.Fprintf(&b, "  role %s: %d of %d keys\n", role.name, role.r.Threshold, len(role.r.KeyIDs))
			for _, id := range role.r.KeyIDs {
				fmt.Fprintf(&b, "    %s (%s)\n", id, root.Keys[id].Algorithm)
			}
		}
	} else {
		rel := d.Release
		fmt.Fprintf(&b, "release %s version %d (schema %d), created %s, expires %s\n", rel.Product, rel.Version, rel.SchemaVersion,
			rel.Created.Format(time.RFC3339), rel.Expires.Format(time.RFC3339))
		for _, img := range rel.Images {
			fmt.Fprintf(&b, "  %s: %s %s, security version %d, hardware %s\n", img.Component, img.Type, img.Version, img.SecurityVersion, strings.Join(img.Hardware, ", "))
			fmt.Fprintf(&b, "    package %s (%s)\n", img.Package.Digest, humanize.Bytes(img.Package.Size))
			fmt.Fprintf(&b, "    payload %s (%s)\n", img.Payload.Digest, humanize.Bytes(img.Payload.Size))
			for _, dl := range img.Deltas {
				fmt.Fprintf(&b, "    delta from payload %s: %s (%s)\n", dl.FromPayloadDigest, dl.Digest, humanize.Bytes(dl.Size))
				if dl.FromPackageDigest != "" {
					fmt.Fprintf(&b, "      (from package %s)\n", dl.FromPackageDigest)
				}
			}
		}
	}
	fmt.Fprintf(&b, "signatures (%d, NOT verified; use upkit root verify / upkit release verify):\n", len(d.Signatures))
	for _, id := range d.Signatures {
		fmt.Fprintf(&b, "  %s\n", id)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
