// Package agent is upkit-agent, the update agent a Linux device runs
// (cmd/upkit-agent is its command line): it links the device library with
// the bootloader switch (device/boot over device/grubenv or
// device/ubootenv), partition slots (device/partslots), anti-rollback
// counters in a file or a TPM (device/hwcounter, device/tpmcounter) and the
// OCI source (package oci), as one configuration file describes them.
//
// The agent has three jobs. Install (`install SOURCE`, and each round of
// `run`): check the release of a source, verify it, write it into the
// inactive slots, make the bootloader try the new slot (boot counting),
// reboot. Boot (`boot`, once per boot, early): record the boot, commit the
// update when its first boot is healthy, roll it back when the bootloader
// fell back to the committed slot. Status. A lock keeps a second agent
// from running at the same time; the device library keeps every step safe
// across power cuts.
package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/device/boot"
	"github.com/upkit/upkit/device/grubenv"
	"github.com/upkit/upkit/device/hwcounter"
	"github.com/upkit/upkit/device/partslots"
	"github.com/upkit/upkit/device/tpmcounter"
	"github.com/upkit/upkit/device/ubootenv"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/oci"
)

// Sentinel errors of the agent (besides device's and manifest's, which
// pass through).
var (
	// ErrLocked: another agent holds the lock.
	ErrLocked = errors.New("agent: another upkit-agent is running")
	// ErrRefused: the release failed verification or the device's policy
	// (rollback, signature, expiry, hardware, ...); the error also wraps
	// the device's or manifest's reason.
	ErrRefused = errors.New("agent: update refused")
	// ErrUnhealthy: the update's first boot failed its health check; the
	// agent rebooted for the bootloader to try again or fall back.
	ErrUnhealthy = errors.New("agent: health check failed")
	// ErrRolledBack: the update did not boot (the bootloader fell back to
	// the committed slot) or could not be committed; it was rolled back.
	ErrRolledBack = errors.New("agent: update rolled back")
	// ErrNoSource: no update source configured or present.
	ErrNoSource = errors.New("agent: no update source")
)

// Agent is one device's agent, from its configuration.
type Agent struct {
	cfg      *Config
	log      *Logger
	dev      *device.Device
	sw       *boot.Switch
	counters *tpmcounter.Counters // nil when counters are in the state file
	opts     *oci.Options
	progress *progressLog
	// Now is the device clock (time.Now).
	Now func() time.Time
	// afterStep, when set, is called after each step of Install and Boot;
	// an error stops the agent there, as a power cut would (tests).
	afterStep func(step string) error
}

// New builds the agent cfg describes. It touches no device: the
// environment, slots, TPM and state are opened when used.
func New(cfg *Config, log *Logger) (*Agent, error) {
	a := &Agent{cfg: cfg, log: log, Now: time.Now, progress: &progressLog{log: log}}
	var env boot.Env
	scheme := boot.GRUB
	switch cfg.Bootloader.Type {
	case "grub":
		env = boot.GRUBEnv(grubenv.NewFile(cfg.Bootloader.Grubenv, nil))
	case "u-boot":
		st, err := openUBootEnv(cfg.Bootloader)
		if err != nil {
			return nil, err
		}
		env, scheme = boot.UBootEnv(st), boot.UBoot
	}
	sw, err := boot.New(boot.Config{Env: env, Scheme: scheme, Component: cfg.Bootloader.Component,
		Tries: cfg.Bootloader.Tries, Cmdline: cfg.Bootloader.Cmdline})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	a.sw = sw
	pairs := map[string]partslots.Pair{}
	for c, p := range cfg.Slots {
		pairs[c] = partslots.Pair{A: p.A, B: p.B}
	}
	slots, err := partslots.New(partslots.Config{Components: pairs, Bootloader: sw})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	var store device.Store = device.NewFileStore(cfg.State, nil)
	if cfg.Counters.Type == "tpm" {
		idx := map[string]uint32{}
		for c, h := range cfg.Counters.Indices {
			idx[c], _ = ParseHandle(h) // checked by ParseConfig
		}
		tcfg := tpmcounter.Config{Indices: idx, Open: openTPM(cfg.Counters.Device)}
		if cfg.Counters.OwnerAuthFile != "" {
			auth, err := os.ReadFile(cfg.Counters.OwnerAuthFile)
			if err != nil {
				return nil, fmt.Errorf("%w: reading the TPM owner authorization: %v", ErrConfig, err)
			}
			tcfg.OwnerAuth = []byte(strings.TrimRight(string(auth), "\r\n"))
		}
		ctrs, err := tpmcounter.New(tcfg)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		a.counters = ctrs
		store = hwcounter.New(store, ctrs)
	}
	tries := device.DefaultMaxBootAttempts
	if cfg.Bootloader.Type == "u-boot" {
		// A few boots more than the bootloader gives the update: the
		// bootloader falls back first; this catches an update marked good
		// whose commit keeps failing.
		t := cfg.Bootloader.Tries
		if t == 0 {
			t = boot.DefaultTries
		}
		tries = max(tries, t+1)
	}
	a.dev, err = device.New(device.Config{
		Store: store, Slots: slots, Hardware: cfg.Hardware, Product: cfg.Product, StagingDir: cfg.Staging,
		Limits: device.Limits{MaxBootAttempts: tries}, Progress: a.progress.report,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	a.opts = &oci.Options{PlainHTTP: cfg.Source.PlainHTTP, Timeout: time.Duration(cfg.Source.Timeout)}
	if cfg.Source.Credentials != "" {
		a.opts.Keychain = oci.FileKeychain(cfg.Source.Credentials)
	} else {
		a.opts.Keychain = anonymousKeychain{}
	}
	return a, nil
}

// openTPM opens the TPM at path: a character device (/dev/tpmrm0), or the
// unix socket of a TPM simulator (swtpm socket --server type=unixio).
func openTPM(path string) func() (tpmcounter.TPM, error) {
	return func() (tpmcounter.TPM, error) {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return tpmcounter.OpenSocket(path)()
		}
		return tpmcounter.OpenDevice(path)()
	}
}

func openUBootEnv(b Bootloader) (*ubootenv.Storage, error) {
	data, err := device.ReadFileLimit(device.OSFS{}, b.FwEnvConfig, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrConfig, b.FwEnvConfig, err)
	}
	ucfg, err := ubootenv.ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, b.FwEnvConfig, err)
	}
	ucfg.AllowEmpty = b.AllowEmpty
	if b.FwEnvLock != "" {
		ucfg.LockFile = b.FwEnvLock
	}
	if err := os.MkdirAll(filepath.Dir(ucfg.LockFile), 0o755); err != nil {
		return nil, fmt.Errorf("agent: the U-Boot environment's lock: %w", err)
	}
	st, err := ubootenv.Open(*ucfg, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return st, nil
}

// Device returns the device library's Device the agent runs.
func (a *Agent) Device() *device.Device { return a.dev }

// Switch returns the bootloader switch.
func (a *Agent) Switch() *boot.Switch { return a.sw }

// prepare makes the device ready for an operation: provisioned with the
// trust root on the first run, the factory release adopted if there is
// one, and any activation a power cut interrupted completed (Recover). It
// returns the booted slot of the bootloader's component ("" when the
// kernel was not booted from a slot).
func (a *Agent) prepare(ctx context.Context) (string, error) {
	booted, err := a.sw.Booted(a.cfg.Bootloader.Component)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(a.cfg.State), 0o700); err != nil {
		return "", fmt.Errorf("agent: state folder: %w", err)
	}
	st, err := a.dev.Status(ctx)
	if errors.Is(err, device.ErrNoState) {
		root, rerr := manifest.ReadFile(a.cfg.TrustRoot)
		if rerr != nil {
			return "", fmt.Errorf("agent: the trust root: %w", rerr)
		}
		if err := a.dev.Provision(ctx, root, a.Now()); err != nil && !errors.Is(err, device.ErrProvisioned) {
			return "", fmt.Errorf("agent: provisioning with the trust root %s: %w", a.cfg.TrustRoot, err)
		}
		a.log.Infof("provision: the device starts from the trust root %s", a.cfg.TrustRoot)
		st, err = a.dev.Status(ctx)
	}
	if err != nil {
		return "", err
	}
	if len(st.Components) == 0 && st.Pending == nil && a.cfg.FactoryRelease != "" && booted != "" {
		if err := a.adopt(ctx, booted); err != nil {
			return "", err
		}
	}
	if err := a.dev.Recover(ctx); err != nil {
		return "", err
	}
	return booted, nil
}

// adopt records the factory release as committed, if its file exists.
func (a *Agent) adopt(ctx context.Context, booted string) error {
	env, err := manifest.ReadFile(a.cfg.FactoryRelease)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("agent: the factory release: %w", err)
	}
	slots := map[string]string{}
	for c := range a.cfg.Slots {
		slots[c] = device.SlotA
	}
	slots[a.cfg.Bootloader.Component] = booted
	if err := a.dev.Adopt(ctx, env, nil, slots, a.Now()); err != nil {
		return fmt.Errorf("agent: adopting the factory release %s: %w", a.cfg.FactoryRelease, err)
	}
	st, err := a.dev.Status(ctx)
	if err != nil {
		return err
	}
	a.log.Infof("adopt: the factory release %s version %d is committed (%s)", st.Product, st.ReleaseVersion, componentList(st))
	return nil
}

func componentList(st *device.Status) string {
	var parts []string
	for _, c := range st.Components {
		parts = append(parts, fmt.Sprintf("%s %s in slot %s", c.Component, c.Version, bootname(c.Slot)))
	}
	if len(parts) == 0 {
		return "nothing installed"
	}
	return strings.Join(parts, ", ")
}

// refusal reports whether err is the device refusing a release (as opposed
// to failing to reach or read it).
func refusal(err error) bool {
	for _, e := range []error{
		device.ErrRollback, device.ErrSecurityVersion, device.ErrFreeze, device.ErrHardware, device.ErrProduct,
		device.ErrNotListed, device.ErrTooLarge, device.ErrBaseMismatch, device.ErrConfig,
		manifest.ErrThreshold, manifest.ErrUnknownKey, manifest.ErrBadSignature, manifest.ErrExpired,
		manifest.ErrRootVersion, manifest.ErrMalformed,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// runCommand runs a configured command with its time limit, logging its
// output lines under step.
func (a *Agent) runCommand(ctx context.Context, step string, c Command, env ...string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(c.Timeout))
	defer cancel()
	out, err := runLogged(ctx, c.Command, env)
	for _, line := range out {
		a.log.Infof("%s: %s", step, line)
	}
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%s: %s did not finish within %s", step, c.Command[0], time.Duration(c.Timeout))
	}
	return err
}
