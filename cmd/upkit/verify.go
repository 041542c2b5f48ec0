package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/internal/report"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "verify an image package's (or MCUboot image's) signature, payload size and digest",
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

An MCUboot image (upkit pack --format mcuboot, imgtool sign) is checked as
MCUboot checks it: the SHA-256 of header, firmware and protected TLVs
against the SHA256 TLV, the KEYHASH naming one of the --key keys, and the
signature (ECDSA P-256 or Ed25519).

Example:
   upkit verify --key release.pub rootfs-1.4.0.upk
   upkit verify --key old.pub --key new.pub --json web.upk
   upkit verify --key release.pub --extract ./web web-2.0.1.upk
   upkit verify --key release.pub --json sensor-1.4.0.bin`,
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
	rep, err := report.Verify(c.Context, path, keys, dest, pp.Updater())
	pp.Finish()
	if errors.Is(err, report.ErrNotExtractable) {
		return usageError("--extract: %v", err)
	}
	if rep != nil && c.Bool("json") {
		if perr := printJSON(c.App.Writer, rep); perr != nil {
			return perr
		}
	}
	if err != nil {
		return verifyError(err)
	}
	if !c.Bool("json") {
		fmt.Fprintln(c.App.ErrWriter, rep.Summary())
	}
	return nil
}
