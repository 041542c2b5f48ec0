package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/pubkey"
	"github.com/upkit/upkit/manifest"
)

func releaseCommand() *cli.Command {
	return &cli.Command{
		Name:  "release",
		Usage: "create, sign and verify release manifests",
		Description: `A release manifest lists the image packages of one release (component,
versions, hardware, package and payload digests and sizes) and the deltas
that reach them. It is a DSSE envelope signed by a threshold of the trust
root's release keys; devices install only packages and deltas it lists,
by digest, before it expires (docs/FORMAT.md, docs/SECURITY.md).

Example:
   upkit release create --product gw --version 12 --expires 30d \
     --root root.json -o release.json rootfs.upk app.upk --delta rootfs-11-12.delta
   upkit release sign --key release.key release.json
   upkit release verify --root root.json --hardware gw-100 release.json`,
		Subcommands: []*cli.Command{
			releaseCreateCommand(),
			releaseSignCommand(),
			releaseVerifyCommand(),
		},
	}
}

func releaseCreateCommand() *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "write an unsigned release manifest from image packages and deltas",
		ArgsUsage: "PACKAGE.upk...",
		Description: `Reads each package's signed metadata (component, type, version, security
version, hardware, payload digest and size), streams it to check its payload
and computes the package digest and size. With --key or --root, a package
whose signature does not verify against those keys (--root: its release
keys) is refused. Each --delta patch must produce the payload of one of the
packages; its base payload digest comes from the patch header. An MCUboot
image is listed with --mcuboot COMPONENT@HW[,HW...]=FILE: the image names
neither, the signed release does; its version and security version come
from its header and SEC_CNT TLV, and the file is both package and payload
(deltas between MCUboot images are made from the image files). The creation
time is SOURCE_DATE_EPOCH when set, else now; --expires counts from it.
Sign the result with "upkit release sign". OUT must not exist unless --force.

Example:
   upkit release create --product gw --version 12 --expires 30d \
     --key release.pub -o release.json rootfs-1.5.0.upk app-2.1.0.upk \
     --delta rootfs-1.4.0-1.5.0.delta
   upkit release create --product gw --version 13 --root root.json \
     --mcuboot sensor@sensor-v2,sensor-v3=sensor-1.4.0.bin -o release.json rootfs-1.5.0.upk`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "product", Usage: "product `NAME` ([a-z0-9][a-z0-9._-]*)", Required: true},
			&cli.Uint64Flag{Name: "version", Usage: "release version `N`: a sequence number devices never go below", Required: true},
			&cli.StringFlag{Name: "expires", Value: "30d", Usage: "expiry: a `DURATION` after creation (30d, 12h) or an RFC 3339 time"},
			&cli.StringSliceFlag{Name: "delta", Usage: "delta patch `FILE` to list (repeatable)"},
			mcubootReleaseFlag(),
			&cli.StringSliceFlag{Name: "key", Usage: "public key `PUB` file the packages must be signed with (repeatable)"},
			&cli.StringFlag{Name: "root", Usage: "trust root `ROOT.json`: packages must be signed by one of its release keys"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the manifest to `OUT.json`", Required: true},
			&cli.BoolFlag{Name: "force", Usage: "overwrite OUT if it exists"},
		},
		Action: releaseCreateAction,
	}
}

func releaseCreateAction(c *cli.Context) error {
	minArgs := 1
	if len(mcubootSpecsOf(c)) > 0 {
		minArgs = 0
	}
	if err := needArgs(c, minArgs, manifest.MaxImages, fmt.Sprintf("1 to %d PACKAGE.upk files", manifest.MaxImages)); err != nil {
		return err
	}
	out := c.String("output")
	if err := mfCheckOutput(c, out); err != nil {
		return err
	}
	created := time.Now().UTC().Truncate(time.Second)
	if sde, ok, err := pkgSourceDateEpoch(); err != nil {
		return usageError("%v", err)
	} else if ok {
		created = sde
	}
	expires, err := mfExpiry(c.String("expires"), created)
	if err != nil {
		return usageError("--expires: %v", err)
	}
	if !expires.After(created) {
		return usageError("--expires %s is not after the creation time %s", expires.Format(time.RFC3339), created.Format(time.RFC3339))
	}
	var keys []*pubkey.Key
	if paths := c.StringSlice("key"); len(paths) > 0 {
		if keys, err = loadPublicKeys(paths); err != nil {
			return fmt.Errorf("--key: %w", err)
		}
	}
	if p := c.String("root"); p != "" {
		root, err := mfLoadTrustedRoot(p, time.Now())
		if err != nil {
			return err
		}
		for _, id := range root.Roles.Release.KeyIDs {
			k, err := pubkey.ParsePEM([]byte(root.Keys[id].Public))
			if err != nil {
				return fmt.Errorf("trust root %s: key %s: %w", p, id, err)
			}
			keys = append(keys, k)
		}
	}
	rel := &manifest.Release{
		SchemaVersion: manifest.SchemaVersion,
		Product:       c.String("product"),
		Version:       c.Uint64("version"),
		Created:       created,
		Expires:       expires,
	}
	for _, path := range c.Args().Slice() {
		img, err := mfReadPackage(c, path, keys)
		if err != nil {
			return err
		}
		if other, ok := rel.Image(img.Component); ok {
			return usageError("%s: component %s is already given by another package (version %s)", path, img.Component, other.Version)
		}
		rel.Images = append(rel.Images, *img)
	}
	for _, spec := range mcubootSpecsOf(c) {
		img, err := mfReadMCUboot(c.Context, spec, keys) // mcuboot.go
		if err != nil {
			return err
		}
		if other, ok := rel.Image(img.Component); ok {
			return usageError("--mcuboot %s: component %s is already given by another image (version %s)", spec, img.Component, other.Version)
		}
		rel.Images = append(rel.Images, *img)
	}
	for _, path := range c.StringSlice("delta") {
		if err := mfAddDelta(rel, path); err != nil {
			return err
		}
	}
	env, err := manifest.NewReleaseEnvelope(rel)
	if err != nil {
		return err
	}
	if err := mfWriteEnvelope(out, env); err != nil {
		return err
	}
	nd := 0
	for _, img := range rel.Images {
		nd += len(img.Deltas)
	}
	fmt.Fprintf(c.App.ErrWriter, "wrote unsigned release %s version %d to %s: %d image(s), %d delta(s), expires %s; sign it with upkit release sign --key KEY %s\n",
		rel.Product, rel.Version, out, len(rel.Images), nd, rel.Expires.Format(time.RFC3339), out)
	return nil
}

// mfReadPackage opens a .upk file, verifies its signature against keys
// (when any are given) and its payload, and returns its release entry. The
// file is read once: the package digest is computed while imagepkg reads.
func mfReadPackage(c *cli.Context, path string, keys []*pubkey.Key) (*manifest.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	cr := &mfCountingReader{r: io.TeeReader(f, h)}
	p, err := imagepkg.Open(cr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(keys) > 0 {
		if err := p.VerifySignature(keys...); err != nil {
			return nil, verifyError(fmt.Errorf("%s: %w", path, err))
		}
	}
	if err := p.VerifyPayload(c.Context); err != nil {
		return nil, verifyError(fmt.Errorf("%s: %w", path, err))
	}
	if _, err := io.Copy(io.Discard, cr); err != nil { // nothing should remain; hash it all the same
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	m := p.Metadata
	return &manifest.Image{
		Component:       m.Component,
		Type:            m.Type,
		Version:         m.Version,
		SecurityVersion: m.SecurityVersion,
		Hardware:        append([]string(nil), m.Hardware...),
		Package:         manifest.Blob{Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Size: cr.n},
		Payload:         manifest.Blob{Digest: m.Payload.SHA256, Size: m.Payload.Size},
	}, nil
}

type mfCountingReader struct {
	r io.Reader
	n int64
}

func (c *mfCountingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// mfAddDelta reads a delta patch's header and whole-file digest and lists
// it under the image whose payload it produces.
func mfAddDelta(rel *manifest.Release, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	cr := &mfCountingReader{r: io.TeeReader(f, h)}
	hdr, err := delta.ReadHeader(cr)
	if err != nil {
		return fmt.Errorf("--delta %s: %w", path, err)
	}
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if cr.n != hdr.PatchSize() {
		return fmt.Errorf("--delta %s: file is %d bytes, its header says %d", path, cr.n, hdr.PatchSize())
	}
	var img *manifest.Image
	for i := range rel.Images {
		if rel.Images[i].Payload.Digest == hdr.NewDigest() {
			img = &rel.Images[i]
		}
	}
	if img == nil {
		return usageError("--delta %s produces payload %s, which is not the payload of any package given", path, hdr.NewDigest())
	}
	if hdr.NewSize != img.Payload.Size {
		return fmt.Errorf("--delta %s: produces %d bytes, component %s's payload is %d", path, hdr.NewSize, img.Component, img.Payload.Size)
	}
	if _, dup := img.DeltaFrom(hdr.OldDigest()); dup {
		return usageError("--delta %s: component %s already has a delta from payload %s", path, img.Component, hdr.OldDigest())
	}
	img.Deltas = append(img.Deltas, manifest.Delta{
		FromPayloadDigest: hdr.OldDigest(),
		Digest:            "sha256:" + hex.EncodeToString(h.Sum(nil)),
		Size:              cr.n,
	})
	return nil
}

func releaseSignCommand() *cli.Command {
	return &cli.Command{
		Name:      "sign",
		Usage:     "add one signature to a release manifest (in place)",
		ArgsUsage: "RELEASE.json",
		Description: `Signs RELEASE.json with one key and rewrites it in place, atomically.
Signatures already there are kept (a new signature by the same key replaces
its old one), so several release-key holders, on different machines, can
sign the same file in turn; --merge adds the signatures of copies signed
separately (they must carry the exact same payload).

Example:
   UPKIT_PASSWORD=secret upkit release sign --key release.key release.json
   upkit release sign --key awskms:///alias/upkit-release release.json
   upkit release sign --merge release.alice.json --merge release.bob.json release.json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "key", Usage: "signing key `KEYREF`: key file (password from UPKIT_PASSWORD or a prompt) or KMS/pkcs11 URI"},
			&cli.StringSliceFlag{Name: "merge", Usage: "add the signatures of `COPY.json`, the same manifest signed elsewhere (repeatable)"},
		},
		Action: releaseSignAction,
	}
}

func releaseSignAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one RELEASE.json"); err != nil {
		return err
	}
	if c.String("key") == "" && len(c.StringSlice("merge")) == 0 {
		return usageError("give --key, --merge or both")
	}
	path := c.Args().First()
	env, rel, err := mfReadRelease(path)
	if err != nil {
		return err
	}
	for _, m := range c.StringSlice("merge") {
		other, _, err := mfReadRelease(m)
		if err != nil {
			return err
		}
		if err := manifest.CombineSignatures(env, other); err != nil {
			return fmt.Errorf("--merge %s: %w", m, err)
		}
	}
	signedBy := ""
	if ref := c.String("key"); ref != "" {
		signer, err := loadSigner(c, ref)
		if err != nil {
			return err
		}
		if err := manifest.Sign(c.Context, env, signer); err != nil {
			return err
		}
		signedBy = " with key " + signer.KeyID()
	}
	if err := mfWriteEnvelope(path, env); err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "signed release %s version %d in %s%s (%d signature(s))\n", rel.Product, rel.Version, path, signedBy, len(env.Signatures))
	return nil
}

func releaseVerifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "verify a release manifest against a trust root, as a device would",
		ArgsUsage: "RELEASE.json",
		Description: `Verifies the trust root (a threshold of its own root keys, not expired),
then the manifest: a threshold of distinct release keys of the root signed
it, it parses strictly and has not expired at --now. With --hardware, every
image must list that hardware. Exit code 1 when verification fails.

Example:
   upkit release verify --root root.json release.json
   upkit release verify --root root.json --hardware gw-100 \
     --now 2026-06-01T00:00:00Z --json release.json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Usage: "trust root `ROOT.json`", Required: true},
			&cli.StringFlag{Name: "hardware", Usage: "device hardware `HW` every image must support"},
			&cli.StringFlag{Name: "now", Usage: "reference `TIME` (RFC 3339) for expiry checks (default: now)"},
			&cli.BoolFlag{Name: "json", Usage: "print the verified manifest as JSON on stdout"},
		},
		Action: releaseVerifyAction,
	}
}

func releaseVerifyAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one RELEASE.json"); err != nil {
		return err
	}
	now, err := nowFlag(c)
	if err != nil {
		return err
	}
	root, err := mfLoadTrustedRoot(c.String("root"), now)
	if err != nil {
		return err
	}
	path := c.Args().First()
	data, err := mfReadFile(path)
	if err != nil {
		return err
	}
	rel, err := manifest.VerifyRelease(root, data, now)
	if err != nil {
		return verifyError(fmt.Errorf("%s: %w", path, err))
	}
	if hw := c.String("hardware"); hw != "" {
		for i := range rel.Images {
			if err := rel.Images[i].CheckHardware(hw); err != nil {
				return verifyError(fmt.Errorf("%s: %w", path, err))
			}
		}
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, map[string]any{"verified": true, "rootVersion": root.Version, "release": rel})
	}
	fmt.Fprintf(c.App.ErrWriter, "release OK: %s version %d, %d image(s), expires %s (root version %d)\n",
		rel.Product, rel.Version, len(rel.Images), rel.Expires.Format(time.RFC3339), root.Version)
	return nil
}

// isManifestEnvelope reports whether data looks like an upkit trust root or
// release manifest (a JSON object naming one of their payload types), for
// `upkit inspect` to pick inspectManifest.
func isManifestEnvelope(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return false
	}
	return bytes.Contains(data, []byte(manifest.RootPayloadType)) || bytes.Contains(data, []byte(manifest.ReleasePayloadType))
}

// inspectManifest prints a trust root or release manifest envelope,
// WITHOUT verifying its signatures: the payload type, the key IDs that
// signed, and the document, human-readable or (asJSON) as one JSON object
// {"payloadType", "signatures": [keyid...], "verified": false, "root"|"release"}.
// The document is parsed strictly; an error is returned for anything
// ParseEnvelope, ParseRoot or ParseRelease reject.
func inspectManifest(w io.Writer, data []byte, asJSON bool) error {
	if len(data) > manifest.MaxDocumentSize {
		return fmt.Errorf("%w: over %d bytes", manifest.ErrTooLarge, manifest.MaxDocumentSize)
	}
	env, err := manifest.ParseEnvelope(data)
	if err != nil {
		return err
	}
	keyIDs := make([]string, 0, len(env.Signatures))
	for _, s := range env.Signatures {
		keyIDs = append(keyIDs, s.KeyID)
	}
	out := map[string]any{"payloadType": env.PayloadType, "signatures": keyIDs, "verified": false}
	var root *manifest.Root
	var rel *manifest.Release
	switch env.PayloadType {
	case manifest.RootPayloadType:
		if root, err = manifest.ParseRoot(env.Payload); err != nil {
			return err
		}
		out["root"] = root
	case manifest.ReleasePayloadType:
		if rel, err = manifest.ParseRelease(env.Payload); err != nil {
			return err
		}
		out["release"] = rel
	default:
		return fmt.Errorf("%w: %q is neither %s nor %s", manifest.ErrPayloadType, env.PayloadType, manifest.RootPayloadType, manifest.ReleasePayloadType)
	}
	if asJSON {
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

// inspectManifestFile is `upkit inspect` for a JSON document: it reads a
// trust root or release manifest (bounded by manifest.MaxDocumentSize) and
// prints it with inspectManifest to stdout, unverified. Parse failures are
// verification failures (exit code 1).
func inspectManifestFile(c *cli.Context, path string) error {
	data, err := mfReadFile(path)
	if err != nil {
		return err
	}
	if err := inspectManifest(c.App.Writer, data, c.Bool("json")); err != nil {
		return verifyError(fmt.Errorf("%s: %w", path, err))
	}
	return nil
}
