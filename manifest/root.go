package manifest

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/upkit/upkit/spec"
)

// Root is a trust root: the keys a device trusts and which of them may sign
// new roots and releases. It is the payload of an envelope of type
// RootPayloadType.
type Root struct {
	SchemaVersion int            `json:"schemaVersion"` // SchemaVersion (NewRootEnvelope fills 0 in)
	Version       uint64         `json:"version"`       // 1 for the first root, +1 per rotation
	Expires       time.Time      `json:"expires"`       // UTC, whole seconds
	Keys          map[string]Key `json:"keys"`          // key ID -> public key
	Roles         Roles          `json:"roles"`
}

// Key is a public key in a root.
type Key struct {
	Algorithm string `json:"algorithm"` // spec.AlgorithmECDSAP256 or spec.AlgorithmEd25519
	Public    string `json:"public"`    // "PUBLIC KEY" PEM, exactly as spec.PublicKey.PEM writes it
}

// Roles are the two roles of a root.
type Roles struct {
	Root    Role `json:"root"`    // signs new root versions
	Release Role `json:"release"` // signs release manifests
}

// Role names the keys trusted for a role and how many of them must sign.
type Role struct {
	KeyIDs    []string `json:"keyids"`    // distinct key IDs, each listed in Root.Keys
	Threshold int      `json:"threshold"` // 1 <= Threshold <= len(KeyIDs)
}

// rootWire is the JSON form of Root.
type rootWire struct {
	SchemaVersion int            `json:"schemaVersion"`
	Version       uint64         `json:"version"`
	Expires       string         `json:"expires"`
	Keys          map[string]Key `json:"keys"`
	Roles         Roles          `json:"roles"`
}

// KeyOf returns the key ID and the root entry for a public key.
func KeyOf(k *spec.PublicKey) (string, Key) {
	return k.ID, Key{Algorithm: k.Algorithm, Public: string(k.PEM())}
}

// Clone returns a deep copy of r.
func (r *Root) Clone() *Root {
	c := *r
	c.Keys = make(map[string]Key, len(r.Keys))
	for id, k := range r.Keys {
		c.Keys[id] = k
	}
	c.Roles.Root.KeyIDs = slices.Clone(r.Roles.Root.KeyIDs)
	c.Roles.Release.KeyIDs = slices.Clone(r.Roles.Release.KeyIDs)
	return &c
}

// verifiers validates r and returns its parsed keys by ID. Every check of
// ParseRoot is applied, so a hand-built Root is held to the same rules as a
// parsed one:
//   - schemaVersion is SchemaVersion, version at least 1, expires set;
//   - 1 to MaxKeys keys, each ID the key ID of its PEM, the algorithm the
//     PEM's, the PEM in canonical form;
//   - each role: 1 to MaxKeys distinct key IDs listed in keys, threshold
//     1 to the number of its keys;
//   - every key belongs to at least one role.
func (r *Root) verifiers() (map[string]*spec.PublicKey, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil root", ErrMalformed)
	}
	if r.SchemaVersion != SchemaVersion {
		return nil, errorf(ErrSchemaVersion, []error{ErrMalformed}, "root has schemaVersion %d, want %d", r.SchemaVersion, SchemaVersion)
	}
	if r.Version == 0 {
		return nil, fmt.Errorf("%w: root version must be at least 1", ErrMalformed)
	}
	if err := checkTime("root expires", r.Expires); err != nil {
		return nil, err
	}
	if len(r.Keys) == 0 {
		return nil, fmt.Errorf("%w: root lists no keys", ErrMalformed)
	}
	if len(r.Keys) > MaxKeys {
		return nil, fmt.Errorf("%w: root lists %d keys, limit %d", ErrTooLarge, len(r.Keys), MaxKeys)
	}
	keys := make(map[string]*spec.PublicKey, len(r.Keys))
	for id, k := range r.Keys {
		if !spec.ValidKeyID(id) {
			return nil, fmt.Errorf("%w: root key ID %.80q: want 64 lowercase hex digits", ErrMalformed, id)
		}
		pk, err := spec.ParsePublicKeyPEM([]byte(k.Public))
		if err != nil {
			return nil, fmt.Errorf("%w: root key %s: %v", ErrMalformed, id, err)
		}
		if pk.ID != id {
			return nil, fmt.Errorf("%w: root key %s: its public key has ID %s", ErrMalformed, id, pk.ID)
		}
		if pk.Algorithm != k.Algorithm {
			return nil, fmt.Errorf("%w: root key %s: algorithm %q, but the public key is %s", ErrMalformed, id, k.Algorithm, pk.Algorithm)
		}
		if string(pk.PEM()) != k.Public {
			return nil, fmt.Errorf("%w: root key %s: public key PEM is not in canonical form", ErrMalformed, id)
		}
		keys[id] = pk
	}
	used := make(map[string]bool, len(keys))
	for _, role := range []struct {
		name string
		r    Role
	}{{"root", r.Roles.Root}, {"release", r.Roles.Release}} {
		if len(role.r.KeyIDs) == 0 {
			return nil, fmt.Errorf("%w: root role %s lists no keys", ErrMalformed, role.name)
		}
		if len(role.r.KeyIDs) > MaxKeys {
			return nil, fmt.Errorf("%w: root role %s lists %d keys, limit %d", ErrTooLarge, role.name, len(role.r.KeyIDs), MaxKeys)
		}
		seen := make(map[string]bool, len(role.r.KeyIDs))
		for _, id := range role.r.KeyIDs {
			if seen[id] {
				return nil, fmt.Errorf("%w: root role %s lists key %.80s twice", ErrMalformed, role.name, id)
			}
			seen[id] = true
			if keys[id] == nil {
				return nil, fmt.Errorf("%w: root role %s names key %.80s, which is not in keys", ErrMalformed, role.name, id)
			}
			used[id] = true
		}
		if role.r.Threshold < 1 || role.r.Threshold > len(role.r.KeyIDs) {
			return nil, fmt.Errorf("%w: root role %s: threshold %d, want 1 to %d (its number of keys)", ErrMalformed, role.name, role.r.Threshold, len(role.r.KeyIDs))
		}
	}
	for id := range keys {
		if !used[id] {
			return nil, fmt.Errorf("%w: root key %s belongs to no role", ErrMalformed, id)
		}
	}
	return keys, nil
}

// Validate checks r against every rule ParseRoot applies (see ParseRoot).
func (r *Root) Validate() error {
	_, err := r.verifiers()
	return err
}

// NewRootEnvelope validates r and returns an unsigned envelope whose payload
// is r's canonical JSON encoding. A zero SchemaVersion is written as
// SchemaVersion. Sign it with Sign.
func NewRootEnvelope(r *Root) (*Envelope, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil root", ErrMalformed)
	}
	c := r.Clone()
	if c.SchemaVersion == 0 {
		c.SchemaVersion = SchemaVersion
	}
	if _, err := c.verifiers(); err != nil {
		return nil, err
	}
	p, err := json.Marshal(rootWire{
		SchemaVersion: c.SchemaVersion,
		Version:       c.Version,
		Expires:       formatTime(c.Expires),
		Keys:          c.Keys,
		Roles:         c.Roles,
	})
	if err != nil {
		return nil, fmt.Errorf("manifest: encoding root: %w", err)
	}
	if len(p) > MaxDocumentSize {
		return nil, fmt.Errorf("%w: root is %d bytes, limit %d", ErrTooLarge, len(p), MaxDocumentSize)
	}
	return &Envelope{PayloadType: RootPayloadType, Payload: p, Signatures: []Signature{}}, nil
}

// ParseRoot parses a root payload strictly, without verifying anything
// about its signatures or expiry: at most MaxDocumentSize bytes, one JSON
// object, schemaVersion SchemaVersion, no unknown, duplicate or null
// members, no trailing data, expires as RFC 3339 UTC whole seconds, and the
// rules listed for Validate. Errors wrap ErrTooLarge, ErrDuplicateKey,
// ErrSchemaVersion or ErrMalformed.
func ParseRoot(payload []byte) (*Root, error) {
	r, _, err := parseRoot(payload)
	return r, err
}

func parseRoot(payload []byte) (*Root, map[string]*spec.PublicKey, error) {
	var w rootWire
	if err := decodeStrict(payload, "root", &w, true); err != nil {
		return nil, nil, err
	}
	exp, err := parseTime("root expires", w.Expires)
	if err != nil {
		return nil, nil, err
	}
	r := &Root{SchemaVersion: w.SchemaVersion, Version: w.Version, Expires: exp, Keys: w.Keys, Roles: w.Roles}
	keys, err := r.verifiers()
	if err != nil {
		return nil, nil, err
	}
	return r, keys, nil
}

// VerifySelfSignedRoot verifies a root envelope that nothing trusted yet
// vouches for: the initial root a device is provisioned with, or a root an
// operator pins. It checks, in order: the envelope (ParseEnvelope), the
// payload type (ErrPayloadType), a threshold of signatures by the root's own
// root-role keys (ErrThreshold, ErrUnknownKey, ErrBadSignature), the payload
// (ParseRoot) and that it has not expired at now (ErrExpired).
//
// Self-signature proves only that the root is consistent; trust in it must
// come from how it was delivered (factory provisioning).
func VerifySelfSignedRoot(envelope []byte, now time.Time) (*Root, error) {
	env, err := parseTypedEnvelope(envelope, RootPayloadType, "root")
	if err != nil {
		return nil, err
	}
	// The keys that verify the signatures come from the unverified payload
	// itself: that is what self-signed means.
	r, keys, err := parseRoot(env.Payload)
	if err != nil {
		return nil, err
	}
	if err := verifyRole(env, keys, r.Roles.Root, fmt.Sprintf("root version %d (self-signed) by its own root role", r.Version)); err != nil {
		return nil, err
	}
	if err := checkExpiry(fmt.Sprintf("root version %d", r.Version), r.Expires, now); err != nil {
		return nil, err
	}
	return r, nil
}

// VerifyRoot verifies one rotation step from the trusted root N to the root
// envelope next, and returns root N+1. In order (as TUF's client workflow):
//  1. trusted passes Validate;
//  2. next is a well-formed envelope (ParseEnvelope) of type RootPayloadType
//     (ErrPayloadType);
//  3. a threshold of trusted's root-role keys signed it (ErrThreshold, with
//     ErrUnknownKey or ErrBadSignature when no signature verified);
//  4. the payload parses (ParseRoot);
//  5. its version is exactly trusted.Version+1 (ErrRootVersion: rollback,
//     replay or a skipped version);
//  6. a threshold of its own root-role keys signed it (ErrThreshold ...);
//  7. it has not expired at now (ErrExpired).
//
// trusted is not modified.
func VerifyRoot(trusted *Root, next []byte, now time.Time) (*Root, error) {
	r, err := verifyRootStep(trusted, next)
	if err != nil {
		return nil, err
	}
	if err := checkExpiry(fmt.Sprintf("root version %d", r.Version), r.Expires, now); err != nil {
		return nil, err
	}
	return r, nil
}

// VerifyRootChain walks root envelopes in order, each one rotation step
// from the previous (VerifyRoot steps 1 to 6), starting from trusted, and
// returns the last root. As in TUF, intermediate roots may have expired
// (a device that was offline catches up through them); only the final root
// (trusted itself when chain is empty) must not have expired at now
// (ErrExpired). A chain longer than MaxRootChain is rejected (ErrTooLarge)
// before any work. Errors name the failing step (1-based).
func VerifyRootChain(trusted *Root, chain [][]byte, now time.Time) (*Root, error) {
	if len(chain) > MaxRootChain {
		return nil, fmt.Errorf("%w: root chain of %d versions, limit %d", ErrTooLarge, len(chain), MaxRootChain)
	}
	if _, err := trusted.verifiers(); err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	cur := trusted
	for i, b := range chain {
		next, err := verifyRootStep(cur, b)
		if err != nil {
			return nil, fmt.Errorf("root chain step %d (from version %d): %w", i+1, cur.Version, err)
		}
		cur = next
	}
	if err := checkExpiry(fmt.Sprintf("root version %d", cur.Version), cur.Expires, now); err != nil {
		return nil, err
	}
	return cur, nil
}

func verifyRootStep(trusted *Root, next []byte) (*Root, error) {
	tkeys, err := trusted.verifiers()
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	env, err := parseTypedEnvelope(next, RootPayloadType, "root")
	if err != nil {
		return nil, err
	}
	if err := verifyRole(env, tkeys, trusted.Roles.Root, fmt.Sprintf("new root by the root role of trusted root version %d", trusted.Version)); err != nil {
		return nil, err
	}
	r, keys, err := parseRoot(env.Payload)
	if err != nil {
		return nil, err
	}
	if trusted.Version == ^uint64(0) || r.Version != trusted.Version+1 {
		return nil, fmt.Errorf("%w: trusted root is version %d, so the next must be version %d; got version %d", ErrRootVersion, trusted.Version, trusted.Version+1, r.Version)
	}
	if err := verifyRole(env, keys, r.Roles.Root, fmt.Sprintf("root version %d by its own root role", r.Version)); err != nil {
		return nil, err
	}
	return r, nil
}

// VerifyRootChainFrom verifies a chain that starts at a root nothing
// trusted vouches for: first must be self-signed by a threshold of its own
// root keys (VerifySelfSignedRoot) and then each envelope of chain one
// rotation step from the previous (VerifyRootChain). Without chain, first
// must not have expired at now; with one, first only starts the chain (its
// signatures are checked at an instant it is valid, its expiry) and only
// the last root's expiry counts, as in VerifyRootChain.
func VerifyRootChainFrom(first []byte, chain [][]byte, now time.Time) (*Root, error) {
	at := now
	if len(chain) > 0 {
		at = time.Time{}
		if env, err := ParseEnvelope(first); err == nil {
			if r, err := ParseRoot(env.Payload); err == nil {
				at = r.Expires
			}
		}
	}
	trusted, err := VerifySelfSignedRoot(first, at)
	if err != nil {
		return nil, fmt.Errorf("first root: %w", err)
	}
	return VerifyRootChain(trusted, chain, now)
}

// RolesSummary describes the roles of r for people: "root keys 2 of 3,
// release keys 1 of 1".
func (r *Root) RolesSummary() string {
	return fmt.Sprintf("root keys %d of %d, release keys %d of %d",
		r.Roles.Root.Threshold, len(r.Roles.Root.KeyIDs), r.Roles.Release.Threshold, len(r.Roles.Release.KeyIDs))
}

// Role names, as AddKey takes them.
const (
	RoleRoot    = "root"
	RoleRelease = "release"
)

func (r *Root) role(name string) (*Role, error) {
	switch name {
	case RoleRoot:
		return &r.Roles.Root, nil
	case RoleRelease:
		return &r.Roles.Release, nil
	}
	return nil, fmt.Errorf("%w: no role %q", ErrMalformed, name)
}

// AddKey gives the role (RoleRoot or RoleRelease) the key k, listing k in
// r.Keys. It fails with ErrMalformed if the role already has k.
func (r *Root) AddKey(role string, k *spec.PublicKey) error {
	ro, err := r.role(role)
	if err != nil {
		return err
	}
	if slices.Contains(ro.KeyIDs, k.ID) {
		return fmt.Errorf("%w: key %s already has the %s role", ErrMalformed, k.ID, role)
	}
	if r.Keys == nil {
		r.Keys = map[string]Key{}
	}
	id, entry := KeyOf(k)
	r.Keys[id] = entry
	ro.KeyIDs = append(ro.KeyIDs, id)
	return nil
}

// RemoveKey removes the key id from every role and from r.Keys (a
// revocation, once the next root is signed). It fails with ErrNotListed
// if r has no such key.
func (r *Root) RemoveKey(id string) error {
	if _, ok := r.Keys[id]; !ok {
		return fmt.Errorf("%w: the root has no key %s", ErrNotListed, id)
	}
	for _, ro := range []*Role{&r.Roles.Root, &r.Roles.Release} {
		ro.KeyIDs = slices.DeleteFunc(ro.KeyIDs, func(s string) bool { return s == id })
	}
	delete(r.Keys, id)
	return nil
}

// Next returns the unsigned next version of r: a copy with the version
// plus one and the given expiry (ErrRootVersion if r's version is the
// largest there is).
func (r *Root) Next(expires time.Time) (*Root, error) {
	if r.Version == ^uint64(0) {
		return nil, fmt.Errorf("%w: root version %d cannot be incremented", ErrRootVersion, r.Version)
	}
	next := r.Clone()
	next.Version, next.Expires = r.Version+1, expires
	return next, nil
}

// ReleaseKeys returns the parsed public keys of r's release role.
func (r *Root) ReleaseKeys() ([]*spec.PublicKey, error) {
	keys := make([]*spec.PublicKey, 0, len(r.Roles.Release.KeyIDs))
	for _, id := range r.Roles.Release.KeyIDs {
		k, err := spec.ParsePublicKeyPEM([]byte(r.Keys[id].Public))
		if err != nil {
			return nil, fmt.Errorf("%w: root key %s: %v", ErrMalformed, id, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}
