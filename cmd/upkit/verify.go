package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/imagepkg"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "verify an image package's signature, payload size and digest",
		ArgsUsage: "FILE.upk",
		Description: `Checks, in one streaming pass with memory that does not grow with the
package: the header and metadata, the signature by one of the --key public
keys (the key whose ID the package names), then the payload's size and
sha256 against the signed metadata, and that nothing follows the payload.
Exits 0 only if all of it holds, 1 on any verification failure, 2 on a
usage error.

With --extract the payload is also written out, and only kept if it
verifies: a file payload to the file DEST, a directory (tar) payload to the
new or empty directory DEST, refusing absolute paths, "..", links that
leave DEST and device files.

Example:
   upkit verify --key release.pub rootfs-1.4.0.upk
   upkit verify --key old.pub --key new.pub --json web.upk
   upkit verify --key release.pub --extract ./web web-2.0.1.upk`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "key", Usage: "trusted public key `PUB` (PEM file; repeatable)", Required: true},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON on stdout"},
			&cli.StringFlag{Name: "extract", Usage: "write the verified payload to `DEST` (a file, or a directory for tar payloads)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output (it is also off when stderr is not a terminal)"},
		},
		Action: verifyAction,
	}
}

func verifyAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one FILE.upk"); err != nil {
		return err
	}
	path, dest := c.Args().First(), c.String("extract")
	keys, err := loadPublicKeys(c.StringSlice("key"))
	if err != nil {
		return err
	}
	pp := newProgress(c, "verifying")
	p, err := imagepkg.VerifyFile(c.Context, path, keys, dest, pp.Updater())
	pp.Finish()
	if p == nil && err != nil && !errors.Is(err, imagepkg.ErrRejected) {
		return err // the file could not be read
	}
	info := &packageInfo{File: path}
	if p != nil {
		info = packageFields(path, p)
	}
	ok := err == nil
	info.Verified = &ok
	if err != nil {
		if !errors.Is(err, imagepkg.ErrRejected) && !c.Bool("json") {
			return err // an I/O problem, not a verdict on the package
		}
		info.Error = err.Error()
	} else if dest != "" {
		info.Extracted = dest
	}
	if c.Bool("json") {
		if ok {
			info.PayloadCheck = "ok"
		}
		if perr := printJSON(c.App.Writer, info); perr != nil {
			return perr
		}
	}
	if err != nil {
		return verifyError(fmt.Errorf("%s: %w", path, err))
	}
	if !c.Bool("json") {
		m := p.Metadata
		fmt.Fprintf(c.App.ErrWriter, "verified %s: %s %s (%s, security version %d, hardware %v), signed by %s (%s), payload %s %s\n",
			path, m.Component, m.Version, m.Type, m.SecurityVersion, m.Hardware, p.KeyID, p.Algorithm,
			humanSize(m.Payload.Size), m.Payload.SHA256)
		if dest != "" {
			fmt.Fprintf(c.App.ErrWriter, "extracted the %s payload to %s\n", m.Payload.Kind, dest)
		}
	}
	return nil
}
