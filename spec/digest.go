package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// DigestPrefix starts every digest string: sha256 is the only algorithm
// upkit's formats use.
const DigestPrefix = "sha256:"

// DigestLength is the length of a digest string: the prefix and 64 hex
// digits.
const DigestLength = len(DigestPrefix) + 2*sha256.Size

// Digest is a sha256 digest. Its string form, "sha256:" followed by 64
// lowercase hex digits, is what packages, release manifests, deltas, OCI
// descriptors and the device state write; Digest.String is the one place
// that writes it and ParseDigest the one place that reads it.
type Digest [sha256.Size]byte

// SHA256 returns the digest of b.
func SHA256(b []byte) Digest { return sha256.Sum256(b) }

// HashDigest returns the digest a sha256 hash (a hash.Hash from
// crypto/sha256, or anything with its Sum method) has computed so far. A
// hash of another size is a programming error: HashDigest panics.
func HashDigest(h interface{ Sum(b []byte) []byte }) Digest {
	var d Digest
	sum := h.Sum(nil)
	if len(sum) != len(d) {
		panic(fmt.Sprintf("spec: HashDigest of a %d-byte hash, want sha256", len(sum)))
	}
	copy(d[:], sum)
	return d
}

// ParseDigest parses "sha256:<64 lowercase hex digits>". The error says
// what is wrong without naming a field: callers wrap it with their own
// sentinel and the field's name.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if !ValidDigest(s) {
		return d, fmt.Errorf("%.80q: want sha256:<64 lowercase hex digits>", s)
	}
	hex.Decode(d[:], []byte(s[len(DigestPrefix):])) // valid hex: checked above
	return d, nil
}

// CheckDigest returns nil if s is a digest string, and ParseDigest's
// error otherwise.
func CheckDigest(s string) error {
	_, err := ParseDigest(s)
	return err
}

// ValidDigest reports whether s is "sha256:" followed by 64 lowercase hex
// digits.
func ValidDigest(s string) bool {
	return len(s) == DigestLength && s[:len(DigestPrefix)] == DigestPrefix && isLowerHex(s[len(DigestPrefix):])
}

// String returns "sha256:<64 lowercase hex digits>".
func (d Digest) String() string { return DigestPrefix + d.Hex() }

// Hex returns the 64 lowercase hex digits, without the prefix (the file
// name of a blob in an OCI layout, a key ID).
func (d Digest) Hex() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is the zero value (no digest computed).
func (d Digest) IsZero() bool { return d == Digest{} }

// MarshalText implements encoding.TextMarshaler: the string form.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler: ParseDigest.
func (d *Digest) UnmarshalText(b []byte) error {
	p, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// isLowerHex reports whether s is non-empty and only 0-9 and a-f.
func isLowerHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
