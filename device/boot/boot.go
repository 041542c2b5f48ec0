// Package boot switches the slot a bootloader boots, with boot counting,
// through the bootloader's environment: GRUB's grubenv (device/grubenv) or
// U-Boot's environment (device/ubootenv), with RAUC's variables, so the
// GRUB configuration and U-Boot boot script that RAUC users have work
// unchanged (and contrib/grub/grub.cfg and contrib/u-boot/boot.cmd are
// upkit's own).
//
// # How an update boots
//
// One component (Config.Component, typically the root file system with
// its kernel) is booted by the bootloader from slot A or B; a Switch
// implements device.Slots' Activate and Active for it (and records the
// other components' choice), and partslots uses it.
//
//  1. Device.Install writes the inactive slot.
//  2. Try makes that slot the bootloader's first choice with Config.Tries
//     boot attempts (one for GRUB); the agent reboots.
//  3. The bootloader script boots the first slot of the order that has
//     attempts left, counting one down, and passes upkit.slot=A or B on the
//     kernel command line (Booted reads it).
//  4. At boot the agent compares the booted slot with the pending one
//     (Classify). The pending slot booted and is healthy: Device.Commit,
//     which calls Activate (the slot becomes the committed first choice
//     with its attempts restored). The committed slot booted instead (the
//     new one used up its attempts, or failed its health check and the
//     agent rebooted): Device.Rollback, which activates the committed slot
//     again, then MarkBad on the abandoned one.
//  5. On every healthy boot the agent calls MarkGood with the booted
//     slot: in RAUC's schemes every boot spends an attempt, so a slot that
//     is never marked good loses its turn.
//
// Activate and Active record the committed slot in the environment's
// upkit_active variable (VarActive), in the same write as the scheme's
// variables, so that Active reports the committed slot and not a trial in
// progress (Device.Install, Commit and Rollback re-activate the committed
// slot when Active disagrees with the state, which must not undo a trial).
//
// Every change is one Env.Update, atomic for both backends (a grubenv is
// replaced by rename; a redundant U-Boot environment writes the copy that
// is not current): a power cut leaves the variables before or after it. A
// change that would leave no slot bootable is refused (ErrNoBootableSlot).
package boot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/device/grubenv"
	"github.com/upkit/upkit/device/ubootenv"
)

// DefaultCmdline is where the kernel command line is read from.
const DefaultCmdline = "/proc/cmdline"

// Kernel command-line parameters naming the booted slot: ParamSlot is
// upkit's (contrib's scripts set it); ParamRAUCSlot is read too, so RAUC's
// scripts work unchanged. ParamSlot wins when both are present.
const (
	ParamSlot     = "upkit.slot"
	ParamRAUCSlot = "rauc.slot"
)

var (
	// ErrNoBootableSlot: the change would leave the bootloader no slot to
	// boot.
	ErrNoBootableSlot = errors.New("boot: no slot would be left bootable")
	// ErrConfig: an invalid Config or argument.
	ErrConfig = errors.New("boot: invalid configuration")
)

// Vars are the variables of a bootloader environment (*grubenv.Block and
// *ubootenv.Env are Vars).
type Vars interface {
	Get(name string) (string, bool)
	Set(name, value string) error
	Delete(name string)
}

// Env is a bootloader environment that is read whole and updated in one
// atomic write.
type Env interface {
	// Read returns the variables (none if the environment was never
	// written).
	Read(ctx context.Context) (Vars, error)
	// Update reads the variables, lets fn change them, and writes them
	// back atomically; an error from fn writes nothing.
	Update(ctx context.Context, fn func(Vars) error) error
}

// GRUBEnv adapts a grubenv file. A missing file reads as empty; Update
// creates it.
func GRUBEnv(f *grubenv.File) Env { return grubEnv{f} }

type grubEnv struct{ f *grubenv.File }

func (g grubEnv) Read(ctx context.Context) (Vars, error) {
	b, err := g.f.Read(ctx)
	if errors.Is(err, fs.ErrNotExist) {
		return grubenv.New(grubenv.DefaultSize)
	}
	return b, err
}

func (g grubEnv) Update(ctx context.Context, fn func(Vars) error) error {
	return g.f.Update(ctx, func(b *grubenv.Block) error { return fn(b) })
}

// UBootEnv adapts a U-Boot environment. With no valid copy, Read returns
// empty variables if the storage's Config.AllowEmpty is set, else
// ubootenv.ErrNoValidCopy.
func UBootEnv(s *ubootenv.Storage) Env { return ubootEnv{s} }

type ubootEnv struct{ s *ubootenv.Storage }

func (u ubootEnv) Read(ctx context.Context) (Vars, error) {
	e, err := u.s.Read(ctx)
	if errors.Is(err, ubootenv.ErrNoValidCopy) && u.s.Config().AllowEmpty {
		return ubootenv.NewEnv(), nil
	}
	if err != nil {
		return nil, err
	}
	return e, nil
}

func (u ubootEnv) Update(ctx context.Context, fn func(Vars) error) error {
	return u.s.Update(ctx, func(e *ubootenv.Env) error { return fn(e) })
}

// Config configures a Switch.
type Config struct {
	// Env holds the variables (GRUBEnv or UBootEnv).
	Env Env
	// Scheme is GRUB or UBoot.
	Scheme Scheme
	// Component is the component the bootloader boots from slot A or B.
	Component string
	// Tries is the boot attempts a slot gets when made primary or marked
	// good (U-Boot; default DefaultTries, at most 255). GRUB's scheme
	// always gives one.
	Tries int
	// Cmdline is the file with the kernel command line (default
	// DefaultCmdline).
	Cmdline string
}

// Switch switches the bootloader between slots A and B of one component.
type Switch struct {
	cfg Config
}

// New returns a Switch. It does no I/O.
func New(cfg Config) (*Switch, error) {
	switch {
	case cfg.Env == nil:
		return nil, fmt.Errorf("%w: no Env", ErrConfig)
	case !cfg.Scheme.valid():
		return nil, fmt.Errorf("%w: no Scheme (boot.GRUB or boot.UBoot)", ErrConfig)
	case !validComponent(cfg.Component):
		return nil, fmt.Errorf("%w: component %q", ErrConfig, cfg.Component)
	case cfg.Tries < 0 || cfg.Tries > 255:
		return nil, fmt.Errorf("%w: %d tries (1 to 255)", ErrConfig, cfg.Tries)
	}
	if cfg.Tries == 0 {
		cfg.Tries = DefaultTries
	}
	if cfg.Scheme == GRUB {
		cfg.Tries = 1
	}
	if cfg.Cmdline == "" {
		cfg.Cmdline = DefaultCmdline
	}
	return &Switch{cfg: cfg}, nil
}

// validComponent accepts device's component names.
func validComponent(c string) bool {
	if c == "" || len(c) > 64 || strings.Contains(c, "..") {
		return false
	}
	for i, r := range c {
		ok := 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || i > 0 && (r == '.' || r == '_' || r == '-')
		if !ok {
			return false
		}
	}
	return true
}

func checkSlot(slot string) (string, error) {
	if slot != device.SlotA && slot != device.SlotB {
		return "", fmt.Errorf("%w: slot %q (want %q or %q)", ErrConfig, slot, device.SlotA, device.SlotB)
	}
	return Bootname(slot), nil
}

// Component returns the component the bootloader boots.
func (s *Switch) Component() string { return s.cfg.Component }

// Scheme returns the switch's scheme.
func (s *Switch) Scheme() Scheme { return s.cfg.Scheme }

// parseActive reads VarActive; entries that do not parse are ignored (the
// component then reads as never activated, and the device activates its
// committed slot again, which rewrites the record).
func parseActive(v Vars) map[string]string {
	out := map[string]string{}
	val, _ := v.Get(VarActive)
	for _, f := range strings.Fields(val) {
		c, b, ok := strings.Cut(f, "=")
		slot, okb := SlotOf(b)
		if ok && okb && validComponent(c) {
			out[c] = slot
		}
	}
	return out
}

func setActive(v Vars, m map[string]string) error {
	var parts []string
	for c, slot := range m {
		parts = append(parts, c+"="+Bootname(slot))
	}
	sort.Strings(parts)
	return v.Set(VarActive, strings.Join(parts, " "))
}

// Activate implements device.Slots: slot becomes component's committed
// slot. For the switch's component, the bootloader boots it first, with
// its attempts restored (RAUC's set_primary); for another component, the
// choice is only recorded (whatever uses that component reads Active). It
// is idempotent.
func (s *Switch) Activate(ctx context.Context, component, slot string) error {
	b, err := checkSlot(slot)
	if err != nil {
		return err
	}
	if !validComponent(component) {
		return fmt.Errorf("%w: component %q", ErrConfig, component)
	}
	return s.cfg.Env.Update(ctx, func(v Vars) error {
		if component == s.cfg.Component {
			if err := s.cfg.Scheme.setPrimary(v, b, s.cfg.Tries); err != nil {
				return err
			}
		}
		m := parseActive(v)
		m[component] = slot
		return setActive(v, m)
	})
}

// Active implements device.Slots: the slot last passed to Activate for
// component, "" if none. It is the committed slot, not a trial (Try) in
// progress; Primary says what the bootloader boots next.
func (s *Switch) Active(ctx context.Context, component string) (string, error) {
	v, err := s.cfg.Env.Read(ctx)
	if err != nil {
		return "", err
	}
	return parseActive(v)[component], nil
}

// Try makes slot the bootloader's first choice with Config.Tries attempts
// (GRUB: one), without recording it as committed: if the booted system
// never marks it good, the bootloader falls back to the other slot. Call it
// after Device.Install, before rebooting.
func (s *Switch) Try(ctx context.Context, slot string) error {
	b, err := checkSlot(slot)
	if err != nil {
		return err
	}
	return s.cfg.Env.Update(ctx, func(v Vars) error {
		return s.cfg.Scheme.setPrimary(v, b, s.cfg.Tries)
	})
}

// MarkGood records a healthy boot of slot: its attempts are restored (GRUB:
// X_OK=1, X_TRY=0; U-Boot: BOOT_X_LEFT=Tries), the order is not changed.
// The agent calls it on every healthy boot, with the booted slot.
func (s *Switch) MarkGood(ctx context.Context, slot string) error {
	b, err := checkSlot(slot)
	if err != nil {
		return err
	}
	return s.cfg.Env.Update(ctx, func(v Vars) error {
		return s.cfg.Scheme.markGood(v, b, s.cfg.Tries)
	})
}

// MarkBad stops the bootloader from booting slot until it is tried or
// activated again (GRUB: X_OK=0; U-Boot: X leaves BOOT_ORDER, no attempts
// left): for the slot of an update that was rolled back. It fails with
// ErrNoBootableSlot, changing nothing, if the other slot is not bootable.
func (s *Switch) MarkBad(ctx context.Context, slot string) error {
	b, err := checkSlot(slot)
	if err != nil {
		return err
	}
	return s.cfg.Env.Update(ctx, func(v Vars) error {
		if err := s.cfg.Scheme.markBad(v, b); err != nil {
			return err
		}
		if !s.cfg.Scheme.anyBootable(v) {
			return fmt.Errorf("%w: marking slot %s bad", ErrNoBootableSlot, b)
		}
		return nil
	})
}

// Primary returns the slot the bootloader boots next: the first slot of
// the order with attempts left, "" if none has (the scripts then give the
// slots their attempts back and start over).
func (s *Switch) Primary(ctx context.Context) (string, error) {
	v, err := s.cfg.Env.Read(ctx)
	if err != nil {
		return "", err
	}
	slot, _ := SlotOf(s.cfg.Scheme.primary(v))
	return slot, nil
}

// Booted returns the slot the running kernel was booted from for
// component: from the kernel command line (upkit.slot=A|B, else
// rauc.slot=A|B), for the switch's component. It returns "" for other
// components and when the command line names no slot or another name (a
// rescue system, a USB stick).
func (s *Switch) Booted(component string) (string, error) {
	if component != s.cfg.Component {
		return "", nil
	}
	data, err := device.ReadFileLimit(device.OSFS{}, s.cfg.Cmdline, 64<<10)
	if err != nil {
		return "", fmt.Errorf("boot: reading the kernel command line: %w", err)
	}
	return BootedSlot(string(data)), nil
}

// BootedSlot returns the slot a kernel command line names (see
// Switch.Booted), "" if none. The last occurrence of a parameter wins, as
// for the kernel's own parameters.
func BootedSlot(cmdline string) string {
	var upkit, rauc string
	for _, f := range strings.Fields(cmdline) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		switch k {
		case ParamSlot:
			upkit = v
		case ParamRAUCSlot:
			rauc = v
		}
	}
	if upkit != "" {
		slot, _ := SlotOf(upkit)
		return slot
	}
	slot, _ := SlotOf(rauc)
	return slot
}

// SlotStatus is the bootloader's view of one slot.
type SlotStatus struct {
	Slot string `json:"slot"`
	// InOrder: the slot is in the boot order.
	InOrder bool `json:"inOrder"`
	// TriesLeft is the boot attempts left (GRUB: 1 or 0).
	TriesLeft int `json:"triesLeft"`
}

// Status is the bootloader's view of the slots.
type Status struct {
	Scheme string `json:"scheme"`
	// Order is the boot order, as slots.
	Order []string `json:"order"`
	// Primary is the slot booted next ("" if none has attempts left).
	Primary string       `json:"primary"`
	Slots   []SlotStatus `json:"slots"`
	// Active is upkit's record of each component's committed slot.
	Active map[string]string `json:"active"`
}

// Status reads the environment.
func (s *Switch) Status(ctx context.Context) (*Status, error) {
	v, err := s.cfg.Env.Read(ctx)
	if err != nil {
		return nil, err
	}
	sc := s.cfg.Scheme
	st := &Status{Scheme: sc.String(), Order: []string{}, Active: parseActive(v)}
	st.Primary, _ = SlotOf(sc.primary(v))
	order := sc.order(v)
	for _, b := range order {
		slot, _ := SlotOf(b)
		st.Order = append(st.Order, slot)
	}
	for _, b := range []string{BootnameA, BootnameB} {
		slot, _ := SlotOf(b)
		in := false
		for _, x := range order {
			in = in || x == b
		}
		st.Slots = append(st.Slots, SlotStatus{Slot: slot, InOrder: in, TriesLeft: sc.triesLeft(v, b)})
	}
	return st, nil
}

// Outcome says what a boot means for an update, for the boot component.
type Outcome int

const (
	// Normal: nothing pending and the committed slot booted: MarkGood.
	Normal Outcome = iota
	// TrialBooted: the pending slot booted: run the health check, then
	// Device.Commit (or Device.Rollback if unhealthy, and reboot).
	TrialBooted
	// FellBack: an update is pending but another slot booted (the new
	// one used up its attempts): Device.Rollback, then MarkBad on the
	// pending slot.
	FellBack
	// Unexpected: nothing pending and the committed slot did not boot
	// (the committed slot failed and the bootloader fell back to the
	// other, older one; or an interrupted Commit): Device.Recover points
	// the bootloader at the committed slot again; report it.
	Unexpected
	// Elsewhere: the kernel was not booted from slot A or B (a rescue
	// system, a USB stick): change nothing.
	Elsewhere
)

// Classify returns what a boot from booted means, given the committed
// slot and the pending one ("" if no update is pending), all device slots.
func Classify(booted, committed, pending string) Outcome {
	switch {
	case booted == "":
		return Elsewhere
	case pending != "" && booted == pending:
		return TrialBooted
	case pending != "":
		return FellBack
	case booted == committed || committed == "":
		return Normal
	}
	return Unexpected
}

// String names an outcome.
func (o Outcome) String() string {
	switch o {
	case Normal:
		return "normal"
	case TrialBooted:
		return "trial-booted"
	case FellBack:
		return "fell-back"
	case Unexpected:
		return "unexpected"
	case Elsewhere:
		return "elsewhere"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}
