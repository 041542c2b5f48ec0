package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/upkit/upkit/manifest"
)

// Default limits (see Limits).
const (
	DefaultMaxBlobSize     = 16 << 30
	DefaultMaxImageSize    = 16 << 30
	DefaultMaxBootAttempts = 3
	DefaultBufferSize      = 64 << 10
	// DefaultMaxDeltaMemory admits every delta made with delta.Create's
	// defaults (11.7 MB; 12.5 MB for a format version 3 delta of its
	// defaults), not the 38.6 MiB the delta format allows at most (a
	// version 3 delta at every limit).
	DefaultMaxDeltaMemory = 16 << 20
)

// Methods of a PlannedImage.
const (
	MethodDelta = "delta" // a patch applied to the committed image
	MethodFull  = "full"  // the whole image package
)

// Limits bound what the device accepts, whatever a release signs. The zero
// value of a field selects its default.
type Limits struct {
	// MaxBlobSize bounds the signed size of a package or delta to fetch
	// (default DefaultMaxBlobSize).
	MaxBlobSize int64
	// MaxImageSize bounds the signed size of a payload (an image in a
	// slot; default DefaultMaxImageSize).
	MaxImageSize int64
	// MaxBootAttempts is how many RecordBoot calls a pending update gets
	// before RecordBoot reports ErrBootLimit (default
	// DefaultMaxBootAttempts).
	MaxBootAttempts int
	// BufferSize is the size of the one copy buffer each operation uses
	// (default DefaultBufferSize).
	BufferSize int
	// MaxDeltaMemory bounds the memory a delta's header may ask Apply for
	// (delta.Header.MaxApplyMemory; default DefaultMaxDeltaMemory). A delta
	// asking for more is refused with ErrTooLarge before it is applied,
	// whether the release lists it or it was attached unsigned.
	MaxDeltaMemory int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxBlobSize <= 0 {
		l.MaxBlobSize = DefaultMaxBlobSize
	}
	if l.MaxImageSize <= 0 {
		l.MaxImageSize = DefaultMaxImageSize
	}
	if l.MaxBootAttempts <= 0 {
		l.MaxBootAttempts = DefaultMaxBootAttempts
	}
	if l.BufferSize <= 0 {
		l.BufferSize = DefaultBufferSize
	}
	if l.MaxDeltaMemory <= 0 {
		l.MaxDeltaMemory = DefaultMaxDeltaMemory
	}
	return l
}

// Config configures a Device.
type Config struct {
	// Store keeps the state (required).
	Store Store
	// Slots holds the images (required).
	Slots Slots
	// Hardware is the device's hardware name, matched exactly against
	// the hardware lists of releases and packages (required).
	Hardware string
	// Product, when set, is the only product whose releases the device
	// accepts. When empty, the product of the first committed release is
	// remembered (State.Product) and enforced from then on.
	Product string
	// StagingDir keeps downloads until they are verified and applied, so
	// that an interrupted download resumes (required). It needs room for
	// the largest package or delta of a release.
	StagingDir string
	// FS is the file layer of the staging directory (nil: OSFS).
	FS FS
	// Limits bounds sizes (zero value: defaults).
	Limits Limits
	// Secondaries are the microcontrollers behind the device, by component:
	// their images are MCUboot images (upkit pack --format mcuboot,
	// imgtool sign), installed into Slots like any component and handed
	// to the Secondary once committed (see Secondary). Nil: none.
	Secondaries map[string]Secondary
	// Progress, if set, is called as Install and Commit advance: after
	// each buffer fetched, written or read back. It must return quickly;
	// it is called from the goroutine running the operation.
	Progress func(Progress)
}

// Progress reports how far one phase of one component has come.
type Progress struct {
	Component string
	Phase     string // PhaseFetch, PhaseWrite or PhaseVerify
	Done      int64  // bytes so far
	Total     int64  // bytes in all (the signed size)
}

// Phases reported through Config.Progress.
const (
	PhaseFetch  = "fetch"  // downloading the blob into staging
	PhaseWrite  = "write"  // writing the inactive slot
	PhaseVerify = "verify" // reading a slot back
)

func (d *Device) progress(component, phase string, done, total int64) {
	if d.cfg.Progress != nil {
		d.cfg.Progress(Progress{Component: component, Phase: phase, Done: done, Total: total})
	}
}

// progressWriter reports bytes written through it.
type progressWriter struct {
	w                io.Writer
	d                *Device
	component, phase string
	done, total      int64
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.d.progress(p.component, p.phase, p.done, p.total)
	return n, err
}

// Device is the update engine of one device: it decides whether a release
// may be installed, installs it into inactive slots, and commits or rolls
// it back, keeping its State in a Store. Its methods are safe for
// concurrent use (they are serialized); time is always a parameter.
type Device struct {
	cfg Config
	mu  sync.Mutex
	// root is the trust root of the state last used, parsed once and kept
	// while the state's RootEnvelope stays rootEnvelope.
	root         *manifest.Root
	rootEnvelope []byte
}

// lockStore takes the Store's lock (Locker) for one operation, if it has
// one.
func (d *Device) lockStore(ctx context.Context) (func(), error) {
	if l, ok := d.cfg.Store.(Locker); ok {
		return l.Lock(ctx)
	}
	return func() {}, nil
}

// New returns a Device. It does no I/O.
func New(cfg Config) (*Device, error) {
	switch {
	case cfg.Store == nil:
		return nil, fmt.Errorf("%w: no Store", ErrConfig)
	case cfg.Slots == nil:
		return nil, fmt.Errorf("%w: no Slots", ErrConfig)
	case cfg.Hardware == "":
		return nil, fmt.Errorf("%w: no Hardware", ErrConfig)
	case cfg.StagingDir == "":
		return nil, fmt.Errorf("%w: no StagingDir", ErrConfig)
	}
	for c, s := range cfg.Secondaries {
		if !validComponent(c) || s == nil {
			return nil, fmt.Errorf("%w: secondary %q", ErrConfig, c)
		}
	}
	if cfg.FS == nil {
		cfg.FS = OSFS{}
	}
	cfg.Limits = cfg.Limits.withDefaults()
	return &Device{cfg: cfg}, nil
}

// Provision stores the first state of a device: the trust root it starts
// from (a self-signed root envelope, checked against now), and nothing
// installed. It fails with ErrProvisioned if the store already holds a
// state, and with the store's error (ErrStateCorrupt, ...) if it cannot
// tell. Firmware embeds the root at build time and calls Provision on
// first boot, or provisions at the factory.
func (d *Device) Provision(ctx context.Context, rootEnvelope []byte, now time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	unlock, err := d.lockStore(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	_, err = d.cfg.Store.Load(ctx)
	if err == nil {
		return ErrProvisioned
	}
	if !errors.Is(err, ErrNoState) {
		return err
	}
	root, err := manifest.VerifySelfSignedRoot(rootEnvelope, now)
	if err != nil {
		return fmt.Errorf("device: verifying the trust root: %w", err)
	}
	st := &State{
		RootEnvelope:     bytes.Clone(rootEnvelope),
		RootVersion:      root.Version,
		Product:          d.cfg.Product,
		SecurityCounters: map[string]uint64{},
		Installed:        map[string]InstalledImage{},
	}
	return d.cfg.Store.Save(ctx, st)
}
