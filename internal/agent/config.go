package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/upkit/upkit/device/boot"
	"github.com/upkit/upkit/spec"
)

// DefaultConfigPath is where the agent looks for its configuration.
const DefaultConfigPath = "/etc/upkit/agent.json"

// MaxConfigSize bounds the configuration file.
const MaxConfigSize = 256 << 10

// Defaults of the configuration.
const (
	DefaultPollInterval  = time.Hour
	DefaultRetryMin      = 30 * time.Second
	DefaultHealthTimeout = 2 * time.Minute
	DefaultRebootTimeout = time.Minute
	DefaultTPMDevice     = "/dev/tpmrm0"
)

// ErrConfig: the configuration file is missing, malformed or incomplete.
var ErrConfig = errors.New("agent: invalid configuration")

// Config is the agent's configuration file (JSON; see docs/AGENT.md for
// a full example). Paths are absolute.
type Config struct {
	// Hardware is the device's hardware name, matched against the
	// releases' hardware lists.
	Hardware string `json:"hardware"`
	// Product, when set, is the only product whose releases are accepted
	// (else the first one committed is kept).
	Product string `json:"product,omitempty"`
	// State is the device state file; Staging the folder downloads are
	// kept in until they are applied (room for the largest package or
	// delta of a release). Both on a persistent, writable partition.
	State   string `json:"state"`
	Staging string `json:"staging"`
	// TrustRoot is the trust root the device starts from (a root envelope
	// signed by its own root keys), read on the first run only: later
	// roots come with releases and are kept in the state.
	TrustRoot string `json:"trustRoot"`
	// FactoryRelease, when set and present, is the signed release the
	// device was flashed with: adopted on the first run (device.Adopt),
	// with the booted slot for the bootloader's component and slot a for
	// the others, so the first update can be a delta.
	FactoryRelease string `json:"factoryRelease,omitempty"`
	// Lock is the file whose lock keeps a second agent from running
	// (default: agent.lock next to State).
	Lock string `json:"lock,omitempty"`
	// Bootloader switches the slot that boots.
	Bootloader Bootloader `json:"bootloader"`
	// Slots maps each component to its two slots: device paths or
	// PARTLABEL=label.
	Slots map[string]SlotPair `json:"slots"`
	// Counters says where the anti-rollback counters live.
	Counters Counters `json:"counters"`
	// Source is where `run` looks for updates (`install SOURCE` names
	// its own).
	Source Source `json:"source"`
	// Poll paces `run`.
	Poll Poll `json:"poll"`
	// HealthCheck is run on the first boot of an update: exit status 0
	// commits it. Without a command every update that boots is healthy.
	HealthCheck Command `json:"healthCheck"`
	// Reboot is run to boot an installed update (and after a failed
	// health check, to let the bootloader try again or fall back).
	Reboot Command `json:"reboot"`
}

// Bootloader configures boot switching (device/boot).
type Bootloader struct {
	// Type is "grub" or "u-boot".
	Type string `json:"type"`
	// Component is the component the bootloader boots from slot A or B
	// (the root file system with its kernel).
	Component string `json:"component"`
	// Grubenv is the GRUB environment block file (grub).
	Grubenv string `json:"grubenv,omitempty"`
	// FwEnvConfig is libubootenv's fw_env.config describing where U-Boot's
	// environment is (u-boot).
	FwEnvConfig string `json:"fwEnvConfig,omitempty"`
	// AllowEmpty starts from an empty environment when none is valid: for
	// a variables' file that the boot script merges (u-boot; see
	// contrib/u-boot), never for U-Boot's own saved environment.
	AllowEmpty bool `json:"allowEmpty,omitempty"`
	// FwEnvLock is the lock file shared with fw_setenv (u-boot; default
	// /var/lock/fw_printenv.lock).
	FwEnvLock string `json:"fwEnvLock,omitempty"`
	// Tries is the boot attempts an update gets (u-boot; default 3; GRUB's
	// scheme gives one).
	Tries int `json:"tries,omitempty"`
	// Cmdline is the kernel command line to read the booted slot from
	// (default /proc/cmdline).
	Cmdline string `json:"cmdline,omitempty"`
}

// SlotPair is a component's slots A and B.
type SlotPair struct {
	A string `json:"a"`
	B string `json:"b"`
}

// Counters configures where the anti-rollback counters live.
type Counters struct {
	// Type is "file" (in the state file only) or "tpm" (TPM 2.0 NV
	// counters, device/tpmcounter, the state file for the rest).
	Type string `json:"type"`
	// Device is the TPM (tpm; default /dev/tpmrm0), or the unix socket of
	// a TPM simulator (swtpm socket --server type=unixio).
	Device string `json:"device,omitempty"`
	// Indices maps each component to its NV index handle, in hexadecimal
	// (tpm; "0x01800100").
	Indices map[string]string `json:"indices,omitempty"`
	// OwnerAuthFile holds the TPM owner hierarchy's authorization value
	// (tpm; none when the owner set none).
	OwnerAuthFile string `json:"ownerAuthFile,omitempty"`
}

// Source is where updates come from: a registry repository and tag, or an
// OCI image layout folder (a mounted USB stick).
type Source struct {
	// Registry is a repository, host[:port]/path, without tag.
	Registry string `json:"registry,omitempty"`
	// Tag is the tag or channel to follow in Registry (a tag the release
	// team moves: "stable"); default "latest".
	Tag string `json:"tag,omitempty"`
	// Layout is an OCI image layout folder; without a tag, the newest
	// release the device accepts among its tags.
	Layout string `json:"layout,omitempty"`
	// Credentials is a registry credentials file in docker's config.json
	// format (oci.FileKeychain); none: anonymous.
	Credentials string `json:"credentials,omitempty"`
	// PlainHTTP allows plain HTTP to a registry that is not on loopback.
	PlainHTTP bool `json:"plainHTTP,omitempty"`
	// Timeout bounds each registry request (default oci.DefaultTimeout).
	Timeout Duration `json:"timeout,omitempty"`
}

// Poll paces `run`: a check every Interval plus a random part of Jitter;
// after an error, RetryMin doubling up to RetryMax.
type Poll struct {
	Interval Duration `json:"interval,omitempty"`
	Jitter   Duration `json:"jitter,omitempty"`
	RetryMin Duration `json:"retryMin,omitempty"`
	RetryMax Duration `json:"retryMax,omitempty"`
}

// Command is a program and its arguments (no shell), with a time limit.
type Command struct {
	Command []string `json:"command,omitempty"`
	Timeout Duration `json:"timeout,omitempty"`
}

// Duration is a time.Duration written as in Go ("90s", "6h", "1h30m").
type Duration time.Duration

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"90s\" or \"6h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("duration %q: want a positive duration such as \"90s\" or \"6h\"", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// configFields lists every member name of the configuration, for the
// strict reader's case check.
var configFields = []string{
	"hardware", "product", "state", "staging", "trustRoot", "factoryRelease", "lock",
	"bootloader", "type", "component", "grubenv", "fwEnvConfig", "allowEmpty", "fwEnvLock", "tries", "cmdline",
	"slots", "a", "b", "counters", "device", "indices", "ownerAuthFile",
	"source", "registry", "tag", "layout", "credentials", "plainHTTP", "timeout",
	"poll", "interval", "jitter", "retryMin", "retryMax", "healthCheck", "command", "reboot",
}

// ReadConfig reads and checks the configuration file at path.
func ReadConfig(path string) (*Config, error) {
	data, err := spec.ReadFile(path, MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return ParseConfig(data, path)
}

// ParseConfig parses a configuration (what names it in errors) and checks
// it: JSON without duplicate or unknown members, every required member,
// absolute paths, known types, valid durations and handles. Defaults are
// filled in.
func ParseConfig(data []byte, what string) (*Config, error) {
	if err := spec.CheckJSON(data, what, spec.JSONRules{MaxSize: MaxConfigSize, Fields: configFields}); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, what, err)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, what, err)
	}
	return &c, nil
}

func absPath(name, p string, required bool) error {
	switch {
	case p == "" && required:
		return fmt.Errorf("%s is required", name)
	case p != "" && (!filepath.IsAbs(p) || filepath.Clean(p) != p):
		return fmt.Errorf("%s %q is not an absolute, clean path", name, p)
	}
	return nil
}

// check validates c and fills in defaults.
func (c *Config) check() error {
	if err := spec.CheckHardware(c.Hardware); err != nil {
		return fmt.Errorf("hardware: %v", err)
	}
	if c.Product != "" {
		if err := spec.CheckName(c.Product); err != nil {
			return fmt.Errorf("product: %v", err)
		}
	}
	for _, p := range []struct {
		name, path string
		required   bool
	}{
		{"state", c.State, true}, {"staging", c.Staging, true}, {"trustRoot", c.TrustRoot, true},
		{"factoryRelease", c.FactoryRelease, false}, {"lock", c.Lock, false},
		{"bootloader.cmdline", c.Bootloader.Cmdline, false}, {"bootloader.fwEnvLock", c.Bootloader.FwEnvLock, false},
		{"counters.device", c.Counters.Device, false}, {"counters.ownerAuthFile", c.Counters.OwnerAuthFile, false},
		{"source.layout", c.Source.Layout, false}, {"source.credentials", c.Source.Credentials, false},
	} {
		if err := absPath(p.name, p.path, p.required); err != nil {
			return err
		}
	}
	if c.Lock == "" {
		c.Lock = filepath.Join(filepath.Dir(c.State), "agent.lock")
	}
	if err := c.checkBootloader(); err != nil {
		return err
	}
	if len(c.Slots) == 0 {
		return fmt.Errorf("slots: no component")
	}
	if _, ok := c.Slots[c.Bootloader.Component]; !ok {
		return fmt.Errorf("slots: no slots for %s, the bootloader's component", c.Bootloader.Component)
	}
	for comp, p := range c.Slots {
		if err := spec.CheckName(comp); err != nil {
			return fmt.Errorf("slots: component %q: %v", comp, err)
		}
		if p.A == "" || p.B == "" || p.A == p.B {
			return fmt.Errorf("slots: %s needs two different slots, a and b", comp)
		}
	}
	if err := c.checkCounters(); err != nil {
		return err
	}
	if err := c.checkSource(); err != nil {
		return err
	}
	pl := &c.Poll
	if pl.Interval == 0 {
		pl.Interval = Duration(DefaultPollInterval)
	}
	if pl.Jitter == 0 {
		pl.Jitter = pl.Interval / 10
	}
	if pl.RetryMin == 0 {
		pl.RetryMin = Duration(min(DefaultRetryMin, time.Duration(pl.Interval)))
	}
	if pl.RetryMax == 0 {
		pl.RetryMax = pl.Interval
	}
	if pl.RetryMax < pl.RetryMin {
		return fmt.Errorf("poll: retryMax %s is below retryMin %s", time.Duration(pl.RetryMax), time.Duration(pl.RetryMin))
	}
	if c.HealthCheck.Timeout == 0 {
		c.HealthCheck.Timeout = Duration(DefaultHealthTimeout)
	}
	if len(c.Reboot.Command) == 0 {
		return fmt.Errorf("reboot.command is required (for example [\"/bin/systemctl\", \"reboot\"])")
	}
	if c.Reboot.Timeout == 0 {
		c.Reboot.Timeout = Duration(DefaultRebootTimeout)
	}
	for _, cmd := range [][]string{c.HealthCheck.Command, c.Reboot.Command} {
		if len(cmd) > 0 && !filepath.IsAbs(cmd[0]) {
			return fmt.Errorf("command %q: the program must be an absolute path", cmd[0])
		}
	}
	return nil
}

func (c *Config) checkBootloader() error {
	b := &c.Bootloader
	if err := spec.CheckName(b.Component); err != nil {
		return fmt.Errorf("bootloader.component: %v", err)
	}
	if b.Tries < 0 || b.Tries > 255 {
		return fmt.Errorf("bootloader.tries: %d (1 to 255)", b.Tries)
	}
	switch b.Type {
	case "grub":
		if err := absPath("bootloader.grubenv", b.Grubenv, true); err != nil {
			return err
		}
		if b.FwEnvConfig != "" || b.AllowEmpty || b.FwEnvLock != "" || b.Tries > 1 {
			return fmt.Errorf("bootloader: fwEnvConfig, allowEmpty, fwEnvLock and tries above 1 are for u-boot (GRUB's scheme gives an update one try)")
		}
	case "u-boot":
		if err := absPath("bootloader.fwEnvConfig", b.FwEnvConfig, true); err != nil {
			return err
		}
		if b.Grubenv != "" {
			return fmt.Errorf("bootloader: grubenv is for grub")
		}
	default:
		return fmt.Errorf("bootloader.type %q: want \"grub\" or \"u-boot\"", b.Type)
	}
	if b.Cmdline == "" {
		b.Cmdline = boot.DefaultCmdline
	}
	return nil
}

func (c *Config) checkCounters() error {
	k := &c.Counters
	switch k.Type {
	case "file":
		if k.Device != "" || len(k.Indices) > 0 || k.OwnerAuthFile != "" {
			return fmt.Errorf("counters: device, indices and ownerAuthFile are for type tpm")
		}
	case "tpm":
		if k.Device == "" {
			k.Device = DefaultTPMDevice
		}
		for comp := range c.Slots {
			if _, ok := k.Indices[comp]; !ok {
				return fmt.Errorf("counters.indices: no NV index for component %s", comp)
			}
		}
		for comp, h := range k.Indices {
			if _, ok := c.Slots[comp]; !ok {
				return fmt.Errorf("counters.indices: %s has no slots", comp)
			}
			if _, err := ParseHandle(h); err != nil {
				return fmt.Errorf("counters.indices: %s: %v", comp, err)
			}
		}
	default:
		return fmt.Errorf("counters.type %q: want \"file\" or \"tpm\"", k.Type)
	}
	return nil
}

// ParseHandle reads an NV index handle written in hexadecimal ("0x01800100").
func ParseHandle(s string) (uint32, error) {
	h, ok := strings.CutPrefix(strings.ToLower(s), "0x")
	if !ok || h == "" {
		return 0, fmt.Errorf("NV index %q: want hexadecimal, such as \"0x01800100\"", s)
	}
	v, err := strconv.ParseUint(h, 16, 32)
	if err != nil || v < 0x01000000 || v > 0x01ffffff {
		return 0, fmt.Errorf("NV index %q: want 0x01000000 to 0x01ffffff", s)
	}
	return uint32(v), nil
}

func (c *Config) checkSource() error {
	s := &c.Source
	if s.Registry != "" && s.Layout != "" {
		return fmt.Errorf("source: registry or layout, not both")
	}
	last := s.Registry[strings.LastIndex(s.Registry, "/")+1:]
	if s.Registry != "" && (!strings.Contains(s.Registry, "/") || strings.ContainsAny(last, ":@") || strings.Contains(s.Registry, "://") || strings.HasPrefix(s.Registry, "oci:")) {
		return fmt.Errorf("source.registry %q: want host[:port]/repository, the tag in source.tag", s.Registry)
	}
	if s.Tag != "" && s.Registry == "" && s.Layout == "" {
		return fmt.Errorf("source.tag without a registry or layout")
	}
	return nil
}

// target returns the OCI reference (or path) `run` checks: the
// registry's repository at its tag, or the layout folder.
func (s Source) target() string {
	switch {
	case s.Registry != "":
		tag := s.Tag
		if tag == "" {
			tag = "latest"
		}
		return s.Registry + ":" + tag
	case s.Layout != "" && s.Tag != "":
		return "oci:" + s.Layout + ":" + s.Tag
	}
	return s.Layout
}
