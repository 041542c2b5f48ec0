package main

// MCUboot images: pack --format mcuboot and release create --mcuboot (the
// work is internal/mcubootfile's); inspect and verify tell MCUboot images
// apart themselves (internal/report).

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/cliutil"
	"github.com/upkit/upkit/internal/mcubootfile"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/mcuboot"
	"github.com/upkit/upkit/spec"
)

// mcubootFlags are pack's --format and imgtool sign's options, by
// imgtool's names.
func mcubootFlags() []cli.Flag {
	flags := []cli.Flag{&cli.StringFlag{Name: "format", Value: "upk", Usage: "output `FORMAT`: upk (an upkit image package) or mcuboot (an MCUboot image, as imgtool sign writes it)"}}
	cat := "MCUboot (--format mcuboot; imgtool sign's options)"
	for _, o := range mcuboot.ImgtoolOptions() {
		if o.Switch {
			flags = append(flags, &cli.BoolFlag{Category: cat, Name: o.Name, Usage: o.Usage})
			continue
		}
		usage := strings.Replace(o.Usage, o.Arg, "`"+o.Arg+"`", 1)
		if o.Required {
			usage += " (required with --format mcuboot)"
		}
		flags = append(flags, &cli.StringFlag{Category: cat, Name: o.Name, Value: o.Default, Usage: usage})
	}
	return flags
}

// packFormat checks pack's flags against --format; true for mcuboot.
func packFormat(c *cli.Context) (bool, error) {
	mcu := c.String("format") == mcubootfile.Format
	if f := c.String("format"); !mcu && f != "upk" {
		return false, usageError("--format %q: want upk or mcuboot", f)
	}
	for _, o := range mcuboot.ImgtoolOptions() {
		if !mcu && c.IsSet(o.Name) {
			return false, usageError("--%s is an MCUboot option: add --format mcuboot", o.Name)
		}
	}
	for _, n := range []string{"type", "component", "hardware", "compress"} {
		if mcu && c.IsSet(n) && (n != "type" || c.String(n) != imagepkg.TypeFirmware) {
			return true, usageError("--%s: not for an MCUboot image, firmware stored as MCUboot boots it; a release names its component and hardware (upkit release create --mcuboot COMPONENT@HW=FILE)", n)
		} else if !mcu && n != "compress" && !c.IsSet(n) {
			return false, usageError("--%s is required", n)
		}
	}
	return mcu, nil
}

// packMCUboot is pack --format mcuboot.
func packMCUboot(c *cli.Context) error {
	given := map[string]string{}
	for _, o := range mcuboot.ImgtoolOptions() {
		if c.IsSet(o.Name) {
			given[o.Name] = c.String(o.Name)
		}
	}
	opts, err := mcuboot.OptionsFromImgtool(c.String("version"), c.Uint64("security-version"), given)
	if err != nil {
		return usageError("%v", err)
	}
	signer, err := loadSigner(c, c.String("key"))
	if err != nil {
		return err
	}
	f, err := mcubootfile.Sign(c.Context, c.String("output"), c.Args().First(), opts, signer)
	if errors.Is(err, mcuboot.ErrInvalidOptions) || errors.Is(err, mcuboot.ErrTooLarge) {
		return usageError("%v", err)
	} else if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(c.App.ErrWriter, "packed %s into %s: %s, signed by %s (%s)\n", f.Summary(), f.Path, humanSize(f.Size), signer.KeyID(), f.Image.Algorithm())
	fmt.Fprintln(c.App.Writer, f.Digest)
	return nil
}

// releaseMCUboot adds release create's --mcuboot images to rel.
func releaseMCUboot(c *cli.Context, rel *manifest.Release, keys []*spec.PublicKey) error {
	for _, arg := range cliutil.StringsOf(c, "mcuboot") {
		l, err := mcubootfile.ParseListing(arg)
		if err != nil {
			return usageError("--mcuboot: %v", err)
		}
		img, err := l.ReleaseImage(c.Context, keys)
		if err != nil {
			return fmt.Errorf("--mcuboot %s: %w", arg, err)
		}
		if other, ok := rel.Image(img.Component); ok {
			return usageError("--mcuboot %s: component %s is already given by another image (version %s)", arg, img.Component, other.Version)
		}
		rel.Images = append(rel.Images, *img)
	}
	return nil
}
