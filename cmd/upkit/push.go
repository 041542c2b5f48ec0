package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/internal/cliutil"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/oci"
	"github.com/upkit/upkit/spec"
)

// ociRegistryFlags are the flags every registry command shares.
func ociRegistryFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "plain-http", Usage: "allow plain HTTP to a registry that is not on loopback (loopback may always use it)"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output (it is also off when stderr is not a terminal)"},
		&cli.IntFlag{Name: "retries", Value: 3, Usage: "retry a failed request or interrupted download `N` times, with backoff"},
		cliutil.TimeoutFlag(),
	}
}

func pushCommand() *cli.Command {
	return &cli.Command{
		Name:      "push",
		Usage:     "publish a signed release (envelope, packages, deltas) to an OCI registry or layout",
		ArgsUsage: "RELEASE.json|DIR REF",
		Description: `Publishes a release as one OCI artifact (image-spec 1.1, artifactType
application/vnd.upkit.release.v1+json; docs/FORMAT.md, "OCI mapping"): the signed
release envelope, every package and every delta it lists, found by digest
among the files next to RELEASE.json (or in DIR, whose release envelope is
release.json or the only *.json release in it). REF is host[:port]/repo[:tag]
or oci:DIR[:tag] (an OCI image layout, e.g. on a USB stick). Without a tag
in REF the release version is the tag; --tag adds more. Prints only the
manifest digest on stdout.

Blobs the registry already has are skipped, up to --jobs upload at once,
and pushing the same release again uploads nothing. Credentials come from
the docker config ($DOCKER_CONFIG/config.json, default ~/.docker/config.json)
and its credential helpers, as with docker, crane and cosign.

--attach-to REF DELTA... attaches deltas made after the release was
published (from an older version) as a referrer of the release at REF,
without changing the signed release; each delta must produce the payload
of one of the release's images. --from SRC REF copies a published release
to REF (registries mount the blobs when both are repositories of the same
registry). --sign KEYREF also writes a cosign signature of the manifest
(tag sha256-<hex>.sig), so "cosign verify --key release.pub
--insecure-ignore-tlog REF@DIGEST" accepts it.

Example:
   upkit push release.json registry.example/fleet/gateway:12
   upkit push --tag latest --sign release.key out/ registry.example/fleet/gateway
   upkit push out/ oci:/media/usb/updates:12
   upkit push --attach-to registry.example/fleet/gateway:12 rootfs-1.2.0-1.5.0.delta
   upkit push --from registry.example/staging/gateway:12 registry.example/prod/gateway:12
   D=$(upkit push -q release.json 127.0.0.1:5000/gw) && upkit ls 127.0.0.1:5000/gw@$D`,
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "tag", Aliases: []string{"t"}, Usage: "also tag the release `TAG` (repeatable)"},
			&cli.StringFlag{Name: "attach-to", Usage: "attach the DELTA files given as arguments to the release at `REF`"},
			&cli.StringFlag{Name: "from", Usage: "copy the published release at `SRC` instead of local files"},
			&cli.StringFlag{Name: "sign", Usage: "also write a cosign signature with `KEYREF` (ECDSA P-256 key file or KMS/pkcs11 URI)"},
			&cli.StringFlag{Name: "root", Usage: "refuse to push a release that does not verify against trust root `ROOT.json`"},
			&cli.IntFlag{Name: "jobs", Value: 4, Usage: "upload `N` blobs at once"},
		}, ociRegistryFlags()...),
		Action: pushAction,
	}
}

func pushAction(c *cli.Context) error {
	if c.String("attach-to") != "" {
		if c.String("from") != "" || len(c.StringSlice("tag")) > 0 {
			return usageError("push: --attach-to takes neither --from nor --tag")
		}
		if err := needArgs(c, 1, oci.MaxLayers, "one or more DELTA files"); err != nil {
			return err
		}
		return pushAttach(c)
	}
	target, tags, err := pushTarget(c)
	if err != nil {
		return err
	}
	var signer spec.Signer
	if keyref := c.String("sign"); keyref != "" {
		// Load (and ask for its password) before anything is pushed.
		if signer, err = loadSigner(c, keyref); err != nil {
			return err
		}
	}
	pp := newProgress(c, "pushing")
	opts := registryOptions(c, pp)
	var digest string
	if src := c.String("from"); src != "" {
		digest, err = oci.Copy(c.Context, src, target.String(), opts)
	} else {
		var rel oci.Release
		if rel, err = pushCollect(c, c.Args().Get(0)); err != nil {
			return err
		}
		if target.Tag == "" {
			target = target.WithTag(strconv.FormatUint(rel.Version, 10))
		}
		digest, err = oci.Push(c.Context, target.String(), rel, opts)
	}
	pp.Finish()
	if err != nil {
		return err
	}
	for _, t := range tags {
		if err := oci.Tag(c.Context, target.String(), digest, t, opts); err != nil {
			return err
		}
	}
	if signer != nil {
		if _, err := oci.SignCosign(c.Context, target.String(), digest, signer, opts); err != nil {
			return err
		}
		note(c, "cosign signature: %s (key %s)\n", oci.CosignSignatureTag(digest), signer.KeyID())
	}
	note(c, "pushed %s@%s\n", target, digest)
	fmt.Fprintln(c.App.Writer, digest)
	return nil
}

// pushTarget checks push's arguments and returns the destination and the
// extra tags (with --from, the first tag names the destination when REF
// has none).
func pushTarget(c *cli.Context) (oci.Target, []string, error) {
	from := c.String("from") != ""
	if from {
		if err := needArgs(c, 1, 1, "the destination REF"); err != nil {
			return oci.Target{}, nil, err
		}
	} else if err := needArgs(c, 2, 2, "RELEASE.json or DIR, then REF"); err != nil {
		return oci.Target{}, nil, err
	}
	refArg := c.Args().Get(c.NArg() - 1)
	target, err := oci.ParseTarget(refArg, c.Bool("plain-http"))
	switch {
	case err != nil:
		return target, nil, usageError("REF: %v", err)
	case target.Digest != "":
		return target, nil, usageError("REF %s: push to a tag or a bare repository, not a digest", refArg)
	case target.IsLayout() && c.String("sign") != "":
		return target, nil, usageError("--sign: cosign signatures live in registries; push to a registry REF")
	}
	tags := c.StringSlice("tag")
	for _, t := range tags {
		if _, err := oci.ParseTarget("x/y:"+t, false); err != nil {
			return target, nil, usageError("--tag %q: want [A-Za-z0-9_][A-Za-z0-9._-]{0,127}", t)
		}
	}
	if from && target.Tag == "" {
		if len(tags) == 0 {
			return target, nil, usageError("--from: give the destination a tag (REF:TAG or --tag)")
		}
		target, tags = target.WithTag(tags[0]), tags[1:]
	}
	return target, tags, nil
}

// pushCollect reads the release envelope named by arg (a file, or a
// directory holding it), verifies it against --root when given, and finds
// every package and delta it lists among the files next to it.
func pushCollect(c *cli.Context, arg string) (oci.Release, error) {
	envPath, err := manifest.FindReleaseFile(arg)
	if errors.Is(err, manifest.ErrNoRelease) {
		return oci.Release{}, usageError("%v", err)
	}
	if err != nil {
		return oci.Release{}, err
	}
	data, err := manifest.ReadFile(envPath)
	if err != nil {
		return oci.Release{}, err
	}
	_, rel, err := manifest.ParseReleaseEnvelope(data)
	if err != nil {
		return oci.Release{}, fmt.Errorf("%s: %w", envPath, err)
	}
	if rootPath := c.String("root"); rootPath != "" {
		now := time.Now()
		root, err := manifest.LoadTrustedRoot(rootPath, now)
		if err != nil {
			return oci.Release{}, verifyError(err)
		}
		if rel, err = manifest.VerifyRelease(root, data, now); err != nil {
			return oci.Release{}, verifyError(fmt.Errorf("%s: %w", envPath, err))
		}
	}
	out, err := oci.CollectRelease(c.Context, envPath, data, rel)
	if err != nil {
		return oci.Release{}, err
	}
	note(c, "release %s version %d: envelope and %d file(s) from %s\n", rel.Product, rel.Version, len(out.Files), filepath.Dir(envPath))
	return out, nil
}

// pushAttach attaches delta files to the release at --attach-to.
func pushAttach(c *cli.Context) error {
	ref := c.String("attach-to")
	pp := newProgress(c, "pushing")
	opts := registryOptions(c, pp)
	pulled, err := oci.Pull(c.Context, ref, opts)
	if err != nil {
		return err
	}
	_, rel, err := manifest.ParseReleaseEnvelope(pulled.Envelope)
	if err != nil {
		return fmt.Errorf("release at %s: %w", ref, err)
	}
	files, err := oci.DeltaFiles(rel, c.Args().Slice())
	if errors.Is(err, manifest.ErrNotListed) {
		return usageError("%v", err)
	}
	if err != nil {
		return err
	}
	digest, err := oci.Attach(c.Context, pulled.Target.String(), files, opts)
	pp.Finish()
	if err != nil {
		return err
	}
	note(c, "attached %d delta(s) to %s as %s\n", len(files), pulled.Target, digest)
	fmt.Fprintln(c.App.Writer, digest)
	return nil
}
