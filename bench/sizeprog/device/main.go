// Command device is the smallest useful update agent built on upkit's
// device library: it installs a release from a local directory (or an OCI
// image layout) and commits it. bench/device-size.sh builds it for
// linux/arm64 to measure what linking the library costs.
//
//	usage: device STATE_DIR SLOTS_DIR RELEASE_DIR HARDWARE [ROOT.json]
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/upkit/upkit/device"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "device:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) < 4 {
		return fmt.Errorf("usage: device STATE_DIR SLOTS_DIR RELEASE_DIR HARDWARE [ROOT.json]")
	}
	d, err := device.New(device.Config{
		Store:      device.NewFileStore(filepath.Join(args[0], "state"), nil),
		Slots:      device.NewFileSlots(args[1], nil),
		StagingDir: filepath.Join(args[0], "staging"),
		Hardware:   args[3],
	})
	if err != nil {
		return err
	}
	now := time.Now()
	if len(args) > 4 {
		root, err := os.ReadFile(args[4])
		if err != nil {
			return err
		}
		if err := d.Provision(ctx, root, now); err != nil {
			return err
		}
	}
	env, err := os.ReadFile(filepath.Join(args[2], "release.json"))
	if err != nil {
		return err
	}
	plan, err := d.Check(ctx, env, nil, now)
	if err != nil {
		return err
	}
	res, err := d.Install(ctx, device.NewDirSource(args[2]), plan, now)
	if err != nil {
		return err
	}
	for _, im := range res.Images {
		fmt.Printf("%s %s: %s, fetched %d of %d bytes, slot %s\n", im.Component, im.Version, im.Method, im.Fetched, im.PackageSize, im.Slot)
	}
	return d.Commit(ctx)
}
