package device

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"time"

	"github.com/upkit/upkit/spec"
)

// MaxStateSize bounds an encoded state (a trust root envelope is at most
// 1 MiB; the rest is small).
const MaxStateSize = 4 << 20

// State is everything the device must remember across reboots. It is small
// and written as a whole, atomically, by a Store.
//
// Monotonic fields (ReleaseVersion, NewestCreated, SecurityCounters, the
// root in RootEnvelope) only ever move forward: the Device never saves a
// state in which one of them is lower than in the state it loaded.
type State struct {
	// RootEnvelope is the newest trusted root (a DSSE envelope, exactly as
	// signed), starting with the one provisioned.
	RootEnvelope []byte `json:"rootEnvelope"`
	// RootVersion is the version of RootEnvelope (informational; the
	// envelope is what is trusted).
	RootVersion uint64 `json:"rootVersion"`
	// Product is the product of the committed releases ("" until the
	// first commit, unless provisioned with one): releases of another
	// product are refused.
	Product string `json:"product"`
	// ReleaseVersion is the version of the newest committed release.
	ReleaseVersion uint64 `json:"releaseVersion"`
	// NewestCreated is the creation time of the newest release the
	// device has seen that passed every check for it (committed or not).
	// Older releases are refused (ErrFreeze) and expiry is checked against
	// max(now, NewestCreated).
	NewestCreated time.Time `json:"newestCreated"`
	// SecurityCounters holds the committed security version of each
	// component.
	SecurityCounters map[string]uint64 `json:"securityCounters"`
	// Installed describes the committed image of each component.
	Installed map[string]InstalledImage `json:"installed"`
	// Pending is the update written to inactive slots and awaiting Commit
	// (or Rollback), nil if none.
	Pending *Pending `json:"pending,omitempty"`
}

// InstalledImage is one component's image in a slot.
type InstalledImage struct {
	Version         string `json:"version"`
	SecurityVersion uint64 `json:"securityVersion"`
	PayloadDigest   string `json:"payloadDigest"` // "sha256:<hex>" of the payload
	PayloadSize     int64  `json:"payloadSize"`
	Slot            string `json:"slot"` // SlotA or SlotB
}

// Pending is an installed but not yet committed update.
type Pending struct {
	Product        string    `json:"product"`
	ReleaseVersion uint64    `json:"releaseVersion"`
	Created        time.Time `json:"created"`
	// Images are the components written by the update, each in the slot
	// it was written to (the inactive one at install time).
	Images map[string]InstalledImage `json:"images"`
	// BootAttempts counts RecordBoot calls since the update was staged.
	BootAttempts int `json:"bootAttempts"`
}

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	c := *s
	c.RootEnvelope = bytes.Clone(s.RootEnvelope)
	c.SecurityCounters = make(map[string]uint64, len(s.SecurityCounters))
	for k, v := range s.SecurityCounters {
		c.SecurityCounters[k] = v
	}
	c.Installed = make(map[string]InstalledImage, len(s.Installed))
	for k, v := range s.Installed {
		c.Installed[k] = v
	}
	if s.Pending != nil {
		p := *s.Pending
		p.Images = make(map[string]InstalledImage, len(s.Pending.Images))
		for k, v := range s.Pending.Images {
			p.Images[k] = v
		}
		c.Pending = &p
	}
	return &c
}

// Store keeps the device's State. Firmware may implement it over a TPM NV
// index, RPMB, eFuses or a file (NewFileStore). Contract:
//   - Load returns an error wrapping ErrNoState when nothing was ever
//     saved, and one wrapping ErrStateCorrupt when what is stored cannot be
//     read back intact (never an empty state in its place);
//   - Save is atomic: after a crash at any point, Load returns either the
//     previous or the new state, whole;
//   - Save returns only once the state is durable.
type Store interface {
	Load(ctx context.Context) (*State, error)
	Save(ctx context.Context, s *State) error
}

// stateMagic is the first line of a state file.
const stateMagic = "upkit-device-state-v1\n"

// FileStore is a Store in one file. The file is
//
//	upkit-device-state-v1\n
//	sha256:<64 hex of the JSON below>\n
//	<the State as JSON>
//
// written through a temporary file in the same directory, fsynced, renamed
// over the old one, and the directory fsynced.
type FileStore struct {
	path string
	fs   FS
}

// NewFileStore returns a Store kept in the file path. fsys nil means OSFS.
func NewFileStore(path string, fsys FS) *FileStore {
	if fsys == nil {
		fsys = OSFS{}
	}
	return &FileStore{path: path, fs: fsys}
}

// Load implements Store.
func (f *FileStore) Load(ctx context.Context) (*State, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := readFileLimit(f.fs, f.path, MaxStateSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist", ErrNoState, f.path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrStateCorrupt, f.path, err)
	}
	s, err := DecodeState(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	return s, nil
}

// Save implements Store.
func (f *FileStore) Save(ctx context.Context, s *State) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := EncodeState(s)
	if err != nil {
		return err
	}
	if err := f.fs.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return fmt.Errorf("device: saving state: %w", err)
	}
	if err := writeFileAtomic(f.fs, f.path, data); err != nil {
		return fmt.Errorf("device: saving state to %s: %w", f.path, err)
	}
	return nil
}

// EncodeState returns the checksummed file form of s (see FileStore).
func EncodeState(s *State) ([]byte, error) {
	body, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("device: encoding state: %w", err)
	}
	sum := sha256.Sum256(body)
	out := make([]byte, 0, len(stateMagic)+72+len(body))
	out = append(out, stateMagic...)
	out = append(out, spec.Digest(sum).String()+"\n"...)
	out = append(out, body...)
	if len(out) > MaxStateSize {
		return nil, fmt.Errorf("device: encoded state is %d bytes, limit %d", len(out), MaxStateSize)
	}
	return out, nil
}

// DecodeState parses the file form of a state, checking its checksum and
// its fields. Every error wraps ErrStateCorrupt.
func DecodeState(data []byte) (*State, error) {
	if len(data) > MaxStateSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrStateCorrupt, len(data), MaxStateSize)
	}
	rest, ok := bytes.CutPrefix(data, []byte(stateMagic))
	if !ok {
		return nil, fmt.Errorf("%w: bad magic line", ErrStateCorrupt)
	}
	line, body, ok := bytes.Cut(rest, []byte("\n"))
	if !ok || !spec.ValidDigest(string(line)) {
		return nil, fmt.Errorf("%w: bad checksum line", ErrStateCorrupt)
	}
	if string(line) != spec.SHA256(body).String() {
		return nil, fmt.Errorf("%w: checksum mismatch (file damaged)", ErrStateCorrupt)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var s State
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStateCorrupt, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrStateCorrupt)
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStateCorrupt, err)
	}
	return &s, nil
}

func (s *State) validate() error {
	if len(s.RootEnvelope) == 0 {
		return errors.New("no trust root")
	}
	if s.SecurityCounters == nil {
		s.SecurityCounters = map[string]uint64{}
	}
	if s.Installed == nil {
		s.Installed = map[string]InstalledImage{}
	}
	check := func(what string, m map[string]InstalledImage) error {
		for _, c := range sortedKeys(m) {
			im := m[c]
			if im.Slot != SlotA && im.Slot != SlotB {
				return fmt.Errorf("%s %q: slot %q", what, c, im.Slot)
			}
			if !spec.ValidDigest(im.PayloadDigest) || im.PayloadSize < 0 {
				return fmt.Errorf("%s %q: bad payload digest or size", what, c)
			}
		}
		return nil
	}
	if err := check("installed", s.Installed); err != nil {
		return err
	}
	if s.Pending != nil {
		if err := check("pending", s.Pending.Images); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
