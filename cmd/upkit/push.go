package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/internal/regfile"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/oci"
)

// ociRegistryFlags are the flags every registry command shares.
func ociRegistryFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "plain-http", Usage: "allow plain HTTP to a registry that is not on loopback (loopback may always use it)"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output (it is also off when stderr is not a terminal)"},
		&cli.IntFlag{Name: "retries", Value: 3, Usage: "retry a failed request or interrupted download `N` times, with backoff"},
		timeoutFlag(),
	}
}

// timeoutFlag bounds each registry request (oci.Options.Timeout).
func timeoutFlag() cli.Flag {
	return &cli.DurationFlag{Name: "timeout", Value: oci.DefaultTimeout, EnvVars: []string{"UPKIT_TIMEOUT"},
		Usage: "give up on a registry request (with its redirects, at most " + strconv.Itoa(oci.MaxRedirects) + ") after `DURATION`; " +
			"while blob bytes flow, after DURATION without any (0: no limit)"}
}

// timeoutOption maps --timeout to oci.Options.Timeout (0 there is the
// default, negative none).
func timeoutOption(c *cli.Context) time.Duration {
	if d := c.Duration("timeout"); d > 0 {
		return d
	}
	return -1
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

// ociOptions builds oci.Options from the shared flags; pp (may be nil)
// receives push progress.
func ociOptions(c *cli.Context, pp *ociProgressPrinter) *oci.Options {
	o := &oci.Options{PlainHTTP: c.Bool("plain-http"), Retries: c.Int("retries"), Jobs: c.Int("jobs"), Timeout: timeoutOption(c)}
	if o.Retries == 0 {
		o.Retries = -1 // --retries 0 means none
	}
	if pp != nil {
		o.Progress = pp.update
	}
	return o
}

// ociInfo prints a human progress note on stderr unless --quiet.
func ociInfo(c *cli.Context, format string, args ...any) {
	if !c.Bool("quiet") {
		fmt.Fprintf(c.App.ErrWriter, format, args...)
	}
}

// ociProgressPrinter draws one self-overwriting progress line on a terminal.
type ociProgressPrinter struct {
	w      io.Writer
	action string
	mu     sync.Mutex
	last   time.Time
	shown  bool
}

// ociProgress returns a printer when progress should be shown: not
// --quiet, and stderr is a terminal.
func ociProgress(c *cli.Context, action string) *ociProgressPrinter {
	if c.Bool("quiet") {
		return nil
	}
	f, ok := c.App.ErrWriter.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &ociProgressPrinter{w: f, action: action}
}

func (p *ociProgressPrinter) update(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if done < total && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	fmt.Fprintf(p.w, "\r%s %s / %s (%3.0f%%)\x1b[K", p.action, humanSize(done), humanSize(total), pct)
	p.shown = true
}

// finish ends the progress line.
func (p *ociProgressPrinter) finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprintln(p.w)
	}
}

func pushAction(c *cli.Context) error {
	ctx := c.Context
	switch {
	case c.String("attach-to") != "":
		if c.String("from") != "" || len(c.StringSlice("tag")) > 0 {
			return usageError("push: --attach-to takes neither --from nor --tag")
		}
		if err := needArgs(c, 1, oci.MaxLayers, "one or more DELTA files"); err != nil {
			return err
		}
		return pushAttach(c)
	case c.String("from") != "":
		if err := needArgs(c, 1, 1, "the destination REF"); err != nil {
			return err
		}
	default:
		if err := needArgs(c, 2, 2, "RELEASE.json or DIR, then REF"); err != nil {
			return err
		}
	}
	refArg := c.Args().Get(c.NArg() - 1)
	target, err := oci.ParseTarget(refArg, c.Bool("plain-http"))
	if err != nil {
		return usageError("REF: %v", err)
	}
	if target.Digest != "" {
		return usageError("REF %s: push to a tag or a bare repository, not a digest", refArg)
	}
	if target.IsLayout() && c.String("sign") != "" {
		return usageError("--sign: cosign signatures live in registries; push to a registry REF")
	}
	tags := c.StringSlice("tag")
	for _, t := range tags {
		if _, err := oci.ParseTarget("x/y:"+t, false); err != nil {
			return usageError("--tag %q: want [A-Za-z0-9_][A-Za-z0-9._-]{0,127}", t)
		}
	}
	var signer oci.Signer
	if keyref := c.String("sign"); keyref != "" {
		// Load (and ask for its password) before anything is pushed.
		if signer, err = loadSigner(c, keyref); err != nil {
			return err
		}
	}
	pp := ociProgress(c, "pushing")
	opts := ociOptions(c, pp)

	var digest string
	var version uint64
	if src := c.String("from"); src != "" {
		if target.Tag == "" && len(tags) == 0 {
			return usageError("--from: give the destination a tag (REF:TAG or --tag)")
		}
		if target.Tag == "" {
			target = target.WithTag(tags[0])
			tags = tags[1:]
		}
		digest, err = oci.Copy(ctx, src, target.String(), opts)
		pp.finish()
		if err != nil {
			return err
		}
	} else {
		rel, release, err := pushCollect(c, c.Args().Get(0))
		if err != nil {
			return err
		}
		version = release.Version
		if target.Tag == "" {
			target = target.WithTag(strconv.FormatUint(version, 10))
		}
		digest, err = oci.Push(ctx, target.String(), rel, opts)
		pp.finish()
		if err != nil {
			return err
		}
	}
	for _, t := range tags {
		if err := oci.Tag(ctx, target.String(), digest, t, opts); err != nil {
			return err
		}
	}
	if signer != nil {
		if _, err := oci.SignCosign(ctx, target.String(), digest, signer, opts); err != nil {
			return err
		}
		ociInfo(c, "cosign signature: %s (key %s)\n", oci.CosignSignatureTag(digest), signer.KeyID())
	}
	ociInfo(c, "pushed %s@%s\n", target, digest)
	fmt.Fprintln(c.App.Writer, digest)
	return nil
}

// pushCollect reads the release envelope named by arg (a file, or a
// directory holding it) and finds every package and delta it lists, by
// digest, among the regular files of the envelope's directory.
func pushCollect(c *cli.Context, arg string) (oci.Release, *manifest.Release, error) {
	ctx := c.Context
	envPath, err := pushFindEnvelope(arg)
	if err != nil {
		return oci.Release{}, nil, err
	}
	data, err := mfReadFile(envPath)
	if err != nil {
		return oci.Release{}, nil, err
	}
	var rel *manifest.Release
	if rootPath := c.String("root"); rootPath != "" {
		now := time.Now()
		root, err := mfLoadTrustedRoot(rootPath, now)
		if err != nil {
			return oci.Release{}, nil, err
		}
		if rel, err = manifest.VerifyRelease(root, data, now); err != nil {
			return oci.Release{}, nil, verifyError(fmt.Errorf("%s: %w", envPath, err))
		}
	} else if _, rel, err = mfReadRelease(envPath); err != nil {
		return oci.Release{}, nil, err
	}

	// What the release lists: digest -> file description.
	type want struct {
		digest, what string
		size         int64
		file         oci.File
	}
	wants := map[string]*want{}
	sizes := map[int64]bool{}
	var order []string
	add := func(d string, size int64, what string, f oci.File) {
		if _, dup := wants[d]; dup {
			return
		}
		wants[d] = &want{digest: d, what: what, size: size, file: f}
		sizes[size] = true
		order = append(order, d)
	}
	for _, img := range rel.Images {
		add(img.Package.Digest, img.Package.Size, "package of "+img.Component, oci.File{MediaType: oci.MediaTypePackage,
			Annotations: map[string]string{oci.AnnotationComponent: img.Component, oci.AnnotationVersion: img.Version}})
		for _, d := range img.Deltas {
			add(d.Digest, d.Size, "delta of "+img.Component+" from "+d.FromPayloadDigest, oci.File{MediaType: oci.MediaTypeDelta,
				Annotations: map[string]string{oci.AnnotationComponent: img.Component,
					oci.AnnotationDeltaFrom: d.FromPayloadDigest, oci.AnnotationDeltaTo: img.Payload.Digest}})
		}
	}

	// Find the files: a file whose size is that of exactly one listed
	// blob, and the only file of that size, is taken without hashing (its
	// bytes are checked against the digest while they upload, and a
	// mismatch fails the push); otherwise candidates are hashed.
	dir := filepath.Dir(envPath)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return oci.Release{}, nil, err
	}
	bySize := map[int64][]string{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if p == envPath || strings.HasSuffix(e.Name(), oci.PartialSuffix) {
			continue
		}
		fi, err := e.Info()
		if err != nil || !sizes[fi.Size()] {
			continue
		}
		bySize[fi.Size()] = append(bySize[fi.Size()], p)
	}
	wantBySize := map[int64][]string{}
	for _, d := range order {
		wantBySize[wants[d].size] = append(wantBySize[wants[d].size], d)
	}
	found := map[string]string{}
	for size, paths := range bySize {
		if len(paths) == 1 && len(wantBySize[size]) == 1 {
			found[wantBySize[size][0]] = paths[0]
			continue
		}
		for _, p := range paths {
			d, _, err := oci.HashFile(ctx, p)
			if err != nil {
				return oci.Release{}, nil, fmt.Errorf("hashing %s: %w", p, err)
			}
			if _, ok := wants[d]; ok && found[d] == "" {
				found[d] = p
			}
		}
	}
	var missing []string
	out := oci.Release{
		Envelope:      data,
		EnvelopeTitle: "release.json",
		Product:       rel.Product,
		Version:       rel.Version,
		Created:       rel.Created,
	}
	for _, d := range order {
		w := wants[d]
		p, ok := found[d]
		if !ok {
			missing = append(missing, fmt.Sprintf("%s (%s, %d bytes)", d, w.what, w.size))
			continue
		}
		f := w.file
		f.Path, f.Digest, f.Size = p, d, w.size
		out.Files = append(out.Files, f)
	}
	if len(missing) > 0 {
		return oci.Release{}, nil, fmt.Errorf("%s lists files not found in %s:\n  %s", envPath, dir, strings.Join(missing, "\n  "))
	}
	ociInfo(c, "release %s version %d: envelope and %d file(s) from %s\n", rel.Product, rel.Version, len(out.Files), dir)
	return out, rel, nil
}

// pushFindEnvelope returns the release envelope path for a push argument:
// the file itself, or in a directory release.json or its only *.json file
// holding a release envelope.
func pushFindEnvelope(arg string) (string, error) {
	fi, err := os.Stat(arg)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return arg, nil
	}
	p := filepath.Join(arg, "release.json")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob(filepath.Join(arg, "*.json"))
	var rels []string
	for _, m := range matches {
		if data, err := mfReadFile(m); err == nil && isManifestEnvelope(data) &&
			strings.Contains(string(data), manifest.ReleasePayloadType) {
			rels = append(rels, m)
		}
	}
	sort.Strings(rels)
	switch len(rels) {
	case 1:
		return rels[0], nil
	case 0:
		return "", usageError("%s holds no release envelope (release.json or another *.json release manifest)", arg)
	default:
		return "", usageError("%s holds several release manifests (%s): name the one to push", arg, strings.Join(rels, ", "))
	}
}

// pushAttach attaches delta files to the release at --attach-to.
func pushAttach(c *cli.Context) error {
	ctx := c.Context
	ref := c.String("attach-to")
	pp := ociProgress(c, "pushing")
	opts := ociOptions(c, pp)
	pulled, err := oci.Pull(ctx, ref, opts)
	if err != nil {
		return err
	}
	env, err := manifest.ParseEnvelope(pulled.Envelope)
	if err != nil {
		return fmt.Errorf("release at %s: %w", ref, err)
	}
	rel, err := manifest.ParseRelease(env.Payload)
	if err != nil {
		return fmt.Errorf("release at %s: %w", ref, err)
	}
	var files []oci.File
	for _, p := range c.Args().Slice() {
		f, err := regfile.Open(p)
		if err != nil {
			return err
		}
		hdr, err := delta.ReadHeader(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		var img *manifest.Image
		for i := range rel.Images {
			if rel.Images[i].Payload.Digest == hdr.NewDigest() {
				img = &rel.Images[i]
			}
		}
		if img == nil {
			return usageError("%s produces payload %s, which no image of release %s version %d has", p, hdr.NewDigest(), rel.Product, rel.Version)
		}
		files = append(files, oci.File{Path: p, MediaType: oci.MediaTypeDelta, Annotations: map[string]string{
			oci.AnnotationComponent: img.Component,
			oci.AnnotationDeltaFrom: hdr.OldDigest(),
			oci.AnnotationDeltaTo:   hdr.NewDigest(),
		}})
	}
	digest, err := oci.Attach(ctx, pulled.Target.String(), files, opts)
	pp.finish()
	if err != nil {
		return err
	}
	ociInfo(c, "attached %d delta(s) to %s as %s\n", len(files), pulled.Target, digest)
	fmt.Fprintln(c.App.Writer, digest)
	return nil
}
