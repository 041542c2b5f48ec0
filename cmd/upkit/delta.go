package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/atomicfile"
	"github.com/upkit/upkit/internal/cliutil"
)

func deltaCommand() *cli.Command {
	return &cli.Command{
		Name:  "delta",
		Usage: "make, apply and inspect binary deltas between images",
		Description: `A delta (patch) turns one image into the next. Its header binds it to the
old and new images by size and sha256; apply refuses a wrong base before
writing anything, needs memory bounded by the header (about 11 MiB with the
defaults, whatever the image size) and checks the new image's digest.
Format: docs/FORMAT.md.

Example:
   upkit delta create --from rootfs-1.3.0.upk --to rootfs-1.4.0.upk -o 1.3-to-1.4.patch
   upkit delta apply --from rootfs-1.3.0.img -o rootfs-1.4.0.img 1.3-to-1.4.patch
   upkit delta inspect --json 1.3-to-1.4.patch`,
		Subcommands: []*cli.Command{deltaCreateCommand(), deltaApplyCommand(), deltaInspectCommand()},
	}
}

func deltaCreateCommand() *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "make a patch from OLD to NEW",
		ArgsUsage: " ",
		Description: `Makes a patch that turns OLD into NEW. OLD and NEW are raw image files
or .upk image packages; for packages the patch is between their
uncompressed payloads (each payload's digest is checked while it is read)
and binds to the payload digests of the packages' metadata. Both images are
held in memory, plus 4 bytes per byte of OLD. The patch is written to a
temporary file next to PATCH and renamed when complete. Prints the patch
digest (sha256:...) on stdout, a summary on stderr.

Example:
   upkit delta create --from fw-1.0.bin --to fw-1.1.bin -o fw-1.0-1.1.patch
   upkit delta create --from app-2.0.upk --to app-2.1.upk -o app.patch --model-bits 16`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "old image `OLD` (raw file or .upk)", Required: true},
			&cli.StringFlag{Name: "to", Usage: "new image `NEW` (raw file or .upk)", Required: true},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the patch to `PATCH`", Required: true},
			&cli.IntFlag{Name: "block-size", Usage: fmt.Sprintf("output `BYTES` per block (1..%d)", delta.MaxBlockSize), Value: delta.DefaultBlockSize},
			&cli.IntFlag{Name: "model-bits", Usage: fmt.Sprintf("models' size `N` (%d..%d): apply needs about 17<<N bytes for them", delta.MinModelBits, delta.MaxModelBits), Value: delta.DefaultModelBits},
		},
		Action: deltaCreateAction,
	}
}

func deltaCreateAction(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	opts := &delta.Options{BlockSize: c.Int("block-size"), ModelBits: c.Int("model-bits")}
	out := c.String("output")
	old, err := imagepkg.OpenImage(c.Context, c.String("from"), filepath.Dir(out))
	if err != nil {
		return err
	}
	defer old.Close()
	new, err := imagepkg.OpenImage(c.Context, c.String("to"), filepath.Dir(out))
	if err != nil {
		return err
	}
	defer new.Close()
	h, err := delta.CreateFile(c.Context, old.Path, new.Path, out, opts)
	if errors.Is(err, delta.ErrOptions) {
		return usageError("%v", err)
	}
	if err != nil {
		return err
	}
	info, err := delta.InspectFile(out)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "upkit: %s: %d bytes (%.2f%% of the new image), %s -> %s\n",
		out, h.PatchSize(), 100*float64(h.PatchSize())/float64(max(h.NewSize, 1)), h.OldDigest(), h.NewDigest())
	fmt.Fprintln(c.App.Writer, info.Digest)
	return nil
}

func deltaApplyCommand() *cli.Command {
	return &cli.Command{
		Name:      "apply",
		Usage:     "apply PATCH to OLD, writing the new image",
		ArgsUsage: "PATCH",
		Description: `Rebuilds the new image from OLD and PATCH. OLD is read by random access
(a .upk package's payload is first extracted, verified, to a temporary file
next to NEW), PATCH as a stream, and NEW is written sequentially to a
temporary file, renamed only once the new image's size and sha256 match the
patch header. A wrong OLD is refused before anything is written. Memory is
bounded by the patch header (see upkit delta inspect), not by the image
size. Prints the new image digest (sha256:...) on stdout. Exit code 1 for a
wrong base, a corrupt patch or a digest mismatch.

Example:
   upkit delta apply --from fw-1.0.bin -o fw-1.1.bin fw-1.0-1.1.patch`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "old image `OLD` (raw file or .upk)", Required: true},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the new image to `NEW`", Required: true},
		},
		Action: deltaApplyAction,
	}
}

func deltaApplyAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one PATCH"); err != nil {
		return err
	}
	// The heap is small and long-lived (model tables, one block): collect
	// often rather than let garbage double the resident size.
	defer debug.SetGCPercent(debug.SetGCPercent(20))
	// Most of the binary's pages that start-up made resident are not
	// needed here: let them go before the models are allocated, so that
	// the peak is apply's memory, not apply's plus the CLI's.
	cliutil.ReleaseExecutablePages()
	// Decode in turn on one CPU unless GOMAXPROCS says otherwise: the
	// library decodes a block's two sections on two CPUs, and the second
	// thread costs this binary about 0.5 MiB (its C library and the
	// runtime's), which would put it above the 16 MiB it keeps to
	// (docs/PERFORMANCE.md).
	if os.Getenv("GOMAXPROCS") == "" {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	}
	patchPath, out := c.Args().First(), c.String("output")
	// --from itself, not the payload extracted from a .upk: neither the
	// image nor the package it came in may be overwritten.
	if atomicfile.SameFile(c.String("from"), out) {
		return usageError("--output %s is the old image; write the new image elsewhere", out)
	}
	old, err := imagepkg.OpenImage(c.Context, c.String("from"), filepath.Dir(out))
	if err != nil {
		return err
	}
	defer old.Close()
	h, err := delta.ApplyFile(c.Context, old.Path, patchPath, out)
	if errors.Is(err, delta.ErrRejected) {
		return verifyError(fmt.Errorf("%s: %w", patchPath, err))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "upkit: %s: %d bytes, %s\n", out, h.NewSize, h.NewDigest())
	fmt.Fprintln(c.App.Writer, h.NewDigest())
	return nil
}

func deltaInspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "print a patch's header",
		ArgsUsage: "PATCH",
		Description: `Prints the header of PATCH: format version and algorithm, the old and new
images' sizes and digests, the body's bounds (zstd window of a version 2 or 3
patch, block size, control size, model size) and the memory apply will need, the patch size and its
digest (sha256 of the whole file, which release manifests reference). Fails
(exit 1) when the header is invalid or the file size differs from the
header's. The body is not decoded: apply checks it.

Example:
   upkit delta inspect fw-1.0-1.1.patch
   upkit delta inspect --json fw-1.0-1.1.patch | jq -r .newDigest`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON on stdout"},
		},
		Action: deltaInspectAction,
	}
}

// deltaInfo is what delta inspect prints.
type deltaInfo struct {
	File           string `json:"file"`
	PatchDigest    string `json:"patchDigest"`
	PatchSize      int64  `json:"patchSize"`
	Version        int    `json:"version"`
	Algorithm      string `json:"algorithm"`
	OldSize        int64  `json:"oldSize"`
	OldDigest      string `json:"oldDigest"`
	NewSize        int64  `json:"newSize"`
	NewDigest      string `json:"newDigest"`
	Window         uint32 `json:"window"`
	BlockSize      uint32 `json:"blockSize"`
	CtrlSize       uint32 `json:"ctrlSize"`
	ModelBits      int    `json:"modelBits"`
	BodySize       int64  `json:"bodySize"`
	MaxApplyMemory int64  `json:"maxApplyMemory"`
}

func deltaInspectAction(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one PATCH"); err != nil {
		return err
	}
	path := c.Args().First()
	h, err := delta.InspectFile(path)
	if errors.Is(err, delta.ErrRejected) {
		return verifyError(err)
	}
	if err != nil {
		return err
	}
	info := deltaInfo{
		File: path, PatchDigest: h.Digest, PatchSize: h.Size,
		Version: int(h.Version), Algorithm: h.Algorithm.String(),
		OldSize: h.OldSize, OldDigest: h.OldDigest(), NewSize: h.NewSize, NewDigest: h.NewDigest(),
		Window: h.Window, BlockSize: h.BlockSize, CtrlSize: h.CtrlSize, ModelBits: int(h.ModelBits),
		BodySize: h.BodySize, MaxApplyMemory: h.MaxApplyMemory(),
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "file:             %s\n", info.File)
	fmt.Fprintf(w, "patch digest:     %s\n", info.PatchDigest)
	fmt.Fprintf(w, "patch size:       %d\n", info.PatchSize)
	fmt.Fprintf(w, "format:           version %d, algorithm %s\n", info.Version, info.Algorithm)
	fmt.Fprintf(w, "old image:        %d bytes, %s\n", info.OldSize, info.OldDigest)
	fmt.Fprintf(w, "new image:        %d bytes, %s\n", info.NewSize, info.NewDigest)
	if info.Window != 0 {
		fmt.Fprintf(w, "window:           %d\n", info.Window)
	}
	fmt.Fprintf(w, "block size:       %d\n", info.BlockSize)
	fmt.Fprintf(w, "control size:     %d\n", info.CtrlSize)
	fmt.Fprintf(w, "model bits:       %d\n", info.ModelBits)
	fmt.Fprintf(w, "apply memory:     %d bytes at most (buffers and model)\n", info.MaxApplyMemory)
	return nil
}
