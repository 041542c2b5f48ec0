package main

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/imagepkg"
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
	path := c.Args().First()
	keys, err := loadPublicKeys(c.StringSlice("key"))
	if err != nil {
		return err
	}
	if isMCUbootFile(path) {
		return mcubootVerifyAction(c, path, keys) // mcuboot.go
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()

	var src io.Reader = f
	pp := ociProgress(c, "verifying")
	if fi, err := f.Stat(); err == nil && pp != nil {
		src = &upkProgressReader{r: f, total: fi.Size(), update: pp.update}
	}
	endProgress := sync.OnceFunc(pp.finish)
	defer endProgress()

	info := &upkInfo{File: path}
	fail := func(err error) error {
		if c.Bool("json") {
			no := false
			info.Verified = &no
			info.Error = err.Error()
			if perr := printJSON(c.App.Writer, info); perr != nil {
				return perr
			}
		}
		return verifyError(fmt.Errorf("%s: %w", path, err))
	}
	p, err := imagepkg.Open(src)
	if err != nil {
		return fail(err)
	}
	*info = *upkFields(path, p)
	if err := p.VerifySignature(keys...); err != nil {
		return fail(err)
	}
	if dest := c.String("extract"); dest != "" {
		err = imagepkg.Extract(c.Context, p, dest)
		info.Extracted = dest
	} else {
		err = p.VerifyPayload(c.Context)
	}
	if err != nil {
		info.Extracted = ""
		if !upkIsPackageError(err) && !c.Bool("json") {
			return err // an I/O problem, not a verdict on the package
		}
		return fail(err)
	}
	endProgress()
	m := p.Metadata
	if c.Bool("json") {
		yes := true
		info.Verified = &yes
		info.PayloadCheck = "ok"
		return printJSON(c.App.Writer, info)
	}
	fmt.Fprintf(c.App.ErrWriter, "verified %s: %s %s (%s, security version %d, hardware %v), signed by %s (%s), payload %s %s\n",
		path, m.Component, m.Version, m.Type, m.SecurityVersion, m.Hardware, p.KeyID, p.Algorithm,
		humanSize(m.Payload.Size), m.Payload.SHA256)
	if info.Extracted != "" {
		fmt.Fprintf(c.App.ErrWriter, "extracted the %s payload to %s\n", m.Payload.Kind, info.Extracted)
	}
	return nil
}

// upkProgressReader reports the bytes read through it.
type upkProgressReader struct {
	r      io.Reader
	n      int64
	total  int64
	update func(done, total int64)
}

func (p *upkProgressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.update(p.n, p.total)
	return n, err
}
