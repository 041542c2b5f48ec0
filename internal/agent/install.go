package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/device/boot"
	"github.com/upkit/upkit/internal/devicedir"
	"github.com/upkit/upkit/oci"
)

// InstallResult says what Install did.
type InstallResult struct {
	Product        string `json:"product,omitempty"`
	ReleaseVersion uint64 `json:"releaseVersion,omitempty"`
	// UpToDate: the release is the committed one (nothing was done).
	UpToDate bool `json:"upToDate,omitempty"`
	// Images are the components written (or found already written).
	Images        []device.InstalledResult `json:"images,omitempty"`
	AlreadyStaged bool                     `json:"alreadyStaged,omitempty"`
	// Tried is the slot the bootloader boots next for a trial ("" when
	// the bootloader's component is not part of the update).
	Tried string `json:"tried,omitempty"`
	// Rebooting: the reboot command ran.
	Rebooting bool `json:"rebooting,omitempty"`
}

// Install checks the release at source (a registry reference, an OCI
// image layout folder or oci:DIR[:tag], a release folder; "" for the
// configured source), installs it into the inactive slots, makes the
// bootloader try the new slot of its component (with boot counting: the
// update is not committed until its first boot is healthy) and, with
// reboot, runs the reboot command. The caller holds the lock (Lock).
//
// It returns device.ErrNothingToDo (wrapped) when the release is the
// committed one, an error wrapping ErrRefused when the device refuses it
// (the reason wrapped too), ErrNoSource when there is no source, and
// other errors for what may pass on a later try (a registry out of
// reach, a power cut in the middle: the next Install resumes).
func (a *Agent) Install(ctx context.Context, source string, reboot bool) (*InstallResult, error) {
	booted, err := a.prepare(ctx)
	if err != nil {
		return nil, err
	}
	comp := a.cfg.Bootloader.Component
	st, err := a.dev.Status(ctx)
	if err != nil {
		return nil, err
	}
	if p := st.Pending; p != nil && booted != "" && p.Images[comp].Slot == booted {
		return nil, fmt.Errorf("agent: release %d is pending in the running slot %s: `upkit-agent boot` (upkit-agent-boot.service) commits or rolls it back first", p.ReleaseVersion, boot.Bootname(booted))
	}
	if source == "" {
		source = a.cfg.Source.target()
	}
	if source == "" {
		return nil, fmt.Errorf("%w: none configured (source.registry or source.layout) and none given", ErrNoSource)
	}
	if strings.HasPrefix(source, "/") {
		if _, err := os.Stat(source); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s is not there (no USB stick?)", ErrNoSource, source)
		}
	}
	now := a.Now()
	a.log.Infof("check: %s", source)
	src, err := devicedir.OpenNewest(ctx, a.dev, source, "", now, a.opts)
	if err != nil {
		// A folder with neither an OCI image layout nor a release.json (a
		// stick's mount point with no stick) holds no release either.
		if errors.Is(err, oci.ErrNotRelease) || errors.Is(err, oci.ErrNotFound) || strings.HasPrefix(source, "/") && errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s: %w", ErrNoSource, source, err)
		}
		return nil, err
	}
	plan, note, err := devicedir.Plan(ctx, a.dev, src, nil, now, false, a.opts)
	res := &InstallResult{}
	if plan != nil {
		res.Product, res.ReleaseVersion = plan.Product, plan.ReleaseVersion
	}
	switch {
	case errors.Is(err, device.ErrNothingToDo):
		res.UpToDate = true
		a.log.Infof("check: release %s version %d is the committed one: nothing to do", plan.Product, plan.ReleaseVersion)
		return res, err
	case err != nil && refusal(err):
		a.log.Errorf("check: release refused: %v", err)
		return res, fmt.Errorf("%w: %w", ErrRefused, err)
	case err != nil:
		return res, err
	}
	if note != "" {
		a.log.Warnf("check: %s", note)
	}
	a.log.Infof("check: release %s version %d verified against trust root version %d: %s", plan.Product, plan.ReleaseVersion, plan.RootVersion, planSummary(st, plan))
	if err := a.step("check"); err != nil {
		return res, err
	}

	ir, err := a.dev.Install(ctx, src.Blobs, plan, now)
	if errors.Is(err, device.ErrBaseMismatch) {
		a.log.Warnf("write: %v; fetching full packages instead", err)
		plan.UseFullPackages()
		ir, err = a.dev.Install(ctx, src.Blobs, plan, now)
	}
	if err != nil {
		if refusal(err) {
			return res, fmt.Errorf("%w: %w", ErrRefused, err)
		}
		return res, err
	}
	res.Images, res.AlreadyStaged = ir.Images, ir.AlreadyStaged
	for _, im := range ir.Images {
		if ir.AlreadyStaged {
			a.log.Infof("installed: %s %s in slot %s: already staged and verified again", im.Component, im.Version, bootname(im.Slot))
			continue
		}
		how := "full package"
		if im.Method == device.MethodDelta {
			how = "delta"
			if im.Unlisted {
				how = "attached delta"
			}
		}
		a.log.Infof("installed: %s %s into slot %s: %s, fetched %d of %d bytes (resumed at %d; full package %d bytes)",
			im.Component, im.Version, bootname(im.Slot), how, im.Fetched, im.BlobSize, im.ResumedAt, im.PackageSize)
	}
	if err := a.step("install"); err != nil {
		return res, err
	}

	for _, pi := range plan.Images {
		if pi.Component != comp {
			continue
		}
		if err := a.sw.Try(ctx, pi.Slot); err != nil {
			return res, fmt.Errorf("agent: making the bootloader try slot %s: %w", boot.Bootname(pi.Slot), err)
		}
		res.Tried = pi.Slot
		tries := a.cfg.Bootloader.Tries
		if a.cfg.Bootloader.Type == "grub" || tries == 0 {
			tries = map[bool]int{true: 1, false: boot.DefaultTries}[a.cfg.Bootloader.Type == "grub"]
		}
		a.log.Infof("activate: slot %s boots next, %d %s, and stays a trial until its first boot is healthy", boot.Bootname(pi.Slot), tries, plural(tries, "try", "tries"))
	}
	if err := a.step("activate"); err != nil {
		return res, err
	}
	if !reboot {
		a.log.Infof("reboot: not rebooting (asked not to): the update boots on the next reboot")
		return res, nil
	}
	if err := a.reboot(ctx); err != nil {
		return res, err
	}
	res.Rebooting = true
	return res, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// step calls the test hook after a step; its error stops the agent there,
// as a power cut would.
func (a *Agent) step(name string) error {
	if a.afterStep != nil {
		return a.afterStep(name)
	}
	return nil
}

// planSummary describes what a plan writes, for the log.
func planSummary(st *device.Status, plan *device.Plan) string {
	if plan.Staged {
		return "already installed, awaiting its first boot"
	}
	old := map[string]string{}
	for _, c := range st.Components {
		old[c.Component] = c.Version
	}
	var parts []string
	for _, im := range plan.Images {
		from := old[im.Component]
		if from == "" {
			from = "(none)"
		}
		how := "full package " + size(im.BlobSize)
		if im.Method == device.MethodDelta {
			how = fmt.Sprintf("delta %s (full package %s)", size(im.BlobSize), size(im.PackageSize))
		}
		parts = append(parts, fmt.Sprintf("%s %s -> %s by %s into slot %s", im.Component, from, im.Version, how, bootname(im.Slot)))
	}
	for _, c := range plan.Unchanged {
		parts = append(parts, c+" unchanged")
	}
	return strings.Join(parts, ", ")
}

// reboot runs the reboot command.
func (a *Agent) reboot(ctx context.Context) error {
	a.log.Infof("reboot: %s", strings.Join(a.cfg.Reboot.Command, " "))
	if err := a.runCommand(ctx, "reboot", a.cfg.Reboot); err != nil {
		return fmt.Errorf("agent: the reboot command: %w", err)
	}
	return nil
}

// Run checks the configured source every poll interval (plus a random part
// of the jitter), installs what it finds and reboots into it, until ctx
// ends (SIGTERM) or the reboot command ran. Errors that may pass (a
// registry out of reach) are retried after RetryMin, doubling up to
// RetryMax; a refused release is logged and checked again at the next
// interval. The caller holds the lock.
func (a *Agent) Run(ctx context.Context) error {
	pl := a.cfg.Poll
	retry := time.Duration(pl.RetryMin)
	for {
		res, err := a.Install(ctx, "", true)
		var wait time.Duration
		switch {
		case ctx.Err() != nil:
			a.log.Infof("stop: stopping (a download resumes where it stopped on the next run)")
			return nil
		case err == nil && res.Rebooting:
			return nil
		case err == nil, errors.Is(err, device.ErrNothingToDo), errors.Is(err, ErrRefused), errors.Is(err, ErrNoSource):
			if errors.Is(err, ErrNoSource) {
				a.log.Infof("check: %v", err)
			}
			retry = time.Duration(pl.RetryMin)
			wait = time.Duration(pl.Interval)
			if pl.Jitter > 0 {
				wait += rand.N(time.Duration(pl.Jitter))
			}
		default:
			a.log.Errorf("error: %v", err)
			wait = retry
			retry = min(2*retry, time.Duration(pl.RetryMax))
		}
		a.log.Infof("wait: next check in %s", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			a.log.Infof("stop: stopping")
			return nil
		case <-t.C:
		}
	}
}
