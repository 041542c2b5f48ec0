package main

import (
	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/internal/report"
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

func inspectAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one FILE"); err != nil {
		return err
	}
	rep, err := report.Inspect(c.Context, c.Args().First())
	if rep != nil {
		if perr := printReport(c, rep); perr != nil {
			return perr
		}
	}
	return verifyError(err)
}

// printReport prints a report: as JSON with --json, else for people.
func printReport(c *cli.Context, rep report.Report) error {
	if c.Bool("json") {
		return printJSON(c.App.Writer, rep)
	}
	return rep.WriteText(c.App.Writer)
}
