package device

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
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
// state in which one of them is lower than in the state it loaded, and a
// Store never overwrites a state newer than the one the Device loaded
// (Generation).
type State struct {
	// Generation counts the saves of this state: Store.Save stores
	// Generation+1 and refuses (ErrStateConflict) to overwrite a stored
	// state whose Generation is not the one loaded, so that a process
	// holding an old state cannot undo what another saved since. A state
	// written before generations existed (file format v1) reads as 0.
	Generation uint64 `json:"generation"`
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
//   - Save returns only once the state is durable;
//   - Save stores s with Generation s.Generation+1 and, once stored, sets
//     s.Generation to it. A Store that more than one process (or Device)
//     may write must refuse, with an error wrapping ErrStateConflict, to
//     save a state whose Generation is not the stored one (a compare and
//     swap), and should implement Locker.
type Store interface {
	Load(ctx context.Context) (*State, error)
	Save(ctx context.Context, s *State) error
}

// Locker is implemented by a Store that several processes may share
// (FileStore). The Device holds the lock for the whole of every operation
// that may write the state or a slot (Provision, Check, Install, Commit,
// Rollback, RecordBoot, Recover), so that no other process writes in
// between. Lock does not queue behind another holder: when the lock is
// still held after a quarter of a second (FileStore waits that long for a
// forked child's copy of a just-released lock to close), it fails with an
// error wrapping ErrStateLocked. unlock releases it.
type Locker interface {
	Lock(ctx context.Context) (unlock func(), err error)
}

// stateMagic is the first line of a state file; stateMagicV1 that of a
// state written before State.Generation existed (read, never written).
const (
	stateMagic   = "upkit-device-state-v2\n"
	stateMagicV1 = "upkit-device-state-v1\n"
)

// FileStore is a Store in one file. The file is
//
//	upkit-device-state-v2\n
//	sha256:<64 hex of the JSON below>\n
//	<the State as JSON>
//
// written through a temporary file in the same directory, fsynced, renamed
// over the old one, and the directory fsynced. It implements Locker with
// an exclusive flock(2) on PATH.lock, a file beside the state (created if
// missing, never removed); Save takes that lock too while it compares the
// stored Generation with the one being saved, unless Lock already holds
// it. On systems without flock (not Linux, macOS or a BSD) the lock is not
// shared with other processes; the generation check still applies. A
// FileStore belongs to one Device: two Devices sharing one FileStore value
// share its lock.
type FileStore struct {
	path string
	fs   FS

	mu   sync.Mutex // serializes Lock and Save; guards held
	held File       // the open lock file while Lock is held
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

// Lock implements Locker.
func (f *FileStore) Lock(ctx context.Context) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held != nil {
		return nil, fmt.Errorf("%w: %s is already locked by this process", ErrStateLocked, f.path)
	}
	lf, err := f.lock()
	if err != nil {
		return nil, err
	}
	f.held = lf
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.held == lf {
			lf.Close() // releases the flock
			f.held = nil
		}
	}, nil
}

// lock opens PATH.lock and takes its exclusive lock without waiting.
func (f *FileStore) lock() (File, error) {
	if err := f.fs.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return nil, fmt.Errorf("device: state directory: %w", err)
	}
	name := f.path + ".lock"
	lf, err := openRegular(f.fs, name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("device: opening the state lock: %w", err)
	}
	if err := lockFile(lf); err != nil {
		lf.Close()
		if errors.Is(err, ErrStateLocked) {
			return nil, fmt.Errorf("%w: another process is using the device state (%s is locked); try again when it has finished", ErrStateLocked, name)
		}
		return nil, fmt.Errorf("device: locking %s: %w", name, err)
	}
	return lf, nil
}

// Save implements Store: a compare and swap on State.Generation under the
// lock.
func (f *FileStore) Save(ctx context.Context, s *State) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held == nil {
		lf, err := f.lock()
		if err != nil {
			return err
		}
		defer lf.Close()
	}
	switch cur, err := f.Load(ctx); {
	case errors.Is(err, ErrNoState):
		if s.Generation != 0 {
			return fmt.Errorf("%w: %s no longer exists, the state being saved was loaded from generation %d", ErrStateConflict, f.path, s.Generation)
		}
	case err != nil:
		return fmt.Errorf("device: not saving over the stored state: %w", err)
	case cur.Generation != s.Generation:
		return fmt.Errorf("%w: %s is at generation %d, the state being saved was loaded at generation %d (another process saved since)", ErrStateConflict, f.path, cur.Generation, s.Generation)
	}
	next := *s
	next.Generation++
	data, err := EncodeState(&next)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(f.fs, f.path, data); err != nil {
		return fmt.Errorf("device: saving state to %s: %w", f.path, err)
	}
	s.Generation = next.Generation
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
// its fields. It reads the v2 form EncodeState writes and the v1 form of
// earlier versions (no generation: Generation 0). Every error wraps
// ErrStateCorrupt.
func DecodeState(data []byte) (*State, error) {
	if len(data) > MaxStateSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrStateCorrupt, len(data), MaxStateSize)
	}
	rest, ok := bytes.CutPrefix(data, []byte(stateMagic))
	v1 := false
	if !ok {
		if rest, v1 = bytes.CutPrefix(data, []byte(stateMagicV1)); !v1 {
			return nil, fmt.Errorf("%w: bad magic line", ErrStateCorrupt)
		}
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
	if v1 && s.Generation != 0 {
		return nil, fmt.Errorf("%w: a v1 state has no generation", ErrStateCorrupt)
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
