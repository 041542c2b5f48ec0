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
	"os"
	"sort"
	"time"
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
	Open func() (TPM, error)
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

// TPM runs TPM 2.0 commands: Send writes one command and returns its
// whole response. go-tpm's transport.TPMCloser has the same methods.
type TPM interface {
	Send(command []byte) ([]byte, error)
	Close() error
}

// OpenDevice opens a TPM character device (/dev/tpmrm0).
func OpenDevice(path string) func() (TPM, error) {
	return func() (TPM, error) {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if fi.Mode()&os.ModeDevice == 0 {
			return nil, fmt.Errorf("%s is not a device (%s)", path, fi.Mode())
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		// Fd puts the descriptor back in blocking mode (Go opens a
		// character device non-blocking, for its poller): the driver then
		// runs each command in the write and a read returns its response,
		// where a non-blocking read finds nothing yet (EOF).
		f.Fd()
		return deviceTPM{f}, nil
	}
}

// deviceTPM is a TPM character device. The kernel's driver takes one
// whole command per write and returns one whole response per read (the
// read waits for it), so no polling is needed; a command the TPM answers
// TPM_RC_RETRY is sent again, a few times.
type deviceTPM struct{ f *os.File }

// rcRetry is TPM_RC_RETRY: the TPM was busy, send the command again.
const rcRetry = 0x922

func (d deviceTPM) Send(cmd []byte) ([]byte, error) {
	buf := make([]byte, maxResponse)
	for try := 0; ; try++ {
		if _, err := d.f.Write(cmd); err != nil {
			return nil, err
		}
		n, err := d.f.Read(buf)
		if err != nil {
			return nil, err
		}
		rsp, err := checkResponse(buf[:n])
		if err != nil {
			return nil, err
		}
		if binary.BigEndian.Uint32(rsp[6:10]) != rcRetry || try == 9 {
			return rsp, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d deviceTPM) Close() error { return d.f.Close() }

// OpenSocket connects to a TPM that takes raw TPM 2.0 commands on a unix
// socket: swtpm's --server type=unixio.
func OpenSocket(path string) func() (TPM, error) {
	return func() (TPM, error) {
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

// checkResponse returns b, a response read whole from a device, when its
// header states the size read.
func checkResponse(b []byte) ([]byte, error) {
	if len(b) < 10 || binary.BigEndian.Uint32(b[2:6]) != uint32(len(b)) {
		return nil, fmt.Errorf("tpmcounter: a TPM response of %d bytes with a wrong or missing header", len(b))
	}
	return b, nil
}

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

func (c *Counters) index(component string) (uint32, error) {
	h, ok := c.cfg.Indices[component]
	if !ok {
		return 0, fmt.Errorf("%w: no NV index for component %q", ErrConfig, component)
	}
	return h, nil
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
		return 0, fmt.Errorf("tpmcounter: %s (NV index %#x): %w", component, h, err)
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
		return fmt.Errorf("tpmcounter: %s (NV index %#x): %w", component, h, err)
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
			return fmt.Errorf("tpmcounter: incrementing %s (NV index %#x): %w", component, h, err)
		}
		have++
	}
	raw, err = c.read(t, h)
	if err != nil {
		return fmt.Errorf("tpmcounter: reading back %s (NV index %#x): %w", component, h, err)
	}
	if raw-1 < v {
		return fmt.Errorf("tpmcounter: %s (NV index %#x) reads %d after raising it to %d", component, h, raw-1, v)
	}
	return nil
}

// provisioned returns the index's value, defining and incrementing it
// first if it is missing or unwritten.
func (c *Counters) provisioned(ctx context.Context, t TPM, h uint32) (uint64, error) {
	pub, err := readPublic(t, h)
	if errors.Is(err, errHandle) {
		if err := c.define(t, h); err != nil {
			return 0, fmt.Errorf("defining the counter: %w", err)
		}
		pub, err = readPublic(t, h)
	}
	if err != nil {
		return 0, err
	}
	if pub.attributes&ntMask != ntCounter || pub.dataSize != 8 {
		return 0, fmt.Errorf("%w: type %d, %d bytes (want a counter, 8 bytes)", ErrNotCounter, pub.attributes&ntMask>>4, pub.dataSize)
	}
	if pub.attributes&attrWritten == 0 {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := c.increment(t, h); err != nil {
			return 0, fmt.Errorf("initializing the counter: %w", err)
		}
	}
	return c.read(t, h)
}

// The TPM 2.0 commands of this package (TPM 2.0 Library, Part 3), with
// owner authorization in a password session. Values from Part 2.
const (
	tagNoSessions = 0x8001 // TPM_ST_NO_SESSIONS
	tagSessions   = 0x8002 // TPM_ST_SESSIONS

	ccNVDefineSpace = 0x0000012A
	ccNVIncrement   = 0x00000134
	ccNVRead        = 0x0000014E
	ccNVReadPublic  = 0x00000169

	rhOwner   = 0x40000001 // TPM_RH_OWNER
	rsPW      = 0x40000009 // TPM_RS_PW, the password session
	algSHA256 = 0x000B     // TPM_ALG_SHA256

	// TPMA_NV bits.
	attrOwnerWrite = 1 << 1
	ntMask         = 0xF << 4
	ntCounter      = 1 << 4 // TPM_NT_COUNTER in TPMA_NV's TPM_NT field
	attrOwnerRead  = 1 << 17
	attrNoDA       = 1 << 25
	attrWritten    = 1 << 29

	// counterAttributes: what define creates (ownerwrite|ownerread|no_da,
	// nt=counter).
	counterAttributes = attrOwnerWrite | ntCounter | attrOwnerRead | attrNoDA
)

// rcError is a TPM response code other than TPM_RC_SUCCESS.
type rcError uint32

// errHandle: the handle names no object (TPM_RC_HANDLE, a format-one
// code with its handle number).
var errHandle = rcError(0x08B)

// base returns the code without a format-one code's parameter, handle or
// session number.
func (e rcError) base() uint32 {
	if e&0x80 != 0 {
		return uint32(e) & 0xBF
	}
	return uint32(e)
}

func (e rcError) Is(target error) bool {
	t, ok := target.(rcError)
	return ok && e.base() == t.base()
}

func (e rcError) Error() string {
	names := map[uint32]string{
		0x08B: "TPM_RC_HANDLE", 0x08E: "TPM_RC_AUTH_FAIL", 0x0A2: "TPM_RC_BAD_AUTH", 0x081: "TPM_RC_ASYMMETRIC",
		0x082: "TPM_RC_ATTRIBUTES", 0x095: "TPM_RC_SIZE", 0x14A: "TPM_RC_NV_UNINITIALIZED", 0x14B: "TPM_RC_NV_SPACE",
		0x14C: "TPM_RC_NV_DEFINED", 0x146: "TPM_RC_NV_RANGE", 0x148: "TPM_RC_NV_LOCKED", 0x149: "TPM_RC_NV_AUTHORIZATION",
		0x921: "TPM_RC_LOCKOUT", 0x922: "TPM_RC_RETRY", 0x923: "TPM_RC_NV_RATE", 0x920: "TPM_RC_NV_UNAVAILABLE",
		0x101: "TPM_RC_FAILURE", 0x143: "TPM_RC_COMMAND_CODE", 0x185: "TPM_RC_AUTH_MISSING",
	}
	if n, ok := names[e.base()]; ok {
		return fmt.Sprintf("TPM error %#x (%s)", uint32(e), n)
	}
	return fmt.Sprintf("TPM error %#x", uint32(e))
}

// run sends a command and returns the parameters of its response. With
// auth, the command carries the owner's password session and handles[0]
// is its authorization handle.
func (c *Counters) run(t TPM, cc uint32, handles []uint32, auth bool, params []byte) ([]byte, error) {
	be := binary.BigEndian
	cmd := make([]byte, 10, 64+len(params)+len(c.cfg.OwnerAuth))
	tag := uint16(tagNoSessions)
	if auth {
		tag = tagSessions
	}
	be.PutUint16(cmd, tag)
	be.PutUint32(cmd[6:], cc)
	for _, h := range handles {
		cmd = be.AppendUint32(cmd, h)
	}
	if auth {
		// TPMS_AUTH_COMMAND: session handle, nonce (empty), attributes
		// (continueSession), the password as hmac.
		pw := c.cfg.OwnerAuth
		cmd = be.AppendUint32(cmd, uint32(4+2+1+2+len(pw)))
		cmd = be.AppendUint32(cmd, rsPW)
		cmd = be.AppendUint16(cmd, 0)
		cmd = append(cmd, 1)
		cmd = be.AppendUint16(cmd, uint16(len(pw)))
		cmd = append(cmd, pw...)
	}
	cmd = append(cmd, params...)
	be.PutUint32(cmd[2:], uint32(len(cmd)))
	rsp, err := t.Send(cmd)
	if err != nil {
		return nil, err
	}
	if len(rsp) < 10 || int(be.Uint32(rsp[2:6])) != len(rsp) {
		return nil, fmt.Errorf("tpmcounter: malformed TPM response of %d bytes", len(rsp))
	}
	if rc := be.Uint32(rsp[6:10]); rc != 0 {
		return nil, rcError(rc)
	}
	body := rsp[10:]
	if be.Uint16(rsp[0:2]) == tagSessions {
		// No response handles for these commands; then the parameters'
		// size, the parameters, the sessions.
		if len(body) < 4 || int(be.Uint32(body)) > len(body)-4 {
			return nil, fmt.Errorf("tpmcounter: malformed TPM response parameters")
		}
		body = body[4 : 4+be.Uint32(body)]
	}
	return body, nil
}

// nvPublic is what TPM2_NV_ReadPublic says of an index.
type nvPublic struct {
	attributes uint32
	dataSize   uint16
}

func readPublic(t TPM, h uint32) (nvPublic, error) {
	c := &Counters{}
	body, err := c.run(t, ccNVReadPublic, []uint32{h}, false, nil)
	if err != nil {
		return nvPublic{}, err
	}
	// TPM2B_NV_PUBLIC: size, then TPMS_NV_PUBLIC: nvIndex, nameAlg,
	// attributes, authPolicy (TPM2B), dataSize. A TPM2B_NAME follows.
	be := binary.BigEndian
	if len(body) < 2 {
		return nvPublic{}, fmt.Errorf("tpmcounter: short NV_ReadPublic response")
	}
	n := int(be.Uint16(body))
	pub := body[2:]
	if n > len(pub) || n < 4+2+4+2+2 {
		return nvPublic{}, fmt.Errorf("tpmcounter: malformed NV public area of %d bytes", n)
	}
	pub = pub[:n]
	if be.Uint32(pub) != h {
		return nvPublic{}, fmt.Errorf("tpmcounter: the TPM describes NV index %#x, not %#x", be.Uint32(pub), h)
	}
	attrs := be.Uint32(pub[6:])
	policy := int(be.Uint16(pub[10:]))
	if 12+policy+2 != len(pub) {
		return nvPublic{}, fmt.Errorf("tpmcounter: malformed NV public area")
	}
	return nvPublic{attributes: attrs, dataSize: be.Uint16(pub[12+policy:])}, nil
}

func (c *Counters) define(t TPM, h uint32) error {
	be := binary.BigEndian
	// TPM2B_AUTH (no authorization value of its own: owner authorization
	// reads and writes it), then TPM2B_NV_PUBLIC.
	params := be.AppendUint16(nil, 0)
	params = be.AppendUint16(params, 4+2+4+2+2)
	params = be.AppendUint32(params, h)
	params = be.AppendUint16(params, algSHA256)
	params = be.AppendUint32(params, counterAttributes)
	params = be.AppendUint16(params, 0)
	params = be.AppendUint16(params, 8)
	_, err := c.run(t, ccNVDefineSpace, []uint32{rhOwner}, true, params)
	return err
}

func (c *Counters) increment(t TPM, h uint32) error {
	_, err := c.run(t, ccNVIncrement, []uint32{rhOwner, h}, true, nil)
	return err
}

func (c *Counters) read(t TPM, h uint32) (uint64, error) {
	be := binary.BigEndian
	params := be.AppendUint16(nil, 8)   // size
	params = be.AppendUint16(params, 0) // offset
	body, err := c.run(t, ccNVRead, []uint32{rhOwner, h}, true, params)
	if err != nil {
		return 0, err
	}
	if len(body) < 2 || be.Uint16(body) != 8 || len(body) < 10 {
		return 0, fmt.Errorf("%w: read %d bytes", ErrNotCounter, len(body))
	}
	raw := be.Uint64(body[2:])
	if raw == 0 {
		return 0, fmt.Errorf("%w: a written counter reads 0", ErrNotCounter)
	}
	return raw, nil
}
