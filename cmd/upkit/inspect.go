package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/spec"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/imagepkg"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show what an image package (or manifest) contains (no key needed)",
		ArgsUsage: "FILE",
		Description: `Prints every metadata field of an image package, the key ID and
algorithm that signed it, its sizes and digests: the payload's sha256 (as
signed) and the package digest (sha256 of the whole file, which release
manifests reference). It also streams the payload to check its size and
digest against the metadata, and fails (exit 1) if they do not match.
inspect does NOT check the signature: use ` + "`upkit verify --key`" + ` for that.
A trust root or release manifest (a JSON file) is printed too, unverified.

Example:
   upkit inspect rootfs-1.4.0.upk
   upkit inspect release.json
   upkit inspect --json rootfs-1.4.0.upk | jq -r .packageDigest`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON on stdout"},
		},
		Action: inspectAction,
	}
}

// packageInfo is what inspect and verify print with --json.
type packageInfo struct {
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
}

func inspectAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one FILE"); err != nil {
		return err
	}
	path := c.Args().First()
	head, err := readHead(path, 512)
	if err != nil {
		return err
	}
	if manifest.LooksLikeEnvelope(head) {
		return inspectDocument(c, path) // a trust root or release manifest
	}
	pf, perr := imagepkg.ReadPackageFile(c.Context, path)
	if pf == nil {
		return verifyError(perr)
	}
	info := packageFields(path, pf.Reader)
	info.PackageDigest, info.PackageSize, info.PayloadCheck = pf.Digest, pf.Size, "ok"
	if perr != nil {
		info.PayloadCheck = errors.Unwrap(perr).Error()
	}
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, info); err != nil {
			return err
		}
	} else {
		printPackage(c.App.Writer, info, pf.Reader)
	}
	return verifyError(perr)
}

// readHead returns the first n bytes of a file (fewer if it is shorter).
func readHead(path string, n int) ([]byte, error) {
	f, err := spec.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	m, err := io.ReadFull(f, b)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, err
	}
	return b[:m], nil
}

func packageFields(path string, p *imagepkg.Reader) *packageInfo {
	return &packageInfo{
		File:          path,
		FormatVersion: p.FormatVersion,
		HeaderSize:    p.HeaderSize,
		KeyID:         p.KeyID,
		Algorithm:     p.Algorithm,
		Signature:     hex.EncodeToString(p.Signature),
		Metadata:      json.RawMessage(p.MetadataBytes),
	}
}

// printPackage prints a package for people.
func printPackage(w io.Writer, info *packageInfo, p *imagepkg.Reader) {
	m := p.Metadata
	pi := m.Payload
	var b strings.Builder
	row := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "%-18s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	row("File", "%s", info.File)
	row("Format", "upkit image package v%d", info.FormatVersion)
	if info.PackageDigest != "" {
		row("Package digest", "%s", info.PackageDigest)
		row("Package size", "%d bytes (%s)", info.PackageSize, humanSize(info.PackageSize))
	}
	row("Header size", "%d bytes", info.HeaderSize)
	row("Component", "%s", m.Component)
	row("Type", "%s", m.Type)
	row("Version", "%s", m.Version)
	row("Security version", "%d", m.SecurityVersion)
	row("Hardware", "%s", strings.Join(m.Hardware, ", "))
	row("Created", "%s", spec.FormatTime(m.Created))
	row("Schema version", "%d", m.SchemaVersion)
	row("Payload kind", "%s", pi.Kind)
	row("Compression", "%s", pi.Compression)
	row("Payload size", "%d bytes (%s)", pi.Size, humanSize(pi.Size))
	row("Stored size", "%d bytes (%s)", pi.StoredSize, humanSize(pi.StoredSize))
	row("Payload digest", "%s", pi.SHA256)
	row("Key ID", "%s", p.KeyID)
	row("Algorithm", "%s", p.Algorithm)
	row("Signature", "%d bytes (not checked: use upkit verify --key)", len(p.Signature))
	if info.PayloadCheck != "" {
		row("Payload check", "%s", info.PayloadCheck)
	}
	io.WriteString(w, b.String())
}

// printDocument prints a trust root or release manifest envelope,
// WITHOUT verifying its signatures: the payload type, the key IDs that
// signed, and the document, human-readable or (asJSON) as one JSON object
// {"payloadType", "signatures": [keyid...], "verified": false, "root"|"release"}.
// The document is parsed strictly; an error is returned for anything
// ParseEnvelope, ParseRoot or ParseRelease reject.
func printDocument(w io.Writer, data []byte, asJSON bool) error {
	if len(data) > manifest.MaxDocumentSize {
		return fmt.Errorf("%w: over %d bytes", manifest.ErrTooLarge, manifest.MaxDocumentSize)
	}
	doc, err := manifest.ParseDocument(data)
	if err != nil {
		return err
	}
	keyIDs := make([]string, 0, len(doc.Envelope.Signatures))
	for _, s := range doc.Envelope.Signatures {
		keyIDs = append(keyIDs, s.KeyID)
	}
	root, rel := doc.Root, doc.Release
	if asJSON {
		out := map[string]any{"payloadType": doc.Envelope.PayloadType, "signatures": keyIDs, "verified": false}
		if root != nil {
			out["root"] = root
		} else {
			out["release"] = rel
		}
		return printJSON(w, out)
	}
	var b strings.Builder
	if root != nil {
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
		fmt.Fprintf(&b, "release %s version %d (schema %d), created %s, expires %s\n", rel.Product, rel.Version, rel.SchemaVersion,
			rel.Created.Format(time.RFC3339), rel.Expires.Format(time.RFC3339))
		for _, img := range rel.Images {
			fmt.Fprintf(&b, "  %s: %s %s, security version %d, hardware %s\n", img.Component, img.Type, img.Version, img.SecurityVersion, strings.Join(img.Hardware, ", "))
			fmt.Fprintf(&b, "    package %s (%s)\n", img.Package.Digest, humanSize(img.Package.Size))
			fmt.Fprintf(&b, "    payload %s (%s)\n", img.Payload.Digest, humanSize(img.Payload.Size))
			for _, d := range img.Deltas {
				fmt.Fprintf(&b, "    delta from payload %s: %s (%s)\n", d.FromPayloadDigest, d.Digest, humanSize(d.Size))
				if d.FromPackageDigest != "" {
					fmt.Fprintf(&b, "      (from package %s)\n", d.FromPackageDigest)
				}
			}
		}
	}
	fmt.Fprintf(&b, "signatures (%d, NOT verified; use upkit root verify / upkit release verify):\n", len(keyIDs))
	for _, id := range keyIDs {
		fmt.Fprintf(&b, "  %s\n", id)
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// inspectDocument is `upkit inspect` for a JSON document: it reads a
// trust root or release manifest (bounded by manifest.MaxDocumentSize) and
// prints it with printDocument to stdout, unverified. Parse failures are
// verification failures (exit code 1).
func inspectDocument(c *cli.Context, path string) error {
	data, err := manifest.ReadFile(path)
	if err != nil {
		return err
	}
	if err := printDocument(c.App.Writer, data, c.Bool("json")); err != nil {
		return verifyError(fmt.Errorf("%s: %w", path, err))
	}
	return nil
}
