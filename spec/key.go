package spec

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// Signature algorithms, named as they appear in upkit's documents.
const (
	// AlgorithmECDSAP256 is ECDSA over P-256 with SHA-256: the signature
	// is ASN.1 DER over sha256(message), as cosign and sigstore write it.
	AlgorithmECDSAP256 = "ecdsa-p256"
	// AlgorithmEd25519 is pure Ed25519 over the message itself.
	AlgorithmEd25519 = "ed25519"
)

// MaxPEMSize bounds a public key PEM block accepted by ParsePublicKeyPEM.
const MaxPEMSize = 4096

var (
	// ErrUnsupportedKey: a key that is neither ECDSA P-256 nor Ed25519.
	ErrUnsupportedKey = errors.New("spec: unsupported key type (want ecdsa-p256 or ed25519)")
	// ErrBadPEM: a public key PEM that cannot be decoded.
	ErrBadPEM = errors.New("spec: malformed public key PEM")
	// ErrBadSignature: a signature that does not verify.
	ErrBadSignature = errors.New("spec: signature does not verify")
)

// PublicKey is a parsed, supported public key with its key ID and
// algorithm: what every verifier in upkit (packages, trust roots, release
// manifests) checks signatures with.
type PublicKey struct {
	ID        string           // KeyID of DER: lowercase hex sha256 of the DER SubjectPublicKeyInfo
	Algorithm string           // AlgorithmECDSAP256 or AlgorithmEd25519
	Public    crypto.PublicKey // *ecdsa.PublicKey or ed25519.PublicKey
	DER       []byte           // the DER SubjectPublicKeyInfo
}

// NewPublicKey wraps a crypto.PublicKey, checking that it is supported
// (ErrUnsupportedKey otherwise).
func NewPublicKey(pub crypto.PublicKey) (*PublicKey, error) {
	alg, err := AlgorithmOf(pub)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("spec: encoding public key: %w", err)
	}
	return &PublicKey{ID: KeyID(der), Algorithm: alg, Public: pub, DER: der}, nil
}

// ParsePublicKeyDER parses a DER SubjectPublicKeyInfo.
func ParsePublicKeyDER(der []byte) (*PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPEM, err)
	}
	return NewPublicKey(pub)
}

// ParsePublicKeyPEM parses one "PUBLIC KEY" PEM block of at most
// MaxPEMSize bytes. Anything but white space after the block is an error,
// so that one PEM string names exactly one key.
func ParsePublicKeyPEM(data []byte) (*PublicKey, error) {
	if len(data) > MaxPEMSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadPEM, len(data), MaxPEMSize)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrBadPEM)
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: PEM type %q, want \"PUBLIC KEY\"", ErrBadPEM, block.Type)
	}
	for _, b := range rest {
		if b != '\n' && b != '\r' && b != ' ' && b != '\t' {
			return nil, fmt.Errorf("%w: trailing data after the PEM block", ErrBadPEM)
		}
	}
	return ParsePublicKeyDER(block.Bytes)
}

// PEM returns the key as a "PUBLIC KEY" PEM block: the canonical form
// trust roots store.
func (k *PublicKey) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: k.DER})
}

// KeyID returns the key ID of a DER SubjectPublicKeyInfo: the lowercase
// hex sha256 of the DER bytes (64 digits, see ValidKeyID).
func KeyID(der []byte) string {
	return Digest(sha256.Sum256(der)).Hex()
}

// ValidKeyID reports whether id has the form of a key ID: 64 lowercase hex
// digits.
func ValidKeyID(id string) bool {
	return len(id) == 64 && isLowerHex(id)
}

// AlgorithmOf names the algorithm of a public key, or returns
// ErrUnsupportedKey.
func AlgorithmOf(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("%w: ECDSA curve %s", ErrUnsupportedKey, k.Curve.Params().Name)
		}
		return AlgorithmECDSAP256, nil
	case ed25519.PublicKey:
		return AlgorithmEd25519, nil
	default:
		return "", fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
	}
}

// Verify checks sig over message with the key: ECDSA P-256 over SHA-256 of
// the message (ASN.1 signature), or Ed25519 over the message itself. It
// returns ErrBadSignature when the signature does not verify.
func (k *PublicKey) Verify(message, sig []byte) error {
	switch pub := k.Public.(type) {
	case *ecdsa.PublicKey:
		digest := sha256.Sum256(message)
		if !ecdsa.VerifyASN1(pub, digest[:], sig) {
			return ErrBadSignature
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(pub, message, sig) {
			return ErrBadSignature
		}
	default:
		return ErrUnsupportedKey
	}
	return nil
}
