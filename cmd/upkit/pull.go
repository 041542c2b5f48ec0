package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/oci"
)

func pullCommand() *cli.Command {
	return &cli.Command{
		Name:      "pull",
		Usage:     "fetch a release from an OCI registry or layout, verifying it with --root",
		ArgsUsage: "REF",
		Description: `Fetches the release at REF (host[:port]/repo:tag, repo@sha256:..., or
oci:DIR[:tag]) into DIR: the release envelope as release.json, then the
packages and deltas it lists, each under its published file name. With
--root the envelope is verified first (a threshold of the root's release
keys, not expired) and nothing else is fetched if it fails (exit code 1);
without --root nothing is verified but digests and sizes.

Every file is fetched by the digest and size the release lists, checked
while it streams, written as NAME.partial and renamed when complete; an
interrupted download resumes with an HTTP Range request (also across runs:
run the same pull again). --only COMPONENT (repeatable) fetches only those
components. --from-digest D fetches what a device whose current payload (or
package) has digest D needs: the delta from D when the release lists one
or one is attached to it (see "upkit push --attach-to"), else the package.
Prints the path of every file written on stdout.

Example:
   upkit pull --root root.json registry.example/fleet/gateway:12 -o update/
   upkit pull --root root.json --only rootfs \
     --from-digest sha256:4f2c...e1 registry.example/fleet/gateway:12 -o update/
   upkit pull oci:/media/usb/updates:12 -o update/`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write into directory `DIR` (created if missing; required; may also follow REF)"},
			&cli.StringFlag{Name: "root", Usage: "verify the release against trust root `ROOT.json` before fetching anything else"},
			&cli.StringFlag{Name: "now", Usage: "reference `TIME` (RFC 3339) for expiry checks (default: now)"},
			&cli.StringSliceFlag{Name: "only", Usage: "fetch only component `NAME` (repeatable)"},
			&cli.StringFlag{Name: "from-digest", Usage: "fetch the delta from payload or package `DIGEST` when there is one, else the package"},
		}, ociRegistryFlags()...),
		Action: pullAction,
	}
}

// pullItem is one file to fetch.
type pullItem struct {
	digest string
	size   int64
	name   string
	what   string
}

// pullArgs returns REF and DIR, accepting "-o DIR" / "--output DIR" after
// REF too ("upkit pull REF -o DIR"), which urfave/cli leaves as arguments.
func pullArgs(c *cli.Context) (ref, dir string, err error) {
	args := c.Args().Slice()
	dir = c.String("output")
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" || a == "--output" || a == "-output":
			if i+1 >= len(args) {
				return "", "", usageError("pull: %s needs a DIR", a)
			}
			dir = args[i+1]
			i++
		case strings.HasPrefix(a, "-o=") || strings.HasPrefix(a, "--output="):
			dir = a[strings.IndexByte(a, '=')+1:]
		default:
			rest = append(rest, a)
		}
	}
	if len(rest) != 1 {
		return "", "", usageError("pull: expected one REF (see `upkit pull --help`)")
	}
	if dir == "" {
		return "", "", usageError("pull: -o DIR is required")
	}
	return rest[0], dir, nil
}

func pullAction(c *cli.Context) error {
	ref, dir, err := pullArgs(c)
	if err != nil {
		return err
	}
	ctx := c.Context
	from := c.String("from-digest")
	if from != "" {
		if err := oci.CheckDigest(from); err != nil {
			return usageError("--from-digest: %v", err)
		}
	}
	now, err := nowFlag(c)
	if err != nil {
		return err
	}
	opts := ociOptions(c, nil)
	pulled, err := oci.Pull(ctx, ref, opts)
	if err != nil {
		return err
	}
	var rel *manifest.Release
	if rootPath := c.String("root"); rootPath != "" {
		root, err := mfLoadTrustedRoot(rootPath, now)
		if err != nil {
			return err
		}
		if rel, err = manifest.VerifyRelease(root, pulled.Envelope, now); err != nil {
			return verifyError(fmt.Errorf("release at %s: %w", pulled.Target, err))
		}
		ociInfo(c, "release %s version %d verified against %s (root version %d)\n", rel.Product, rel.Version, rootPath, root.Version)
	} else {
		env, err := manifest.ParseEnvelope(pulled.Envelope)
		if err != nil {
			return fmt.Errorf("release at %s: %w", pulled.Target, err)
		}
		if env.PayloadType != manifest.ReleasePayloadType {
			return fmt.Errorf("release at %s: %w: %q", pulled.Target, manifest.ErrPayloadType, env.PayloadType)
		}
		if rel, err = manifest.ParseRelease(env.Payload); err != nil {
			return fmt.Errorf("release at %s: %w", pulled.Target, err)
		}
		fmt.Fprintf(c.App.ErrWriter, "warning: release %s version %d NOT verified (no --root); only digests are checked\n", rel.Product, rel.Version)
	}

	only := c.StringSlice("only")
	for _, comp := range only {
		if _, ok := rel.Image(comp); !ok {
			return usageError("--only %s: release %s version %d has no such component", comp, rel.Product, rel.Version)
		}
	}
	var attached []*oci.Artifact // fetched lazily, only with --from-digest
	attachedLoaded := false
	var items []pullItem
	for i := range rel.Images {
		img := &rel.Images[i]
		if len(only) > 0 && !slices.Contains(only, img.Component) {
			continue
		}
		if from == "" {
			items = append(items, pullPackage(pulled, img))
			for _, d := range img.Deltas {
				items = append(items, pullListedDelta(pulled, img, d))
			}
			continue
		}
		if from == img.Payload.Digest || from == img.Package.Digest {
			ociInfo(c, "%s: already at %s, nothing to fetch\n", img.Component, img.Version)
			continue
		}
		if d, ok := pullDeltaFrom(img, from); ok {
			items = append(items, pullListedDelta(pulled, img, *d))
			continue
		}
		if !attachedLoaded {
			attachedLoaded = true
			if attached, err = oci.Referrers(ctx, pulled.Target.String(), opts); err != nil {
				return err
			}
		}
		if it, ok := pullAttachedDelta(attached, img, from); ok {
			fmt.Fprintf(c.App.ErrWriter, "%s: using attached delta %s (not in the signed release; the result is checked against the signed payload digest when applied)\n", img.Component, it.name)
			items = append(items, it)
			continue
		}
		items = append(items, pullPackage(pulled, img))
	}

	// Every file must be in the artifact with the size the release signs.
	var total int64
	for i, it := range items {
		b, ok := pulled.Blob(it.digest)
		if !ok && it.what != "attached delta" {
			return fmt.Errorf("%s lists %s %s, which the artifact at %s does not contain", rel.Product, it.what, it.digest, pulled.Target)
		}
		if ok && b.Size != it.size {
			return fmt.Errorf("artifact at %s lists %s with %d bytes, the signed release says %d", pulled.Target, it.digest, b.Size, it.size)
		}
		if ok && b.Title != "" {
			items[i].name = b.Title
		}
		total += it.size
	}
	seen := map[string]bool{"release.json": true}
	for _, it := range items {
		if seen[it.name] {
			return fmt.Errorf("artifact at %s names two files %s", pulled.Target, it.name)
		}
		seen[it.name] = true
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	envPath := filepath.Join(dir, "release.json")
	if err := atomicWrite(envPath, func(w io.Writer) error { _, err := w.Write(pulled.Envelope); return err }); err != nil {
		return err
	}
	written := []string{envPath}

	src := pulled.Source
	pp := ociProgress(c, "pulling")
	var done int64
	for _, it := range items {
		path := filepath.Join(dir, it.name)
		var progress func(int64)
		if pp != nil {
			base := done
			progress = func(n int64) { pp.update(base+n, total) }
		}
		if err := oci.FetchFile(ctx, src, it.digest, it.size, path, progress); err != nil {
			pp.finish()
			if errors.Is(err, oci.ErrDigestMismatch) || errors.Is(err, oci.ErrSizeMismatch) {
				return verifyError(fmt.Errorf("%s %s: %w", it.what, it.name, err))
			}
			return fmt.Errorf("%s %s: %w", it.what, it.name, err)
		}
		done += it.size
		written = append(written, path)
	}
	pp.finish()
	for _, p := range written {
		fmt.Fprintln(c.App.Writer, p)
	}
	ociInfo(c, "pulled %s: %d file(s), %s into %s\n", pulled.Target, len(items), humanSize(total), dir)
	return nil
}

// pullDeltaFrom finds the listed delta from a payload or package digest.
func pullDeltaFrom(img *manifest.Image, from string) (*manifest.Delta, bool) {
	if d, ok := img.DeltaFrom(from); ok {
		return d, true
	}
	for j := range img.Deltas {
		if img.Deltas[j].FromPackageDigest != "" && img.Deltas[j].FromPackageDigest == from {
			return &img.Deltas[j], true
		}
	}
	return nil, false
}

func pullPackage(_ *oci.PulledRelease, img *manifest.Image) pullItem {
	return pullItem{digest: img.Package.Digest, size: img.Package.Size, what: "package",
		name: fmt.Sprintf("%s-%s.upk", img.Component, img.Version)}
}

func pullListedDelta(_ *oci.PulledRelease, img *manifest.Image, d manifest.Delta) pullItem {
	return pullItem{digest: d.Digest, size: d.Size, what: "delta",
		name: fmt.Sprintf("%s-%s-from-%s.delta", img.Component, img.Version, d.FromPayloadDigest[7:19])}
}

// pullAttachedDelta finds, among the referrers of the release, a delta
// from payload digest from to img's payload. Its size is bounded by the
// package's (a larger delta would be pointless).
func pullAttachedDelta(attached []*oci.Artifact, img *manifest.Image, from string) (pullItem, bool) {
	for _, a := range attached {
		for _, b := range a.Layers {
			if b.MediaType == oci.MediaTypeDelta && b.Annotations[oci.AnnotationDeltaFrom] == from &&
				b.Annotations[oci.AnnotationDeltaTo] == img.Payload.Digest && b.Size > 0 && b.Size <= img.Package.Size {
				name := b.Title
				if name == "" {
					name = fmt.Sprintf("%s-%s-from-%s.delta", img.Component, img.Version, from[7:19])
				}
				return pullItem{digest: b.Digest, size: b.Size, name: name, what: "attached delta"}, true
			}
		}
	}
	return pullItem{}, false
}

func lsCommand() *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list the releases (tags) of a repository, or one release and its attached deltas",
		ArgsUsage: "REF",
		Description: `With a bare repository (host[:port]/repo or oci:DIR), lists its tags with
the release each points to (digest, version, creation time); tags used only
by other tools (referrers fallback "sha256-<hex>", cosign "*.sig") are left
out. With a tag or digest, lists that release's files and the deltas
attached to it later. Nothing here is verified: use "upkit pull --root".

Example:
   upkit ls registry.example/fleet/gateway
   upkit ls registry.example/fleet/gateway:12
   upkit ls --json oci:/media/usb/updates:12`,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON on stdout"},
		}, ociRegistryFlags()...),
		Action: lsAction,
	}
}

type lsTag struct {
	Tag     string `json:"tag"`
	Digest  string `json:"digest,omitempty"`
	Version string `json:"version,omitempty"`
	Created string `json:"created,omitempty"`
	Note    string `json:"note,omitempty"`
}

type lsFile struct {
	Title     string `json:"title"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	Digest    string `json:"digest"`
	Component string `json:"component,omitempty"`
	From      string `json:"deltaFrom,omitempty"`
}

type lsRelease struct {
	Ref      string   `json:"ref"`
	Digest   string   `json:"digest"`
	Product  string   `json:"product,omitempty"`
	Version  string   `json:"version,omitempty"`
	Created  string   `json:"created,omitempty"`
	Files    []lsFile `json:"files"`
	Attached []lsFile `json:"attached"`
}

func lsFiles(a *oci.Artifact) []lsFile {
	out := []lsFile{}
	for _, b := range a.Layers {
		out = append(out, lsFile{Title: b.Title, MediaType: b.MediaType, Size: b.Size, Digest: b.Digest,
			Component: b.Annotations[oci.AnnotationComponent], From: b.Annotations[oci.AnnotationDeltaFrom]})
	}
	return out
}

func lsAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one REF"); err != nil {
		return err
	}
	ctx := c.Context
	ref := c.Args().First()
	t, err := oci.ParseTarget(ref, c.Bool("plain-http"))
	if err != nil {
		return usageError("REF: %v", err)
	}
	opts := ociOptions(c, nil)
	if t.Tag == "" && t.Digest == "" {
		tags, err := oci.Tags(ctx, ref, opts)
		if err != nil {
			return err
		}
		rows := []lsTag{}
		for _, tag := range tags {
			row := lsTag{Tag: tag}
			a, err := oci.Resolve(ctx, t.WithTag(tag).String(), opts)
			switch {
			case errors.Is(err, oci.ErrNotRelease):
				row.Note = "not an upkit release"
			case err != nil:
				return err
			case a.ArtifactType != oci.ArtifactTypeRelease:
				row.Digest, row.Note = a.Digest, "deltas artifact"
			default:
				row.Digest, row.Version, row.Created = a.Digest, a.Annotations[oci.AnnotationVersion], a.Annotations[oci.AnnotationCreated]
			}
			rows = append(rows, row)
		}
		if c.Bool("json") {
			return printJSON(c.App.Writer, rows)
		}
		tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TAG\tVERSION\tCREATED\tDIGEST")
		for _, r := range rows {
			if r.Note != "" && r.Version == "" {
				fmt.Fprintf(tw, "%s\t-\t-\t%s\n", r.Tag, r.Note)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Tag, r.Version, r.Created, r.Digest)
		}
		return tw.Flush()
	}
	a, err := oci.Resolve(ctx, ref, opts)
	if err != nil {
		return err
	}
	if a.ArtifactType != oci.ArtifactTypeRelease {
		return fmt.Errorf("%w: %s is a %s artifact attached to %s", oci.ErrNotRelease, ref, a.ArtifactType, a.Subject)
	}
	refs, err := oci.Referrers(ctx, a.Target.String(), opts)
	if err != nil {
		return err
	}
	out := lsRelease{Ref: a.Target.String(), Digest: a.Digest, Product: a.Annotations[oci.AnnotationProduct],
		Version: a.Annotations[oci.AnnotationVersion], Created: a.Annotations[oci.AnnotationCreated], Files: lsFiles(a), Attached: []lsFile{}}
	for _, r := range refs {
		out.Attached = append(out.Attached, lsFiles(r)...)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, out)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "%s\nproduct %s, version %s, created %s\n", out.Ref, out.Product, out.Version, out.Created)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tCOMPONENT\tSIZE\tDIGEST")
	for _, f := range out.Files {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", f.Title, f.Component, f.Size, f.Digest)
	}
	for _, f := range out.Attached {
		fmt.Fprintf(tw, "%s (attached)\t%s\t%d\t%s\n", f.Title, f.Component, f.Size, f.Digest)
	}
	return tw.Flush()
}
