package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/oci"
	"github.com/upkit/upkit/spec"
)

func pullCommand() *cli.Command {
	return &cli.Command{
		Name:      "pull",
		Usage:     "fetch a release from an OCI registry or layout, verifying it with --root",
		ArgsUsage: "REF",
		Description: `Fetches the release at REF (host[:port]/repo:tag, repo@sha256:..., or
oci:DIR[:tag]) into DIR: the release envelope as release.json, then the
packages and deltas it lists, named from the signed release (never from
the published titles, which nothing signs): COMPONENT-VERSION.upk and
COMPONENT-VERSION-from-HEX.delta (HEX: the start of the payload digest the
delta applies to). No file is ever replaced: one already there with the
same content is kept, one with other content stops the pull (exit 1).
With --root the envelope is verified first (a threshold of the root's
release keys, not expired) and nothing else is fetched if it fails (exit
code 1); without --root nothing is verified but digests and sizes.

Every file is fetched by the digest and size the release lists, checked
while it streams, written as .HEX.partial (HEX: its digest) and moved in
place when complete; an interrupted download resumes with an HTTP Range
request (also across runs: run the same pull again). --only COMPONENT
(repeatable) fetches only those
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
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write into directory `DIR` (created if missing)", Required: true},
			&cli.StringFlag{Name: "root", Usage: "verify the release against trust root `ROOT.json` before fetching anything else"},
			&cli.StringFlag{Name: "now", Usage: "reference `TIME` (RFC 3339) for expiry checks (default: now)"},
			&cli.StringSliceFlag{Name: "only", Usage: "fetch only component `NAME` (repeatable)"},
			&cli.StringFlag{Name: "from-digest", Usage: "fetch the delta from payload or package `DIGEST` when there is one, else the package"},
		}, ociRegistryFlags()...),
		Action: pullAction,
	}
}

func pullAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one REF"); err != nil {
		return err
	}
	ref, dir := c.Args().First(), c.String("output")
	want := oci.Want{Only: c.StringSlice("only"), From: c.String("from-digest")}
	if want.From != "" {
		if err := spec.CheckDigest(want.From); err != nil {
			return usageError("--from-digest: %v", err)
		}
	}
	now, err := nowFlag(c)
	if err != nil {
		return err
	}
	opts := registryOptions(c, nil)
	pulled, err := oci.Pull(c.Context, ref, opts)
	if err != nil {
		return err
	}
	rel, err := pulledRelease(c, pulled, now)
	if err != nil {
		return err
	}
	plan, err := pulled.PlanFiles(c.Context, rel, want, opts)
	if errors.Is(err, manifest.ErrNotListed) {
		return usageError("--only: %v", err)
	}
	if err != nil {
		return err
	}
	for _, comp := range plan.UpToDate {
		img, _ := rel.Image(comp)
		note(c, "%s: already at %s, nothing to fetch\n", comp, img.Version)
	}
	for _, f := range plan.Files {
		if f.What == "attached delta" {
			fmt.Fprintf(c.App.ErrWriter, "%s: using attached delta %s (not in the signed release; the result is checked against the signed payload digest when applied)\n", f.Component, f.Name)
		}
	}
	pp := newProgress(c, "pulling")
	written, err := pulled.FetchFiles(c.Context, dir, plan.Files, pp.Updater())
	pp.Finish()
	if errors.Is(err, oci.ErrDigestMismatch) || errors.Is(err, oci.ErrSizeMismatch) || errors.Is(err, oci.ErrExists) {
		return verifyError(err)
	}
	if err != nil {
		return err
	}
	for _, p := range written {
		fmt.Fprintln(c.App.Writer, p)
	}
	note(c, "pulled %s: %d file(s), %s into %s\n", pulled.Target, len(plan.Files), humanSize(plan.Size), dir)
	return nil
}

// pulledRelease verifies the pulled release against --root, or without it
// parses it and warns that nothing but digests is checked.
func pulledRelease(c *cli.Context, pulled *oci.PulledRelease, now time.Time) (*manifest.Release, error) {
	if rootPath := c.String("root"); rootPath != "" {
		root, err := manifest.LoadTrustedRoot(rootPath, now)
		if err != nil {
			return nil, verifyError(err)
		}
		rel, err := manifest.VerifyRelease(root, pulled.Envelope, now)
		if err != nil {
			return nil, verifyError(fmt.Errorf("release at %s: %w", pulled.Target, err))
		}
		note(c, "release %s version %d verified against %s (root version %d)\n", rel.Product, rel.Version, rootPath, root.Version)
		return rel, nil
	}
	_, rel, err := manifest.ParseReleaseEnvelope(pulled.Envelope)
	if err != nil {
		return nil, fmt.Errorf("release at %s: %w", pulled.Target, err)
	}
	fmt.Fprintf(c.App.ErrWriter, "warning: release %s version %d NOT verified (no --root); only digests are checked\n", rel.Product, rel.Version)
	return rel, nil
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

func lsAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one REF"); err != nil {
		return err
	}
	ref := c.Args().First()
	t, err := oci.ParseTarget(ref, c.Bool("plain-http"))
	if err != nil {
		return usageError("REF: %v", err)
	}
	if t.Tag == "" && t.Digest == "" {
		rows, err := oci.ListTags(c.Context, ref, registryOptions(c, nil))
		if err != nil || c.Bool("json") {
			return printJSONOr(c, rows, err)
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
	out, err := oci.DescribeRelease(c.Context, ref, registryOptions(c, nil))
	if err != nil || c.Bool("json") {
		return printJSONOr(c, out, err)
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
