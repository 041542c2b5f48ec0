// Package pubkey holds what every verifier in upkit shares: parsing public
// keys, computing key IDs and checking signatures. It uses the standard
// library only, so that the device library can link it.
//
// Supported algorithms are ECDSA P-256 with SHA-256 (ASN.1 DER signatures,
// as cosign and sigstore produce them) and Ed25519 (pure, over the message).
package pubkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// Algorithm names as they appear in upkit's documents.
const (
	ECDSAP256 = "ecdsa-p256"
	Ed25519   = "ed25519"
)

// MaxPEMSize bounds the size of a public key PEM block accepted by ParsePEM.
const MaxPEMSize = 4096

var (
	// ErrUnsupportedKey is returned for keys that are neither ECDSA P-256 nor Ed25519.
	ErrUnsupportedKey = errors.New("pubkey: unsupported key type (want ecdsa-p256 or ed25519)")
	// ErrBadPEM is returned when a PEM public key cannot be decoded.
	ErrBadPEM = errors.New("pubkey: malformed public key PEM")
	// ErrBadSignature is returned when a signature does not verify.
	ErrBadSignature = errors.New("pubkey: signature does not verify")
)

// Key is a parsed, supported public key with its ID and algorithm.
type Key struct {
	ID        string           // lowercase hex sha256 of the DER SubjectPublicKeyInfo
	Algorithm string           // ECDSAP256 or Ed25519
	Public    crypto.PublicKey // *ecdsa.PublicKey or ed25519.PublicKey
	DER       []byte           // the DER SubjectPublicKeyInfo
}

// FromPublic wraps a crypto.PublicKey, checking that it is supported.
func FromPublic(pub crypto.PublicKey) (*Key, error) {
	alg, err := AlgorithmOf(pub)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("pubkey: encoding public key: %w", err)
	}
	return &Key{ID: IDFromDER(der), Algorithm: alg, Public: pub, DER: der}, nil
}

// ParseDER parses a DER SubjectPublicKeyInfo.
func ParseDER(der []byte) (*Key, error) {
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPEM, err)
	}
	return FromPublic(pub)
}

// ParsePEM parses a "PUBLIC KEY" PEM block. Trailing data after the block is
// an error, so that one PEM string names exactly one key.
func ParsePEM(data []byte) (*Key, error) {
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
	return ParseDER(block.Bytes)
}

// PEM returns the key as a "PUBLIC KEY" PEM block.
func (k *Key) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: k.DER})
}

// IDFromDER returns the key ID of a DER SubjectPublicKeyInfo: lowercase hex sha256.
func IDFromDER(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// AlgorithmOf names the algorithm of a public key, or returns ErrUnsupportedKey.
func AlgorithmOf(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("%w: ECDSA curve %s", ErrUnsupportedKey, k.Curve.Params().Name)
		}
		return ECDSAP256, nil
	case ed25519.PublicKey:
		return Ed25519, nil
	default:
		return "", fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
	}
}

// Verify checks sig over message with the key: ECDSA P-256 over SHA-256 of
// the message (ASN.1 signature), or Ed25519 over the message itself.
func (k *Key) Verify(message, sig []byte) error {
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
