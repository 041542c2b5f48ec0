package manifest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/upkit/upkit/internal/atomicfile"
	"github.com/upkit/upkit/spec"
)

// ReadFile reads a root or release document from a file, reading at most
// MaxDocumentSize bytes (a larger file is ErrTooLarge, before any parsing).
func ReadFile(path string) ([]byte, error) {
	data, err := spec.ReadFile(path, MaxDocumentSize)
	if errors.Is(err, spec.ErrTooLarge) {
		return nil, fmt.Errorf("%s: %w: over %d bytes", path, ErrTooLarge, MaxDocumentSize)
	}
	return data, err
}

// ReadEnvelopeFile reads an envelope from a file (ReadFile) and parses it
// strictly, without checking signatures; its payload type must be
// payloadType (ErrPayloadType otherwise, naming what the file holds).
func ReadEnvelopeFile(path, payloadType string) (*Envelope, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	env, err := ParseEnvelope(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if env.PayloadType != payloadType {
		return nil, fmt.Errorf("%s: %w: %q is not %s (want %s)", path, ErrPayloadType, env.PayloadType, documentName(payloadType), payloadType)
	}
	return env, nil
}

func documentName(payloadType string) string {
	if payloadType == RootPayloadType {
		return "a trust root"
	}
	return "a release manifest"
}

// ReadRootFile reads a root envelope from a file and parses it strictly,
// without checking signatures (for signing, rotating, or a root the user
// declares trusted).
func ReadRootFile(path string) (*Envelope, *Root, error) {
	env, err := ReadEnvelopeFile(path, RootPayloadType)
	if err != nil {
		return nil, nil, err
	}
	r, err := ParseRoot(env.Payload)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return env, r, nil
}

// ReadReleaseFile reads a release envelope from a file and parses it
// strictly, without checking signatures.
func ReadReleaseFile(path string) (*Envelope, *Release, error) {
	env, err := ReadEnvelopeFile(path, ReleasePayloadType)
	if err != nil {
		return nil, nil, err
	}
	rel, err := ParseRelease(env.Payload)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return env, rel, nil
}

// ParseReleaseEnvelope parses a release envelope and its payload strictly,
// without checking signatures (ErrPayloadType for another document).
func ParseReleaseEnvelope(data []byte) (*Envelope, *Release, error) {
	env, err := ParseEnvelope(data)
	if err != nil {
		return nil, nil, err
	}
	if env.PayloadType != ReleasePayloadType {
		return nil, nil, fmt.Errorf("%w: %q is not %s (want %s)", ErrPayloadType, env.PayloadType, documentName(ReleasePayloadType), ReleasePayloadType)
	}
	rel, err := ParseRelease(env.Payload)
	if err != nil {
		return nil, nil, err
	}
	return env, rel, nil
}

// LoadTrustedRoot reads a root file that a user names as the trust anchor
// and verifies it as a device verifies the root it is provisioned with
// (VerifySelfSignedRoot at now).
func LoadTrustedRoot(path string, now time.Time) (*Root, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := VerifySelfSignedRoot(data, now)
	if err != nil {
		return nil, fmt.Errorf("trust root %s: %w", path, err)
	}
	return r, nil
}

// WriteEnvelopeFile writes env (Envelope.Marshal) to path atomically: a
// temporary file in the same directory, synced and renamed over path only
// when complete.
func WriteEnvelopeFile(path string, env *Envelope) error {
	data, err := env.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, data, 0o644)
}

// ReleaseFileName is the release envelope's file name in a release
// directory (and its OCI layer title).
const ReleaseFileName = "release.json"

// FindReleaseFile returns the path of the release envelope a path stands
// for: path itself when it is a file; in a directory, its ReleaseFileName,
// else its only *.json file holding a release envelope (ErrNoRelease when
// there is none or more than one, naming them).
func FindReleaseFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return path, nil
	}
	p := filepath.Join(path, ReleaseFileName)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob(filepath.Join(path, "*.json"))
	var rels []string
	for _, m := range matches {
		if _, _, err := ReadReleaseFile(m); err == nil {
			rels = append(rels, m)
		}
	}
	switch len(rels) {
	case 1:
		return rels[0], nil
	case 0:
		return "", fmt.Errorf("%w: %s holds no release envelope (%s or another *.json release manifest)", ErrNoRelease, path, ReleaseFileName)
	}
	sort.Strings(rels)
	return "", fmt.Errorf("%w: %s holds several release manifests (%s): name the one to use", ErrNoRelease, path, strings.Join(rels, ", "))
}
