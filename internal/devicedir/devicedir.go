// Package devicedir is a device kept in one directory, as `upkit device`
// simulates it and as an agent on a Linux-class device may keep it: the
// device library's state in DIR/state, downloads in DIR/staging, the A/B
// slots as files, and DIR/device.json saying which hardware and product
// the device is. It also resolves where an update comes from (a registry
// reference, an OCI image layout or a release directory) into what
// device.Device.Check and Install take.
package devicedir

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/internal/atomicfile"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/oci"
	"github.com/upkit/upkit/spec"
)

// ConfigFile is the device description in the directory.
const ConfigFile = "device.json"

// maxConfigSize bounds ConfigFile.
const maxConfigSize = 64 << 10

// ErrNoDevice: the directory holds no device (no ConfigFile).
var ErrNoDevice = errors.New("devicedir: not a device directory")

// ErrExists: Init on a directory that already holds a device.
var ErrExists = errors.New("devicedir: the directory already holds a device")

// Config describes a device: what Init records besides the state.
type Config struct {
	Hardware string `json:"hardware"`
	Product  string `json:"product,omitempty"`
	Slots    string `json:"slots"` // absolute directory of the slot files
}

// Init provisions a device in dir with the trust root rootEnvelope
// (device.Device.Provision at now) and records cfg; cfg.Slots defaults to
// dir/slots. ErrExists if dir already holds a device.
func Init(ctx context.Context, dir string, cfg Config, rootEnvelope []byte, now time.Time) (*device.Device, *Config, error) {
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err == nil {
		return nil, nil, fmt.Errorf("%w: %s", ErrExists, dir)
	}
	if cfg.Slots == "" {
		cfg.Slots = filepath.Join(dir, "slots")
	}
	slots, err := filepath.Abs(cfg.Slots)
	if err != nil {
		return nil, nil, err
	}
	cfg.Slots = slots
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	d, err := newDevice(dir, &cfg, nil)
	if err != nil {
		return nil, nil, err
	}
	if err := d.Provision(ctx, rootEnvelope, now); err != nil {
		return nil, nil, err
	}
	data, _ := json.MarshalIndent(cfg, "", "  ")
	if err := atomicfile.WriteBytes(filepath.Join(dir, ConfigFile), append(data, '\n'), 0o644); err != nil {
		return nil, nil, err
	}
	return d, &cfg, nil
}

// Open opens the device in dir (ErrNoDevice if there is none); progress,
// if not nil, receives device.Config.Progress reports.
func Open(dir string, progress func(device.Progress)) (*device.Device, *Config, error) {
	path := filepath.Join(dir, ConfigFile)
	data, err := spec.ReadFile(path, maxConfigSize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: %s has no %s", ErrNoDevice, dir, ConfigFile)
	}
	if err != nil {
		return nil, nil, err
	}
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil || cfg.Hardware == "" || cfg.Slots == "" {
		return nil, nil, fmt.Errorf("%s: not a valid device description (%v)", path, err)
	}
	d, err := newDevice(dir, &cfg, progress)
	return d, &cfg, err
}

func newDevice(dir string, cfg *Config, progress func(device.Progress)) (*device.Device, error) {
	return device.New(device.Config{
		Progress:   progress,
		Store:      device.NewFileStore(filepath.Join(dir, "state"), nil),
		Slots:      device.NewFileSlots(cfg.Slots, nil),
		Hardware:   cfg.Hardware,
		Product:    cfg.Product,
		StagingDir: filepath.Join(dir, "staging"),
	})
}

// Source is where an update comes from, resolved.
type Source struct {
	Envelope []byte        // the release envelope, not yet verified
	Blobs    device.Source // the packages and deltas, by digest
	// Target is the OCI reference of the release ("" for a release
	// directory): where deltas attached later are found
	// (oci.ListAttachedDeltas).
	Target string
}

// OpenSource resolves src: a release directory holding release.json (or
// the envelope at releasePath) and the blobs it lists, an OCI image layout
// directory, oci:DIR[:tag], or a registry reference.
func OpenSource(ctx context.Context, src, releasePath string, opts *oci.Options) (*Source, error) {
	if fi, err := os.Stat(src); err == nil && fi.IsDir() {
		if _, err := os.Stat(filepath.Join(src, "oci-layout")); err != nil {
			if releasePath == "" {
				releasePath = filepath.Join(src, oci.DefaultEnvelopeTitle)
			}
			env, err := manifest.ReadFile(releasePath)
			if err != nil {
				return nil, err
			}
			return &Source{Envelope: env, Blobs: device.NewDirSource(src)}, nil
		}
		src = oci.LayoutPrefix + src // an OCI image layout given as a plain path
	}
	pulled, err := oci.Pull(ctx, src, opts)
	if err != nil {
		return nil, err
	}
	return &Source{Envelope: pulled.Envelope, Blobs: pulled.Source, Target: pulled.Target.String()}, nil
}
