package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/cliutil"
	"github.com/upkit/upkit/signing"
	"github.com/upkit/upkit/spec"
)

func packCommand() *cli.Command {
	return &cli.Command{
		Name:      "pack",
		Usage:     "make a signed image package (.upk) from a file or directory",
		ArgsUsage: "INPUT",
		Description: `Packs INPUT into a signed, streamable image package. A file (partition
image, firmware) is stored as is; a directory (application bundle) as a
deterministic tar: sorted names, owner 0:0, modes kept, every mtime from
SOURCE_DATE_EPOCH (or 0). The payload is compressed with zstd unless
--compress none. The metadata's creation time is SOURCE_DATE_EPOCH when set,
else now; with SOURCE_DATE_EPOCH and an Ed25519 key, the same inputs give
the same bytes. The package is written to a temporary file next to OUT and
renamed only when complete. Prints the package digest on stdout.

With --format mcuboot, INPUT is microcontroller firmware and OUT an MCUboot
image, byte for byte what imgtool sign writes for the same options (named
as imgtool's): the version (MAJOR.MINOR.PATCH[+BUILD]) goes in its header,
the security version in its SEC_CNT TLV. It names no component or hardware:
a release does (upkit release create --mcuboot COMPONENT@HW=FILE).

Example:
   UPKIT_PASSWORD=secret upkit pack --type os --component rootfs \
     --version 1.4.0 --security-version 3 --hardware rpi4,rpi5 \
     --key release.key -o rootfs-1.4.0.upk rootfs.img
   SOURCE_DATE_EPOCH=1700000000 upkit pack --type app --component web \
     --version 2.0.1 --security-version 1 --hardware gw-100 --compress none \
     --key release.key -o web.upk ./web-bundle/
   upkit pack --format mcuboot --version 1.4.0+17 --security-version 3 \
     --header-size 0x200 --pad-header --slot-size 0x60000 \
     --key release.key -o sensor-1.4.0.bin zephyr.bin`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "type", Usage: "image `TYPE`: os, app, firmware or bootloader (required for .upk)"},
			&cli.StringFlag{Name: "component", Usage: "component `NAME` ([a-z0-9][a-z0-9._-]{0,63}, no ..; required for .upk)"},
			&cli.StringFlag{Name: "version", Usage: "image version, `SEMVER` (e.g. 1.4.0 or 2.0.0-rc.1)", Required: true},
			&cli.Uint64Flag{Name: "security-version", Usage: "anti-rollback counter `N`: devices refuse images below the highest they committed", Required: true},
			&cli.StringSliceFlag{Name: "hardware", Usage: "compatible hardware `HW[,HW...]` (repeatable; required for .upk)"},
			&cli.StringFlag{Name: "compress", Value: imagepkg.CompressionZstd, Usage: "payload compression `ALG`: zstd or none"},
			&cli.StringFlag{Name: "key", Usage: "signing key `KEYREF`: key file (password from UPKIT_PASSWORD or a prompt) or KMS/pkcs11 URI", Required: true},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the package to `OUT.upk`", Required: true},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output (it is also off when stderr is not a terminal)"},
		}, mcubootFlags()...),
		Action: packAction,
	}
}

func packAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one INPUT file or directory"); err != nil {
		return err
	}
	if mcu, err := packFormat(c); err != nil {
		return err
	} else if mcu {
		return packMCUboot(c) // mcuboot.go
	}
	input, out := c.Args().First(), c.String("output")
	var hardware []string
	for _, h := range c.StringSlice("hardware") {
		for _, part := range strings.Split(h, ",") {
			if part = strings.TrimSpace(part); part != "" {
				hardware = append(hardware, part)
			}
		}
	}
	opts := imagepkg.PackOptions{
		Component:       c.String("component"),
		Type:            c.String("type"),
		Version:         c.String("version"),
		SecurityVersion: c.Uint64("security-version"),
		Hardware:        hardware,
		Compression:     c.String("compress"),
		Created:         time.Now(),
	}
	if err := imagepkg.CheckPackOptions(opts); err != nil {
		return usageError("%v", err)
	}
	sde, hasSDE, err := sourceDateEpoch()
	if err != nil {
		return usageError("%v", err)
	}
	if hasSDE {
		opts.Created, opts.ModTime = sde, sde
	}
	in, err := os.Stat(input)
	if err != nil {
		return fmt.Errorf("input: %w", err)
	}
	ctx, signer, loaded, err := packSigner(c, c.String("key"))
	if err != nil {
		return err
	}
	h := sha256.New()
	opts.Digest = h
	var pp *cliutil.Progress
	if in.Mode().IsRegular() {
		if pp = newProgress(c, "packing"); pp != nil {
			opts.Progress = func(n int64) { pp.Update(n, in.Size()) }
		}
	}
	meta, err := imagepkg.PackPath(ctx, out, input, opts, signer)
	pp.Finish()
	if lerr := loaded(); lerr != nil {
		return lerr // the key failed to load: that is what stopped packing
	}
	if err != nil {
		return err
	}
	digest := spec.HashDigest(h).String()
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	size := fi.Size()
	fmt.Fprintf(c.App.ErrWriter, "packed %s %s (%s, %s payload %s, %s) into %s: %s, signed by %s\n",
		meta.Component, meta.Version, meta.Type, meta.Payload.Kind, humanSize(meta.Payload.Size),
		compressionNote(meta.Payload), out, humanSize(size), signer.KeyID())
	fmt.Fprintln(c.App.Writer, digest)
	return nil
}

// packSigner loads the --key signer in the background, while the payload
// is packed, when no password prompt is needed (UPKIT_PASSWORD set, or a
// KMS/pkcs11 URI); otherwise it loads it first, so that the prompt is not
// mixed with progress output. Pack under the returned context: it is
// canceled if the key fails to load.
func packSigner(c *cli.Context, keyref string) (context.Context, spec.Signer, func() error, error) {
	if keyref == "" {
		return nil, nil, nil, usageError("--key is required")
	}
	_, hasPassword := os.LookupEnv("UPKIT_PASSWORD")
	if hasPassword || signing.IsKMSRef(keyref) || signing.IsPKCS11Ref(keyref) {
		p := signing.LoadInBackground(c.Context, keyref, passwordFunc(c))
		return p.Context(), p, func() error { defer p.Close(); _, err := p.Wait(); return err }, nil
	}
	s, err := loadSigner(c, keyref)
	if err != nil {
		return nil, nil, nil, err
	}
	return c.Context, s, func() error { return nil }, nil
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH (reproducible-builds.org): whole
// seconds since the Unix epoch.
func sourceDateEpoch() (time.Time, bool, error) {
	v, ok := os.LookupEnv("SOURCE_DATE_EPOCH")
	if !ok || v == "" {
		return time.Time{}, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 253402300799 {
		return time.Time{}, false, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want whole seconds since 1970-01-01 (0..253402300799)", v)
	}
	return time.Unix(n, 0).UTC(), true, nil
}

func compressionNote(p imagepkg.PayloadInfo) string {
	if p.Compression == imagepkg.CompressionNone {
		return "uncompressed"
	}
	pct := 100.0
	if p.Size > 0 {
		pct = float64(p.StoredSize) * 100 / float64(p.Size)
	}
	return fmt.Sprintf("%s to %s, %.1f%%", p.Compression, humanSize(p.StoredSize), pct)
}
