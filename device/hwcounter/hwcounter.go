// Package hwcounter keeps a device's anti-rollback counters in hardware that
// can only count up (a TPM 2.0's NV counters: device/tpmcounter; eFuses; an
// RPMB partition) and the rest of its State in another Store (a file).
//
// A Store is a device.Store. Save raises the hardware counters first, then
// saves the state: a power cut between the two leaves a hardware counter
// ahead of the state, never behind it. Load returns the state with each
// counter the higher of the state's and the hardware's, so a counter ahead
// (that crash, or a state file restored from a backup, or wiped and
// provisioned again) is the one the device enforces. Save refuses a state
// whose counter is below the hardware's (ErrBehind), whatever asks for it.
//
// # Implementing Counters
//
// Counters is the whole contract a hardware store fills: one monotonic
// counter per component, read, and raised to at least a value, durably.
//
//   - A TPM 2.0 (device/tpmcounter): one NV counter index per component;
//     the TPM refuses to lower one, even across TPM2_Clear.
//   - eFuses (an SoC's one-time-programmable bits): a bank of N fuses per
//     component counts in unary; Read counts the blown fuses, Raise blows
//     fuses up to v and fails once v exceeds N (plan security versions
//     accordingly: each step costs a fuse). Blow, then read back.
//   - RPMB (the replay-protected partition of eMMC and UFS): one block
//     holding every component's counter, written with the authenticated
//     write protocol (its MAC key provisioned at the factory, the RPMB
//     write counter preventing replay of an old block); Raise reads the
//     block, refuses nothing lower, writes the new one and reads it back.
//
// A counter that fails to read is an error, never a zero: Load then fails
// and the device refuses to update rather than forget its counters.
package hwcounter

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/upkit/upkit/device"
)

var (
	// ErrBehind: a state to save has a counter below the hardware's.
	ErrBehind = errors.New("hwcounter: counter below the hardware counter")
	// ErrNoCounter: a state to save has a counter for a component the
	// hardware has none for.
	ErrNoCounter = errors.New("hwcounter: no hardware counter for the component")
)

// Counters are monotonic counters kept in hardware, one per component.
type Counters interface {
	// Components returns the components that have a counter.
	Components() []string
	// Read returns the counter of component (0 if it was never raised).
	Read(ctx context.Context, component string) (uint64, error)
	// Raise makes the counter of component at least v, durably before it
	// returns. It never lowers a counter: a v at or below the counter
	// changes nothing.
	Raise(ctx context.Context, component string, v uint64) error
}

// Store is a device.Store whose security counters live in Counters.
type Store struct {
	state  device.Store
	hw     Counters
	hwComp map[string]bool
	// fileOnly lets components without a hardware counter keep theirs in
	// the state only.
	fileOnly bool
}

// Option configures a Store.
type Option func(*Store)

// AllowFileOnly lets a component that has no hardware counter keep its
// counter in the state alone (weaker: a restored state file rolls it
// back). Without it, saving such a counter above zero fails with
// ErrNoCounter, so that a component missing from the hardware's
// configuration is noticed.
func AllowFileOnly() Option { return func(s *Store) { s.fileOnly = true } }

// New returns a Store keeping the state in state (device.NewFileStore)
// and the counters of hw's components in hw.
func New(state device.Store, hw Counters, opts ...Option) *Store {
	s := &Store{state: state, hw: hw, hwComp: map[string]bool{}}
	for _, c := range hw.Components() {
		s.hwComp[c] = true
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Load implements device.Store: the state, each security counter raised to
// the hardware's when that is higher. Errors from the state store pass
// through (device.ErrNoState, device.ErrStateCorrupt); a counter that
// cannot be read fails the load.
func (s *Store) Load(ctx context.Context) (*device.State, error) {
	st, err := s.state.Load(ctx)
	if err != nil {
		return nil, err
	}
	if st.SecurityCounters == nil {
		st.SecurityCounters = map[string]uint64{}
	}
	for _, c := range sorted(s.hwComp) {
		v, err := s.hw.Read(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("hwcounter: reading the counter of %s: %w", c, err)
		}
		if v > st.SecurityCounters[c] {
			st.SecurityCounters[c] = v
		}
	}
	return st, nil
}

// Save implements device.Store: it checks that no counter of st is below
// the hardware's (ErrBehind, nothing written), raises the hardware
// counters to st's, then saves st. Counters st does not mention are left
// alone (a state provisioned again after a wipe has none; Load brings the
// hardware's back).
func (s *Store) Save(ctx context.Context, st *device.State) error {
	type raise struct {
		c    string
		v    uint64
		have uint64
	}
	var raises []raise
	for _, c := range sorted(st.SecurityCounters) {
		v := st.SecurityCounters[c]
		if !s.hwComp[c] {
			if v > 0 && !s.fileOnly {
				return fmt.Errorf("%w: %s (counter %d)", ErrNoCounter, c, v)
			}
			continue
		}
		have, err := s.hw.Read(ctx, c)
		if err != nil {
			return fmt.Errorf("hwcounter: reading the counter of %s: %w", c, err)
		}
		if v < have {
			return fmt.Errorf("%w: %s: saving %d, the hardware holds %d", ErrBehind, c, v, have)
		}
		if v > have {
			raises = append(raises, raise{c, v, have})
		}
	}
	for _, r := range raises {
		if err := s.hw.Raise(ctx, r.c, r.v); err != nil {
			return fmt.Errorf("hwcounter: raising the counter of %s from %d to %d: %w", r.c, r.have, r.v, err)
		}
	}
	return s.state.Save(ctx, st)
}

func sorted[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
