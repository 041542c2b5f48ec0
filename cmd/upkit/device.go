package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/internal/cliutil"
	"github.com/upkit/upkit/internal/devicedir"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/oci"
)

// Exit codes of `upkit device update` besides 0 (installed, awaiting
// commit) and 1 (refused or failed).
const exitNothingToDo = 3

func deviceStateFlag() cli.Flag {
	return &cli.StringFlag{Name: "state", Value: "upkit-device", EnvVars: []string{"UPKIT_DEVICE_STATE"},
		Usage: "simulated device directory `DIR` (state, staging, device.json)"}
}

func deviceCommand() *cli.Command {
	return &cli.Command{
		Name:  "device",
		Usage: "simulate a device: verify, install, commit and roll back updates",
		Description: `A device simulator for developers and CI, running the same library
(package device) that firmware links. Its state (trust root, anti-rollback
counters, installed and pending images) lives in --state DIR, its A/B slots
in files (--slots DIR, default DIR/slots).

Exit codes of update: 0 installed and awaiting commit (or already staged),
3 nothing to do (the release is already installed), 1 refused (the reason
is printed: rollback, expired, wrong hardware, bad signature, ...), 2 usage.

Example:
   upkit device init --state dev1 --root root.json --hardware gw-100
   upkit device update --state dev1 registry.example/fleet/gateway:12
   upkit device commit --state dev1
   upkit device status --state dev1 --json`,
		Subcommands: []*cli.Command{
			deviceInitCommand(), deviceUpdateCommand(),
			deviceStatusCommand(), deviceCommitCommand(), deviceRollbackCommand(),
		},
	}
}

func deviceInitCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "provision a simulated device with a trust root and its hardware name",
		ArgsUsage: " ",
		Description: `Verifies ROOT.json (self-signed by a threshold of its own root keys, not
expired) and stores it as the device's trust root, with nothing installed.
Refuses a DIR that already holds a device.

Example:
   upkit device init --state dev1 --root root.json --hardware gw-100 --slots dev1/slots`,
		Flags: []cli.Flag{
			deviceStateFlag(),
			&cli.StringFlag{Name: "root", Usage: "initial trust root `ROOT.json`", Required: true},
			&cli.StringFlag{Name: "hardware", Usage: "the device's hardware `NAME`", Required: true},
			&cli.StringFlag{Name: "slots", Usage: "directory `SLOTS` of the A/B slot files (default DIR/slots)"},
			&cli.StringFlag{Name: "product", Usage: "accept only releases of product `NAME` (default: the first one committed)"},
			&cli.StringFlag{Name: "now", Usage: "reference `TIME` (RFC 3339) for the root's expiry (default: now)"},
		},
		Action: deviceInit,
	}
}

func deviceUpdateCommand() *cli.Command {
	return &cli.Command{
		Name:      "update",
		Usage:     "check a release and install it into the inactive slots",
		ArgsUsage: "SOURCE",
		Description: `SOURCE is a registry reference (host/repo:tag), an OCI image layout
(oci:DIR[:tag], or DIR; without a tag, the newest of its releases that the
device accepts) or a local release directory holding release.json and the
packages and deltas it lists (any file names). All checks run before any
download: signatures and threshold, expiry, freeze, hardware, release
version and security versions. Then each component is fetched as a delta
when the release has one for the installed image, else as the full package,
verified while streaming (an interrupted download resumes on the next run),
written to the inactive slot and read back. Nothing is committed: boot the
new slots, then run "device commit" (or "device rollback").

Exit codes: 0 installed and awaiting commit (or already staged), 3 nothing
to do, 1 refused (with the reason), 2 usage error.

Example:
   upkit device update --state dev1 oci:release-layout:12
   upkit device update --state dev1 --now 2026-06-01T00:00:00Z ./release-12/
   upkit device update --state dev1 --root-chain root-2.json localhost:5000/gw:13`,
		Flags: []cli.Flag{
			deviceStateFlag(),
			&cli.StringFlag{Name: "now", Usage: "device clock `TIME` (RFC 3339) for expiry checks (default: now)"},
			&cli.StringSliceFlag{Name: "root-chain", Usage: "newer trust root `ROOT.json` to rotate to first, in version order (repeatable)"},
			&cli.StringFlag{Name: "release", Usage: "release envelope `FILE` for a local directory (default DIR/release.json)"},
			&cli.BoolFlag{Name: "plain-http", Usage: "allow plain HTTP to a registry that is not on loopback"},
			cliutil.TimeoutFlag(),
			&cli.BoolFlag{Name: "full", Usage: "fetch full packages even where a delta applies (e.g. after a delta base mismatch)"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON on stdout"},
		},
		Action: deviceUpdate,
	}
}

func deviceStatusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the trust root, counters, installed and pending images",
		ArgsUsage: " ",
		Description: `Example:
   upkit device status --state dev1
   upkit device status --state dev1 --json | jq .components`,
		Flags:  []cli.Flag{deviceStateFlag(), &cli.BoolFlag{Name: "json", Usage: "print the status as JSON on stdout"}},
		Action: deviceStatus,
	}
}

func deviceCommitCommand() *cli.Command {
	return &cli.Command{
		Name:      "commit",
		Usage:     "commit the pending update (after a healthy boot): advance counters, switch slots",
		ArgsUsage: " ",
		Description: `Reads the pending slots back, then records them as installed and raises
the release version and each component's security counter. After this
the device never accepts anything older.

Example:
   upkit device commit --state dev1`,
		Flags:  []cli.Flag{deviceStateFlag()},
		Action: deviceCommit,
	}
}

func deviceRollbackCommand() *cli.Command {
	return &cli.Command{
		Name:      "rollback",
		Usage:     "abandon the pending update and boot the committed slots again",
		ArgsUsage: " ",
		Description: `Counters and versions stay where they are.

Example:
   upkit device rollback --state dev1`,
		Flags:  []cli.Flag{deviceStateFlag()},
		Action: deviceRollback,
	}
}

// openDevice opens the simulated device in --state DIR.
func openDevice(c *cli.Context) (*device.Device, error) {
	dir := c.String("state")
	d, _, err := devicedir.Open(dir, deviceProgress(c))
	if errors.Is(err, devicedir.ErrNoDevice) {
		return nil, usageError("%s is not a device directory (run `upkit device init --state %s ...` first)", dir, dir)
	}
	return d, err
}

func deviceInit(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	now, err := nowFlag(c)
	if err != nil {
		return err
	}
	dir := c.String("state")
	rootEnv, err := manifest.ReadFile(c.String("root"))
	if err != nil {
		return err
	}
	cfg := devicedir.Config{Hardware: c.String("hardware"), Product: c.String("product"), Slots: c.String("slots")}
	d, got, err := devicedir.Init(c.Context, dir, cfg, rootEnv, now)
	switch {
	case errors.Is(err, devicedir.ErrExists):
		return usageError("%s already holds a device (remove it to start over)", dir)
	case errors.Is(err, device.ErrConfig):
		return usageError("%v", err)
	case err != nil:
		return verifyError(fmt.Errorf("trust root %s: %w", c.String("root"), err))
	}
	st, err := d.Status(c.Context)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "device initialized in %s: hardware %s, trust root version %d, slots in %s\n", dir, got.Hardware, st.RootVersion, got.Slots)
	return nil
}

func deviceUpdate(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one SOURCE (registry reference, oci:DIR or release directory)"); err != nil {
		return err
	}
	now, err := nowFlag(c)
	if err != nil {
		return err
	}
	d, err := openDevice(c)
	if err != nil {
		return err
	}
	var chain [][]byte
	for _, p := range c.StringSlice("root-chain") {
		b, err := manifest.ReadFile(p)
		if err != nil {
			return err
		}
		chain = append(chain, b)
	}
	opts := &oci.Options{PlainHTTP: c.Bool("plain-http"), Timeout: cliutil.Timeout(c)}
	src, err := devicedir.OpenNewest(c.Context, d, c.Args().First(), c.String("release"), now, opts)
	if err != nil {
		return err
	}
	before, err := d.Status(c.Context)
	if err != nil {
		return err
	}
	plan, note, err := devicedir.Plan(c.Context, d, src, chain, now, c.Bool("full"), opts)
	if errors.Is(err, device.ErrNothingToDo) {
		return withExitCode(exitNothingToDo, err)
	}
	if err != nil {
		return verifyError(fmt.Errorf("update refused: %w", err))
	}
	if note != "" {
		fmt.Fprintf(c.App.ErrWriter, "note: %s\n", note)
	}
	return deviceInstall(c, d, src.Blobs, plan, before, now)
}

// deviceInstall installs a checked plan and reports it.
func deviceInstall(c *cli.Context, d *device.Device, src device.Source, plan *device.Plan, before *device.Status, now time.Time) error {
	errw := c.App.ErrWriter
	fmt.Fprintf(errw, "release %s version %d (created %s, expires %s) verified against trust root version %d\n",
		plan.Product, plan.ReleaseVersion, plan.Created.Format(time.RFC3339), plan.Expires.Format(time.RFC3339), plan.RootVersion)
	for _, name := range plan.Unchanged {
		fmt.Fprintf(errw, "  %s: already installed\n", name)
	}
	res, err := d.Install(c.Context, src, plan, now)
	if res != nil {
		printInstalled(errw, before, res)
	}
	if err != nil {
		if errors.Is(err, device.ErrBaseMismatch) {
			err = fmt.Errorf("%w (the committed slot differs from the recorded image; --full fetches full packages)", err)
		} else if errors.Is(err, device.ErrTooLarge) {
			err = fmt.Errorf("%w (--full fetches full packages instead of deltas)", err)
		}
		return verifyError(fmt.Errorf("update failed: %w", err))
	}
	var fetched, full int64
	for _, im := range res.Images {
		fetched += im.Fetched
		full += im.PackageSize
	}
	if res.AlreadyStaged {
		fmt.Fprintln(errw, "already installed and verified; awaiting commit: boot it, then run `upkit device commit` (or `upkit device rollback`)")
	} else {
		fmt.Fprintf(errw, "installed: fetched %s in all, full packages would be %s; awaiting commit: boot the new slots, then run `upkit device commit` (or `upkit device rollback`)\n",
			humanSize(fetched), humanSize(full))
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, res)
	}
	return nil
}

func printInstalled(w io.Writer, before *device.Status, res *device.Result) {
	old := map[string]string{}
	for _, cs := range before.Components {
		old[cs.Component] = cs.Version
	}
	for _, im := range res.Images {
		from := old[im.Component]
		if from == "" {
			from = "(none)"
		}
		how := fmt.Sprintf("full package %s", humanSize(im.BlobSize))
		if im.Method == device.MethodDelta {
			how = fmt.Sprintf("delta %s (full package %s)", humanSize(im.BlobSize), humanSize(im.PackageSize))
			if im.Unlisted {
				how = fmt.Sprintf("attached delta %s, unsigned, result checked against the signed digest (full package %s)", humanSize(im.BlobSize), humanSize(im.PackageSize))
			}
		}
		got := fmt.Sprintf("fetched %s", humanSize(im.Fetched))
		if im.ResumedAt > 0 {
			got += fmt.Sprintf(" (resumed at %s)", humanSize(im.ResumedAt))
		}
		if res.AlreadyStaged {
			got = "already staged"
		}
		fmt.Fprintf(w, "  %s %s -> %s: %s, %s, written to slot %s\n", im.Component, from, im.Version, how, got, im.Slot)
	}
}

func deviceStatus(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	d, err := openDevice(c)
	if err != nil {
		return err
	}
	st, err := d.Status(c.Context)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, st)
	}
	w := c.App.Writer
	product := st.Product
	if product == "" {
		product = "(none yet)"
	}
	fmt.Fprintf(w, "hardware %s, product %s, trust root version %d, release version %d\n", st.Hardware, product, st.RootVersion, st.ReleaseVersion)
	if !st.NewestCreated.IsZero() {
		fmt.Fprintf(w, "newest release seen: created %s\n", st.NewestCreated.Format(time.RFC3339))
	}
	if len(st.Components) == 0 {
		fmt.Fprintln(w, "nothing installed")
	}
	for _, cs := range st.Components {
		fmt.Fprintf(w, "  %s %s: slot %s (boots %s), security version %d, counter %d, %s, %s\n",
			cs.Component, cs.Version, cs.Slot, cs.BootSlot, cs.SecurityVersion, cs.Counter, humanSize(cs.PayloadSize), cs.PayloadDigest)
	}
	if p := st.Pending; p != nil {
		fmt.Fprintf(w, "pending: release version %d, awaiting commit or rollback\n", p.ReleaseVersion)
		for _, name := range slices.Sorted(maps.Keys(p.Images)) {
			im := p.Images[name]
			fmt.Fprintf(w, "  %s %s: slot %s, security version %d\n", name, im.Version, im.Slot, im.SecurityVersion)
		}
	}
	return nil
}

func deviceCommit(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	d, err := openDevice(c)
	if err != nil {
		return err
	}
	if err := d.Commit(c.Context); err != nil {
		return verifyError(err)
	}
	st, err := d.Status(c.Context)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "committed release version %d\n", st.ReleaseVersion)
	for _, cs := range st.Components {
		fmt.Fprintf(c.App.ErrWriter, "  %s %s: slot %s, security counter %d\n", cs.Component, cs.Version, cs.Slot, cs.Counter)
	}
	return nil
}

func deviceRollback(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	d, err := openDevice(c)
	if err != nil {
		return err
	}
	if err := d.Rollback(c.Context); err != nil {
		return verifyError(err)
	}
	st, err := d.Status(c.Context)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "rolled back: release version %d stays committed\n", st.ReleaseVersion)
	return nil
}
