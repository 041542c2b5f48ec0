// Package tpmcounter keeps anti-rollback counters in a TPM 2.0's NV
// counter indices (TPM_NT_COUNTER), one per component: the TPM only ever
// increments them, and a counter index deleted and defined again (even
// after TPM2_Clear) starts above the highest value any counter of the TPM
// ever had. It implements hwcounter.Counters; wrap the device's file store
// with hwcounter.New.
//
// # Values
//
// An index is provisioned by defining it (owner hierarchy, attributes
// ownerwrite|ownerread|no_da, nt=counter, 8 bytes) and incrementing it
// once, so that a provisioned index is always written: the component's
// counter is the index's value minus one. Read provisions a missing or
// never-written index itself. This way an index that was cleared or
// deleted by someone with owner authorization comes back at or above its
// old value (the TPM's rule for new counters), never at zero. An index at
// the handle that is not an 8-byte counter is an error (ErrNotCounter).
//
// Raise increments one step at a time (TPM2_NV_Increment has no other
// way), at most Config.MaxStep steps per call: give security versions
// small, consecutive values.
//
// # Protecting the indices
//
// The TPM keeps the counters from going down; who may increment (or, with
// owner authorization, delete and re-create, which never lowers them) is
// the owner hierarchy's authorization: set one (tpm2_changeauth -c owner)
// and give it as Config.OwnerAuth, or anyone with access to /dev/tpmrm0
// can raise a counter and so refuse every later update.
//
// Inspect from outside with tpm2-tools: tpm2_nvreadpublic, and
// tpm2_nvread -C o -s 8 INDEX (a big-endian uint64: the counter plus one).
package tpmcounter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// DefaultDevice is the kernel's TPM resource manager.
const DefaultDevice = "/dev/tpmrm0"

// DefaultMaxStep bounds the increments of one Raise.
const DefaultMaxStep = 1024

// NV index handles: the TPM_HT_NV_INDEX range.
const (
	minIndex = 0x01000000
	maxIndex = 0x01ffffff
)

var (
	// ErrNotCounter: the NV index at a component's handle is not an
	// 8-byte counter.
	ErrNotCounter = errors.New("tpmcounter: NV index is not a counter")
	// ErrStep: raising a counter would take more increments than
	// Config.MaxStep.
	ErrStep = errors.New("tpmcounter: counter step too large")
	// ErrConfig: an invalid Config.
	ErrConfig = errors.New("tpmcounter: invalid configuration")
)

// Config configures Counters.
type Config struct {
	// Indices maps each component to the NV index handle of its counter
	// (0x01000000 to 0x01ffffff; the owner's range is 0x01800000 to
	// 0x01bfffff).
	Indices map[string]uint32
	// Open connects to the TPM for one operation (default:
	// OpenDevice(DefaultDevice)).
	Open func() (transport.TPMCloser, error)
	// OwnerAuth is the owner hierarchy's authorization value (empty on a
	// TPM whose owner set none).
	OwnerAuth []byte
	// MaxStep bounds the increments of one Raise (default
	// DefaultMaxStep).
	MaxStep uint64
}

// Counters are counters in a TPM's NV indices.
type Counters struct {
	cfg Config
}

// New returns Counters. It does not touch the TPM.
func New(cfg Config) (*Counters, error) {
	if len(cfg.Indices) == 0 {
		return nil, fmt.Errorf("%w: no indices", ErrConfig)
	}
	seen := map[uint32]string{}
	idx := make(map[string]uint32, len(cfg.Indices))
	for c, h := range cfg.Indices {
		if c == "" {
			return nil, fmt.Errorf("%w: empty component name", ErrConfig)
		}
		if h < minIndex || h > maxIndex {
			return nil, fmt.Errorf("%w: %s: handle %#x is not an NV index (%#x to %#x)", ErrConfig, c, h, minIndex, maxIndex)
		}
		if other, dup := seen[h]; dup {
			return nil, fmt.Errorf("%w: %s and %s share NV index %#x", ErrConfig, c, other, h)
		}
		seen[h] = c
		idx[c] = h
	}
	cfg.Indices = idx
	if cfg.Open == nil {
		cfg.Open = OpenDevice(DefaultDevice)
	}
	if cfg.MaxStep == 0 {
		cfg.MaxStep = DefaultMaxStep
	}
	return &Counters{cfg: cfg}, nil
}

// OpenDevice opens a TPM character device (/dev/tpmrm0).
func OpenDevice(path string) func() (transport.TPMCloser, error) {
	return func() (transport.TPMCloser, error) { return linuxtpm.Open(path) }
}

// OpenSocket connects to a TPM that takes raw TPM 2.0 commands on a unix
// socket: swtpm's --server type=unixio.
func OpenSocket(path string) func() (transport.TPMCloser, error) {
	return func() (transport.TPMCloser, error) {
		c, err := net.DialTimeout("unix", path, 10*time.Second)
		if err != nil {
			return nil, err
		}
		return &stream{c: c}, nil
	}
}

// stream sends commands over a byte stream and reads each response whole:
// its header says its size.
type stream struct{ c net.Conn }

// maxResponse bounds a response (TPM responses are at most a few KiB).
const maxResponse = 64 << 10

func (s *stream) Send(cmd []byte) ([]byte, error) {
	s.c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := s.c.Write(cmd); err != nil {
		return nil, err
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(s.c, hdr); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[2:6])
	if n < 10 || n > maxResponse {
		return nil, fmt.Errorf("tpmcounter: TPM response of %d bytes", n)
	}
	rsp := make([]byte, n)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.c, rsp[10:]); err != nil {
		return nil, err
	}
	return rsp, nil
}

func (s *stream) Close() error { return s.c.Close() }

// Components implements hwcounter.Counters.
func (c *Counters) Components() []string {
	out := make([]string, 0, len(c.cfg.Indices))
	for comp := range c.cfg.Indices {
		out = append(out, comp)
	}
	sort.Strings(out)
	return out
}

// Index returns the NV index handle of a component's counter.
func (c *Counters) Index(component string) (uint32, bool) {
	h, ok := c.cfg.Indices[component]
	return h, ok
}

func (c *Counters) index(component string) (tpm2.TPMHandle, error) {
	h, ok := c.cfg.Indices[component]
	if !ok {
		return 0, fmt.Errorf("%w: no NV index for component %q", ErrConfig, component)
	}
	return tpm2.TPMHandle(h), nil
}

// Read implements hwcounter.Counters. It provisions the index if it is
// missing or was never written.
func (c *Counters) Read(ctx context.Context, component string) (uint64, error) {
	h, err := c.index(component)
	if err != nil {
		return 0, err
	}
	t, err := c.cfg.Open()
	if err != nil {
		return 0, fmt.Errorf("tpmcounter: opening the TPM: %w", err)
	}
	defer t.Close()
	raw, err := c.provisioned(ctx, t, h)
	if err != nil {
		return 0, fmt.Errorf("tpmcounter: %s (NV index %#x): %w", component, uint32(h), err)
	}
	return raw - 1, nil
}

// Raise implements hwcounter.Counters: it increments the index until the
// counter is at least v (ErrStep if that takes more than MaxStep
// increments).
func (c *Counters) Raise(ctx context.Context, component string, v uint64) error {
	h, err := c.index(component)
	if err != nil {
		return err
	}
	t, err := c.cfg.Open()
	if err != nil {
		return fmt.Errorf("tpmcounter: opening the TPM: %w", err)
	}
	defer t.Close()
	raw, err := c.provisioned(ctx, t, h)
	if err != nil {
		return fmt.Errorf("tpmcounter: %s (NV index %#x): %w", component, uint32(h), err)
	}
	have := raw - 1
	if have >= v {
		return nil
	}
	if v-have > c.cfg.MaxStep {
		return fmt.Errorf("%w: %s from %d to %d takes %d increments, at most %d", ErrStep, component, have, v, v-have, c.cfg.MaxStep)
	}
	for have < v {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.increment(t, h); err != nil {
			return fmt.Errorf("tpmcounter: incrementing %s (NV index %#x): %w", component, uint32(h), err)
		}
		have++
	}
	raw, err = c.read(t, h)
	if err != nil {
		return fmt.Errorf("tpmcounter: reading back %s (NV index %#x): %w", component, uint32(h), err)
	}
	if raw-1 < v {
		return fmt.Errorf("tpmcounter: %s (NV index %#x) reads %d after raising it to %d", component, uint32(h), raw-1, v)
	}
	return nil
}

func (c *Counters) owner() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(c.cfg.OwnerAuth)}
}

// provisioned returns the index's value, defining and incrementing it
// first if it is missing or unwritten.
func (c *Counters) provisioned(ctx context.Context, t transport.TPM, h tpm2.TPMHandle) (uint64, error) {
	pub, err := readPublic(t, h)
	if errors.Is(err, tpm2.TPMRCHandle) {
		if err := c.define(t, h); err != nil {
			return 0, fmt.Errorf("defining the counter: %w", err)
		}
		pub, err = readPublic(t, h)
	}
	if err != nil {
		return 0, err
	}
	if pub.Attributes.NT != tpm2.TPMNTCounter || pub.DataSize != 8 {
		return 0, fmt.Errorf("%w: type %d, %d bytes (want a counter, 8 bytes)", ErrNotCounter, pub.Attributes.NT, pub.DataSize)
	}
	if !pub.Attributes.Written {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := c.increment(t, h); err != nil {
			return 0, fmt.Errorf("initializing the counter: %w", err)
		}
	}
	return c.read(t, h)
}

func readPublic(t transport.TPM, h tpm2.TPMHandle) (*tpm2.TPMSNVPublic, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: h}.Execute(t)
	if err != nil {
		return nil, err
	}
	return rsp.NVPublic.Contents()
}

func (c *Counters) define(t transport.TPM, h tpm2.TPMHandle) error {
	_, err := tpm2.NVDefineSpace{
		AuthHandle: c.owner(),
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex: h,
			NameAlg: tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{
				OwnerWrite: true,
				OwnerRead:  true,
				NT:         tpm2.TPMNTCounter,
				NoDA:       true,
			},
			DataSize: 8,
		}),
	}.Execute(t)
	return err
}

// named returns the index with its current name (the name changes when the
// index is first written).
func named(t transport.TPM, h tpm2.TPMHandle) (tpm2.NamedHandle, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: h}.Execute(t)
	if err != nil {
		return tpm2.NamedHandle{}, err
	}
	return tpm2.NamedHandle{Handle: h, Name: rsp.NVName}, nil
}

func (c *Counters) increment(t transport.TPM, h tpm2.TPMHandle) error {
	nh, err := named(t, h)
	if err != nil {
		return err
	}
	_, err = tpm2.NVIncrement{AuthHandle: c.owner(), NVIndex: nh}.Execute(t)
	return err
}

func (c *Counters) read(t transport.TPM, h tpm2.TPMHandle) (uint64, error) {
	nh, err := named(t, h)
	if err != nil {
		return 0, err
	}
	rsp, err := tpm2.NVRead{AuthHandle: c.owner(), NVIndex: nh, Size: 8}.Execute(t)
	if err != nil {
		return 0, err
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, fmt.Errorf("%w: read %d bytes", ErrNotCounter, len(rsp.Data.Buffer))
	}
	raw := binary.BigEndian.Uint64(rsp.Data.Buffer)
	if raw == 0 {
		return 0, fmt.Errorf("%w: a written counter reads 0", ErrNotCounter)
	}
	return raw, nil
}
