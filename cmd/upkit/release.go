package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/cliutil"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/spec"
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
			&cli.StringFlag{Name: "product", Usage: "product `NAME` ([a-z0-9][a-z0-9._-]{0,63}, no ..)", Required: true},
			&cli.Uint64Flag{Name: "version", Usage: "release version `N`: a sequence number devices never go below", Required: true},
			&cli.StringFlag{Name: "expires", Value: "30d", Usage: "expiry: a `DURATION` after creation (30d, 12h) or an RFC 3339 time"},
			&cli.StringSliceFlag{Name: "delta", Usage: "delta patch `FILE` to list (repeatable)"},
			&cli.GenericFlag{Name: "mcuboot", Value: &cliutil.Strings{}, Usage: "MCUboot image to list, as `COMPONENT@HW[,HW...]=FILE`: the component and hardware it is for (an MCUboot image names neither) (repeatable)"},
			&cli.StringSliceFlag{Name: "key", Usage: "public key `PUB` file the packages must be signed with (repeatable)"},
			&cli.StringFlag{Name: "root", Usage: "trust root `ROOT.json`: packages must be signed by one of its release keys"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the manifest to `OUT.json`", Required: true},
			&cli.BoolFlag{Name: "force", Usage: "overwrite OUT if it exists"},
		},
		Action: releaseCreateAction,
	}
}

func releaseCreateAction(c *cli.Context) error {
	minArgs := 1 // none needed with --mcuboot images
	if len(cliutil.StringsOf(c, "mcuboot")) > 0 {
		minArgs = 0
	}
	if err := needArgs(c, minArgs, manifest.MaxImages, fmt.Sprintf("1 to %d PACKAGE.upk files", manifest.MaxImages)); err != nil {
		return err
	}
	out := c.String("output")
	if err := checkOutput(c, out); err != nil {
		return err
	}
	created := time.Now().UTC().Truncate(time.Second)
	if sde, ok, err := sourceDateEpoch(); err != nil {
		return usageError("%v", err)
	} else if ok {
		created = sde
	}
	expires, err := parseExpiry(c.String("expires"), created)
	if err != nil {
		return usageError("--expires: %v", err)
	}
	if !expires.After(created) {
		return usageError("--expires %s is not after the creation time %s", expires.Format(time.RFC3339), created.Format(time.RFC3339))
	}
	keys, err := packageKeys(c)
	if err != nil {
		return err
	}
	rel := &manifest.Release{
		SchemaVersion: manifest.SchemaVersion,
		Product:       c.String("product"),
		Version:       c.Uint64("version"),
		Created:       created,
		Expires:       expires,
	}
	for _, path := range c.Args().Slice() {
		pf, err := imagepkg.ReadPackageFile(c.Context, path, keys...)
		if err != nil {
			return verifyError(err)
		}
		if other, ok := rel.Image(pf.Metadata.Component); ok {
			return usageError("%s: component %s is already given by another package (version %s)", path, other.Component, other.Version)
		}
		rel.Images = append(rel.Images, releaseImage(pf))
	}
	if err := releaseMCUboot(c, rel, keys); err != nil { // mcuboot.go
		return err
	}
	for _, path := range c.StringSlice("delta") {
		d, err := delta.InspectFile(path)
		if err != nil {
			return fmt.Errorf("--delta %s: %w", path, err)
		}
		err = rel.AddDelta(d.NewDigest(), d.NewSize, manifest.Delta{FromPayloadDigest: d.OldDigest(), Digest: d.Digest, Size: d.Size})
		if errors.Is(err, manifest.ErrNotListed) || errors.Is(err, manifest.ErrMalformed) {
			return usageError("--delta %s: %v", path, err)
		}
		if err != nil {
			return fmt.Errorf("--delta %s: %w", path, err)
		}
	}
	env, err := manifest.NewReleaseEnvelope(rel)
	if err != nil {
		return err
	}
	if err := manifest.WriteEnvelopeFile(out, env); err != nil {
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

// packageKeys returns the keys packages must be signed with: --key files
// and --root's release keys (none: signatures are not checked).
func packageKeys(c *cli.Context) ([]*spec.PublicKey, error) {
	keys, err := loadPublicKeys(c.StringSlice("key"))
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	if p := c.String("root"); p != "" {
		root, err := manifest.LoadTrustedRoot(p, time.Now())
		if err != nil {
			return nil, verifyError(err)
		}
		rk, err := root.ReleaseKeys()
		if err != nil {
			return nil, fmt.Errorf("trust root %s: %w", p, err)
		}
		keys = append(keys, rk...)
	}
	return keys, nil
}

// releaseImage is a package's entry in a release: its signed metadata, and
// the digest and size of the whole file.
func releaseImage(pf *imagepkg.PackageFile) manifest.Image {
	m := pf.Metadata
	return manifest.Image{
		Component:       m.Component,
		Type:            m.Type,
		Version:         m.Version,
		SecurityVersion: m.SecurityVersion,
		Hardware:        append([]string(nil), m.Hardware...),
		Package:         manifest.Blob{Digest: pf.Digest, Size: pf.Size},
		Payload:         manifest.Blob{Digest: m.Payload.SHA256, Size: m.Payload.Size},
	}
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
	env, rel, err := manifest.ReadReleaseFile(path)
	if err != nil {
		return err
	}
	for _, m := range c.StringSlice("merge") {
		other, _, err := manifest.ReadReleaseFile(m)
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
	if err := manifest.WriteEnvelopeFile(path, env); err != nil {
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
	root, err := manifest.LoadTrustedRoot(c.String("root"), now)
	if err != nil {
		return verifyError(err)
	}
	path := c.Args().First()
	data, err := manifest.ReadFile(path)
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
