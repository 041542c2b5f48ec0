package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"

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
A trust root or release manifest (a JSON file) is printed too, unverified,
and so is an MCUboot image: header, TLVs, key hash, security counter,
trailer, with its image hash checked.

Example:
   upkit inspect rootfs-1.4.0.upk
   upkit inspect release.json
   upkit inspect sensor-1.4.0.bin
   upkit inspect --json rootfs-1.4.0.upk | jq -r .packageDigest`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON on stdout"},
		},
		Action: inspectAction,
	}
}

// upkInfo is what inspect and verify print with --json.
type upkInfo struct {
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
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, imagepkg.ReadBufferSize)
	if head, _ := br.Peek(512); len(bytes.TrimLeft(head, " \t\r\n")) > 0 && bytes.TrimLeft(head, " \t\r\n")[0] == '{' {
		return inspectManifestFile(c, path) // a trust root or release manifest (release.go)
	}
	if isMCUbootFile(path) {
		return mcubootInspectAction(c, path) // mcuboot.go
	}
	info, p, perr := upkInspect(c.Context, path, br)
	if p == nil {
		return verifyError(fmt.Errorf("%s: %w", path, perr))
	}
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, info); err != nil {
			return err
		}
	} else {
		upkPrintPackage(c.App.Writer, info, p)
	}
	if perr != nil {
		return verifyError(fmt.Errorf("%s: %w", path, perr))
	}
	return nil
}

// upkInspect opens the package read from r, streams its payload (to
// check it against the metadata) and hashes the whole file. It returns a
// nil Reader if the header cannot be parsed; a payload mismatch comes back
// as the error with the info filled in.
func upkInspect(ctx context.Context, path string, r io.Reader) (*upkInfo, *imagepkg.Reader, error) {
	h := sha256.New()
	cr := &upkHashReader{r: r, h: h}
	p, err := imagepkg.Open(cr)
	if err != nil {
		return nil, nil, err
	}
	perr := p.VerifyPayload(ctx)
	// Hash whatever the payload check did not read.
	if _, err := io.CopyBuffer(cr.sink(), r, make([]byte, imagepkg.ReadBufferSize)); err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", path, err)
	}
	info := upkFields(path, p)
	info.PackageDigest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	info.PackageSize = cr.n
	info.PayloadCheck = "ok"
	if perr != nil {
		info.PayloadCheck = perr.Error()
	}
	return info, p, perr
}

func upkFields(path string, p *imagepkg.Reader) *upkInfo {
	return &upkInfo{
		File:          path,
		FormatVersion: imagepkg.FormatVersion,
		HeaderSize:    p.HeaderSize,
		KeyID:         p.KeyID,
		Algorithm:     p.Algorithm,
		Signature:     hex.EncodeToString(p.Signature),
		Metadata:      json.RawMessage(p.MetadataBytes),
	}
}

// upkHashReader hashes and counts the bytes read through it.
type upkHashReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (c *upkHashReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.h.Write(b[:n])
	c.n += int64(n)
	return n, err
}

// sink returns a writer that hashes and counts bytes copied directly.
func (c *upkHashReader) sink() io.Writer {
	return upkWriterFunc(func(b []byte) (int, error) {
		c.h.Write(b)
		c.n += int64(len(b))
		return len(b), nil
	})
}

type upkWriterFunc func([]byte) (int, error)

func (f upkWriterFunc) Write(b []byte) (int, error) { return f(b) }

// upkPrintPackage prints a package for people.
func upkPrintPackage(w io.Writer, info *upkInfo, p *imagepkg.Reader) {
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
	row("Created", "%s", m.Created.Format("2006-01-02T15:04:05Z"))
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

// upkIsPackageError tells verification failures from other errors.
func upkIsPackageError(err error) bool {
	for _, e := range []error{imagepkg.ErrMagic, imagepkg.ErrVersion, imagepkg.ErrUnsupported,
		imagepkg.ErrMetadata, imagepkg.ErrMetadataTooLarge, imagepkg.ErrSignatureBlock,
		imagepkg.ErrUnknownKey, imagepkg.ErrSignature, imagepkg.ErrTruncated,
		imagepkg.ErrPayloadDigest, imagepkg.ErrPayloadSize, imagepkg.ErrTrailingData,
		imagepkg.ErrUnsafePath} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
