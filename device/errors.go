package device

import "errors"

// Sentinel errors. Every error the device returns for a refused or failed
// update wraps one of these (or one of manifest's: ErrThreshold,
// ErrUnknownKey, ErrBadSignature, ErrExpired, ErrRootVersion, ErrMalformed
// pass through unchanged) with context naming the component, digest or
// field; test them with errors.Is.
var (
	// ErrNoState: the store holds no state yet (the device was never
	// provisioned, see Provision).
	ErrNoState = errors.New("device: no state (device not provisioned)")
	// ErrStateCorrupt: the stored state fails its checksum or does not
	// parse. It is never treated as an empty state.
	ErrStateCorrupt = errors.New("device: state corrupt")
	// ErrProvisioned: Provision was called on a device that has state.
	ErrProvisioned = errors.New("device: already provisioned")
	// ErrStateLocked: another process (or Device) holds the state's lock
	// (Locker); nothing was changed. Try again once it has finished.
	ErrStateLocked = errors.New("device: state locked by another process")
	// ErrStateConflict: Save refused to overwrite a stored state newer than
	// the one loaded (State.Generation); nothing was changed. Load again.
	ErrStateConflict = errors.New("device: state changed since it was loaded")

	// ErrRollback: the release version is lower than the stored one.
	ErrRollback = errors.New("device: release version rollback")
	// ErrSecurityVersion: an image's security version is lower than the
	// stored counter of its component.
	ErrSecurityVersion = errors.New("device: security version rollback")
	// ErrFreeze: the release was created before the newest release the
	// device has already seen (replay of an old, still valid release).
	ErrFreeze = errors.New("device: release older than one already seen (freeze)")
	// ErrHardware: no image of the release (or a package's signed
	// metadata) names the device's hardware.
	ErrHardware = errors.New("device: not for this hardware")
	// ErrNotListed: a blob, package or plan entry is not what the one
	// verified release lists (mix-and-match).
	ErrNotListed = errors.New("device: not listed in the verified release")
	// ErrBaseMismatch: a delta's base is not the installed payload.
	ErrBaseMismatch = errors.New("device: delta base is not the installed image")
	// ErrDigest: a blob or a written slot does not have the signed sha256.
	ErrDigest = errors.New("device: digest mismatch")
	// ErrTooLong: the source sent more bytes than the signed size.
	ErrTooLong = errors.New("device: source sent more than the signed size")
	// ErrTruncated: the source ended before the signed size. The bytes
	// received are kept in the staging directory; Install resumes there.
	ErrTruncated = errors.New("device: source ended before the signed size")
	// ErrTooLarge: a signed size is above the device's Limits.
	ErrTooLarge = errors.New("device: over the device's size limit")
	// ErrNothingToDo: the release is already installed.
	ErrNothingToDo = errors.New("device: nothing to do (release already installed)")
	// ErrNoPending: Commit or Rollback without a staged update.
	ErrNoPending = errors.New("device: no update awaiting commit")
	// ErrBootLimit: the pending update exceeded its boot attempts; the
	// firmware should call Rollback.
	ErrBootLimit = errors.New("device: boot attempts exceeded")
	// ErrNotFound: a Source has no blob with the digest.
	ErrNotFound = errors.New("device: blob not found in source")
	// ErrConfig: invalid Config or arguments.
	ErrConfig = errors.New("device: invalid configuration")
	// ErrSecondary: a Secondary's security counter could not be read, or
	// handing an image over to it failed (the device's own update is
	// committed; Recover retries the hand-over).
	ErrSecondary = errors.New("device: hand-over to a secondary failed")
)

// ErrProduct: the release is for another product than the device's.
var ErrProduct = errors.New("device: release is for another product")
