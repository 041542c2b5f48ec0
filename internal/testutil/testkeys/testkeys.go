// Package testkeys provides deterministic, TEST-ONLY signing keys for upkit's
// tests, golden files and fuzz seeds. The private keys are derived from fixed
// public seeds: never use them for anything real.
//
// A *Signer satisfies spec.PublicSigner, so format packages can be tested
// without sigstore.
package testkeys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"

	"github.com/upkit/upkit/spec"
)

// Signer is an in-memory signer for tests.
type Signer struct {
	priv crypto.Signer
	key  *spec.PublicKey
}

var _ spec.PublicSigner = (*Signer)(nil)

// Ed25519 returns the n-th deterministic Ed25519 test key. The same n always
// gives the same key, so golden files signed with it are stable.
func Ed25519(n int) *Signer {
	seed := sha256.Sum256([]byte(fmt.Sprintf("upkit TEST-ONLY ed25519 key %d", n)))
	priv := ed25519.NewKeyFromSeed(seed[:])
	return mustWrap(priv)
}

// ECDSA returns a fresh random ECDSA P-256 test key.
func ECDSA() *Signer {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return mustWrap(priv)
}

// Wrap makes a test Signer from any supported crypto.Signer.
func Wrap(priv crypto.Signer) (*Signer, error) {
	k, err := spec.NewPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	return &Signer{priv: priv, key: k}, nil
}

func mustWrap(priv crypto.Signer) *Signer {
	s, err := Wrap(priv)
	if err != nil {
		panic(err)
	}
	return s
}

// KeyID returns the key ID (hex sha256 of the DER SubjectPublicKeyInfo).
func (s *Signer) KeyID() string { return s.key.ID }

// Public returns the parsed public key.
func (s *Signer) Public() *spec.PublicKey { return s.key }

// PEM returns the public key as PEM.
func (s *Signer) PEM() []byte { return s.key.PEM() }

// Private returns the private key (tests that need to write key files).
func (s *Signer) Private() crypto.Signer { return s.priv }

// Sign signs message: Ed25519 over the message, ECDSA P-256 over its SHA-256.
func (s *Signer) Sign(ctx context.Context, message []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch s.key.Algorithm {
	case spec.AlgorithmEd25519:
		return s.priv.Sign(nil, message, crypto.Hash(0))
	default:
		d := sha256.Sum256(message)
		return s.priv.Sign(rand.Reader, d[:], crypto.SHA256)
	}
}
