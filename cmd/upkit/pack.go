package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/pubkey"
	"github.com/upkit/upkit/signing"
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
as imgtool's): the version (MAJOR.MINOR.PATCH[+BUILD]) goes in the header,
the security version in the protected SEC_CNT TLV. The image carries no
component or hardware: name them when listing it in a release (upkit
release create --mcuboot COMPONENT@HW=FILE).

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
			&cli.StringFlag{Name: "component", Usage: "component `NAME` ([a-z0-9][a-z0-9._-]{0,63}; required for .upk)"},
			&cli.StringFlag{Name: "version", Usage: "image version, `SEMVER` (e.g. 1.4.0 or 2.0.0-rc.1)", Required: true},
			&cli.Uint64Flag{Name: "security-version", Usage: "anti-rollback counter `N`: devices refuse images below the highest they committed", Required: true},
			&cli.StringSliceFlag{Name: "hardware", Usage: "compatible hardware `HW[,HW...]` (repeatable; required for .upk)"},
			&cli.StringFlag{Name: "compress", Value: imagepkg.CompressionZstd, Usage: "payload compression `ALG`: zstd or none"},
			&cli.StringFlag{Name: "key", Usage: "signing key `KEYREF`: key file (password from UPKIT_PASSWORD or a prompt) or KMS/pkcs11 URI", Required: true},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the package to `OUT.upk`", Required: true},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output (it is also off when stderr is not a terminal)"},
		}, mcubootPackFlags()...),
		Action: packAction,
	}
}

func packAction(c *cli.Context) error {
	if mcu, err := packCheckFormat(c); err != nil {
		return err
	} else if mcu {
		return packMCUbootAction(c) // mcuboot.go
	}
	if err := needArgs(c, 1, 1, "one INPUT file or directory"); err != nil {
		return err
	}
	input, out := c.Args().First(), c.String("output")
	typ := c.String("type")
	switch typ {
	case imagepkg.TypeOS, imagepkg.TypeApp, imagepkg.TypeFirmware, imagepkg.TypeBootloader:
	default:
		return usageError("--type %q: want os, app, firmware or bootloader", typ)
	}
	comp := c.String("compress")
	if comp != imagepkg.CompressionZstd && comp != imagepkg.CompressionNone {
		return usageError("--compress %q: want zstd or none", comp)
	}
	if err := imagepkg.ValidateComponent(c.String("component")); err != nil {
		return usageError("--component: %v", err)
	}
	if err := imagepkg.ValidateSemver(c.String("version")); err != nil {
		return usageError("--version: %v", err)
	}
	var hardware []string
	for _, h := range c.StringSlice("hardware") {
		for _, part := range strings.Split(h, ",") {
			if part = strings.TrimSpace(part); part != "" {
				hardware = append(hardware, part)
			}
		}
	}
	if len(hardware) == 0 {
		return usageError("--hardware: at least one compatible hardware name is required")
	}
	if len(hardware) > imagepkg.MaxHardware {
		return usageError("--hardware: %d names, limit %d", len(hardware), imagepkg.MaxHardware)
	}
	seen := map[string]bool{}
	for _, h := range hardware {
		if err := imagepkg.ValidateHardware(h); err != nil {
			return usageError("--hardware: %v", err)
		}
		if seen[h] {
			return usageError("--hardware: %q given twice", h)
		}
		seen[h] = true
	}
	in, err := os.Stat(input)
	if err != nil {
		return fmt.Errorf("input: %w", err)
	}
	sde, hasSDE, err := pkgSourceDateEpoch()
	if err != nil {
		return usageError("%v", err)
	}
	opts := imagepkg.PackOptions{
		Component:       c.String("component"),
		Type:            typ,
		Version:         c.String("version"),
		SecurityVersion: c.Uint64("security-version"),
		Hardware:        hardware,
		Compression:     comp,
		Created:         time.Now(),
	}
	if hasSDE {
		opts.Created, opts.ModTime = sde, sde
	}
	signer, err := pkgLoadSigner(c, c.String("key"))
	if err != nil {
		return err
	}
	defer signer.cancel(nil)
	h := sha256.New()
	opts.Digest = h
	var pp *ociProgressPrinter
	if in.Mode().IsRegular() {
		if pp = ociProgress(c, "packing"); pp != nil {
			opts.Progress = func(n int64) { pp.update(n, in.Size()) }
		}
	}
	meta, err := imagepkg.PackPath(signer.ctx, out, input, opts, signer)
	pp.finish()
	if _, lerr := signer.wait(); lerr != nil {
		return lerr // the key failed to load: that is what stopped packing
	}
	if err != nil {
		return err
	}
	digest := "sha256:" + hex.EncodeToString(h.Sum(nil))
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	size := fi.Size()
	fmt.Fprintf(c.App.ErrWriter, "packed %s %s (%s, %s payload %s, %s) into %s: %s, signed by %s\n",
		meta.Component, meta.Version, meta.Type, meta.Payload.Kind, humanSize(meta.Payload.Size),
		pkgCompressionNote(meta.Payload), out, humanSize(size), signer.KeyID())
	fmt.Fprintln(c.App.Writer, digest)
	return nil
}

// pkgAsyncSigner is a signer loaded while the payload is being packed: the
// key (scrypt-encrypted file, KMS, token) is only needed at the end. A
// failure to load it cancels the packing at once.
type pkgAsyncSigner struct {
	ctx    context.Context // canceled with the load error
	cancel context.CancelCauseFunc
	done   chan struct{}
	s      *signing.Signer
	err    error
}

// pkgLoadSigner starts loading the --key signer in the background when no
// password prompt is needed (UPKIT_PASSWORD set, or a KMS/pkcs11 URI);
// otherwise it loads it first, so that the prompt is not mixed with
// progress output.
func pkgLoadSigner(c *cli.Context, keyref string) (*pkgAsyncSigner, error) {
	if keyref == "" {
		return nil, usageError("--key is required")
	}
	ctx, cancel := context.WithCancelCause(c.Context)
	a := &pkgAsyncSigner{ctx: ctx, cancel: cancel, done: make(chan struct{})}
	load := func() {
		defer close(a.done)
		if a.s, a.err = loadSigner(c, keyref); a.err != nil {
			cancel(a.err)
		}
	}
	_, hasPassword := os.LookupEnv("UPKIT_PASSWORD")
	if hasPassword || signing.IsKMSRef(keyref) || signing.IsPKCS11Ref(keyref) {
		go load()
		return a, nil
	}
	load()
	if a.err != nil {
		return nil, a.err
	}
	return a, nil
}

func (a *pkgAsyncSigner) wait() (*signing.Signer, error) {
	<-a.done
	return a.s, a.err
}

// KeyID, Sign and Public wait for the key (imagepkg.Signer).
func (a *pkgAsyncSigner) KeyID() string {
	if s, err := a.wait(); err == nil {
		return s.KeyID()
	}
	return ""
}

func (a *pkgAsyncSigner) Sign(ctx context.Context, message []byte) ([]byte, error) {
	s, err := a.wait()
	if err != nil {
		return nil, err
	}
	return s.Sign(ctx, message)
}

func (a *pkgAsyncSigner) Public() *pubkey.Key {
	if s, err := a.wait(); err == nil {
		return s.Public()
	}
	return nil
}

// pkgSourceDateEpoch reads SOURCE_DATE_EPOCH (reproducible-builds.org): whole
// seconds since the Unix epoch.
func pkgSourceDateEpoch() (time.Time, bool, error) {
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

// pkgFileDigest returns the "sha256:<hex>" digest and size of a file.
func pkgFileDigest(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	// (hide WriterTo, so that the 1 MiB buffer is used)
	n, err := io.CopyBuffer(h, struct{ io.Reader }{f}, make([]byte, imagepkg.ReadBufferSize))
	if err != nil {
		return "", 0, fmt.Errorf("reading %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, nil
}

func pkgCompressionNote(p imagepkg.PayloadInfo) string {
	if p.Compression == imagepkg.CompressionNone {
		return "uncompressed"
	}
	pct := 100.0
	if p.Size > 0 {
		pct = float64(p.StoredSize) * 100 / float64(p.Size)
	}
	return fmt.Sprintf("%s to %s, %.1f%%", p.Compression, humanSize(p.StoredSize), pct)
}
