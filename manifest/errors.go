package manifest

import (
	"errors"
	"fmt"
)

// Sentinel errors. Returned errors wrap them with context (which document,
// which field, which key); test them with errors.Is.
var (
	// ErrMalformed: the document is not valid for its schema (syntax, types,
	// missing or unknown fields, bad digests, names, counts, duplicates).
	// ErrDuplicateKey and ErrSchemaVersion errors also match ErrMalformed.
	ErrMalformed = errors.New("manifest: malformed document")
	// ErrDuplicateKey: a JSON object repeats a key (compared as
	// encoding/json compares them, ignoring case).
	ErrDuplicateKey = errors.New("manifest: duplicate JSON key")
	// ErrSchemaVersion: the document declares a schemaVersion this package
	// does not know.
	ErrSchemaVersion = errors.New("manifest: unsupported schema version")
	// ErrTooLarge: a document, field, count or root chain is over its limit.
	ErrTooLarge = errors.New("manifest: over size limit")
	// ErrPayloadType: the envelope carries another payload type than the one
	// expected (a root where a release is expected, or the reverse).
	ErrPayloadType = errors.New("manifest: wrong payload type")
	// ErrThreshold: fewer distinct trusted keys than the role's threshold
	// signed the document. ErrUnknownKey and ErrBadSignature errors returned
	// by verification also match ErrThreshold.
	ErrThreshold = errors.New("manifest: signature threshold not met")
	// ErrUnknownKey: no signature verified and every signature present was
	// made by a key the role does not trust (unknown, removed or revoked).
	ErrUnknownKey = errors.New("manifest: signed only by keys the role does not trust")
	// ErrBadSignature: no signature verified and at least one signature by a
	// trusted key failed (tampered payload or payload type, corrupt signature).
	ErrBadSignature = errors.New("manifest: signature does not verify")
	// ErrExpired: the document (or the trust root used) expired before the
	// reference time.
	ErrExpired = errors.New("manifest: expired")
	// ErrRootVersion: a new root's version is not exactly the trusted
	// version plus one (rollback, replay or skipped version).
	ErrRootVersion = errors.New("manifest: wrong root version")
	// ErrNotListed: a package or delta digest is not listed in the verified
	// release (mix-and-match).
	ErrNotListed = errors.New("manifest: not listed in the release")
	// ErrMismatch: envelopes to combine carry different payloads.
	ErrMismatch = errors.New("manifest: envelopes carry different payloads")
	// ErrHardware: an image does not list the device's hardware.
	ErrHardware = errors.New("manifest: image does not support this hardware")
	// ErrNoRelease: a release directory holds no release envelope, or
	// more than one (FindReleaseFile).
	ErrNoRelease = errors.New("manifest: no single release envelope")
)

// sentinelsError is an error that matches several sentinels (errors.Is) but
// names only the most specific one in its message.
type sentinelsError struct {
	msg  string
	errs []error
}

func (e *sentinelsError) Error() string   { return e.msg }
func (e *sentinelsError) Unwrap() []error { return e.errs }

// errorf returns an error whose message is specific's text followed by the
// formatted detail, and that matches specific and every one of also.
func errorf(specific error, also []error, format string, args ...any) error {
	return &sentinelsError{
		msg:  specific.Error() + ": " + fmt.Sprintf(format, args...),
		errs: append([]error{specific}, also...),
	}
}
