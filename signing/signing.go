// Package signing holds the release side of upkit's keys: generating key
// pairs, reading and writing encrypted key files, and loading signers from a
// key reference (a key file, a PKCS#11 URI or a KMS URI). It adapts them all to *Signer,
// which satisfies spec.Signer and spec.PublicSigner (key ID, sign bytes,
// public key), the one signing interface the format packages take, so they
// never import sigstore.
//
// Key files are interchangeable with cosign's: the private key is PKCS#8,
// encrypted with sigstore's cryptoutils (scrypt + secretbox, PEM type
// "ENCRYPTED SIGSTORE PRIVATE KEY"), and the public key is a PKIX "PUBLIC KEY"
// PEM block.
package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/upkit/upkit/internal/atomicfile"
	"github.com/upkit/upkit/spec"
)

// Algorithms accepted by Generate.
const (
	AlgorithmECDSAP256 = spec.AlgorithmECDSAP256
	AlgorithmEd25519   = spec.AlgorithmEd25519
)

// MaxKeyFileSize bounds key files read from disk.
const MaxKeyFileSize = 64 << 10

var (
	// ErrAlgorithm is returned for an algorithm name upkit does not support.
	ErrAlgorithm = errors.New("signing: unsupported algorithm (want ecdsa-p256 or ed25519)")
	// ErrPassword is returned when a key file cannot be decrypted with the password given.
	ErrPassword = errors.New("signing: wrong password or corrupt encrypted key")
	// ErrKeyFile is returned for a key file that is not a private key upkit can use.
	ErrKeyFile = errors.New("signing: not a usable private key file")
	// ErrExists is returned when key generation would overwrite a file.
	ErrExists = errors.New("signing: refusing to overwrite an existing key file")
	// ErrKeyRef is returned for a key reference that names no file and no known KMS scheme.
	ErrKeyRef = errors.New("signing: unusable key reference")
)

// PassFunc returns the password for a key file; confirm asks for it twice
// when a human types it. It is sigstore's cryptoutils.PassFunc.
type PassFunc = cryptoutils.PassFunc

// Signer signs with a private key held in a file, a KMS or a token. It
// satisfies spec.PublicSigner.
type Signer struct {
	key *spec.PublicKey
	sv  signature.Signer
}

var _ spec.PublicSigner = (*Signer)(nil)

// KeyID returns the lowercase hex sha256 of the signer's DER SubjectPublicKeyInfo.
func (s *Signer) KeyID() string { return s.key.ID }

// Public returns the signer's public key.
func (s *Signer) Public() *spec.PublicKey { return s.key }

// Sign signs message: Ed25519 over the bytes, ECDSA P-256 over their SHA-256
// (ASN.1 DER signature). The signature is checked against the public key
// before it is returned, so a faulty KMS or token never yields a bad package.
func (s *Signer) Sign(ctx context.Context, message []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sig, err := s.sv.SignMessage(bytes.NewReader(message), signOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("signing: signing with key %s: %w", short(s.key.ID), err)
	}
	if err := s.key.Verify(message, sig); err != nil {
		return nil, fmt.Errorf("signing: key %s produced a signature that does not verify: %w", short(s.key.ID), err)
	}
	return sig, nil
}

// NewSigner adapts a sigstore signature.Signer (a loaded key, a KMS signer)
// whose public key is ECDSA P-256 or Ed25519.
func NewSigner(sv signature.Signer) (*Signer, error) {
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("signing: reading the signer's public key: %w", err)
	}
	k, err := spec.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return &Signer{key: k, sv: sv}, nil
}

// FromPrivateKey makes a Signer from an in-memory private key.
func FromPrivateKey(priv crypto.PrivateKey) (*Signer, error) {
	sv, err := signature.LoadSigner(priv, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	return NewSigner(sv)
}

// Generate creates a new private key of the named algorithm.
func Generate(algorithm string) (crypto.Signer, error) {
	switch algorithm {
	case AlgorithmECDSAP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgorithmEd25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	default:
		return nil, fmt.Errorf("%w: %q", ErrAlgorithm, algorithm)
	}
}

// EncodePrivateKey returns priv as an encrypted PEM key file, the format of
// cosign's key files. password may be empty (the key is then still wrapped,
// with an empty password, as cosign does) but not nil.
func EncodePrivateKey(priv crypto.PrivateKey, password []byte) ([]byte, error) {
	if password == nil {
		password = []byte{}
	}
	der, err := cryptoutils.MarshalPrivateKeyToEncryptedDER(priv, cryptoutils.StaticPasswordFunc(password))
	if err != nil {
		return nil, fmt.Errorf("signing: encrypting private key: %w", err)
	}
	return cryptoutils.PEMEncode(cryptoutils.EncryptedSigstorePrivateKeyPEMType, der), nil
}

// DecodePrivateKey parses a key file written by EncodePrivateKey or by cosign
// (encrypted), or an unencrypted PKCS#8/SEC 1 PEM key.
func DecodePrivateKey(data []byte, pf PassFunc) (crypto.PrivateKey, error) {
	if len(data) > MaxKeyFileSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrKeyFile, len(data), MaxKeyFileSize)
	}
	if !bytes.Contains(data, []byte("-----BEGIN ")) {
		return nil, fmt.Errorf("%w: no PEM block", ErrKeyFile)
	}
	if bytes.Contains(data, []byte("-----BEGIN PUBLIC KEY")) {
		return nil, fmt.Errorf("%w: this is a public key; signing needs the private key (.key)", ErrKeyFile)
	}
	if pf == nil {
		pf = cryptoutils.StaticPasswordFunc([]byte{})
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(data, nonNil(pf))
	if err != nil {
		if strings.Contains(err.Error(), "decrypt") {
			return nil, fmt.Errorf("%w: %v", ErrPassword, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	if _, err := spec.AlgorithmOf(publicOf(priv)); err != nil {
		return nil, err
	}
	return priv, nil
}

// nonNil makes sure an empty password reaches the decrypter as an empty,
// non-nil slice (cryptoutils skips decryption on nil).
func nonNil(pf PassFunc) PassFunc {
	return func(confirm bool) ([]byte, error) {
		pw, err := pf(confirm)
		if err == nil && pw == nil {
			pw = []byte{}
		}
		return pw, err
	}
}

func publicOf(priv crypto.PrivateKey) crypto.PublicKey {
	if s, ok := priv.(crypto.Signer); ok {
		return s.Public()
	}
	return nil
}

// WriteKeyPair writes PREFIX.key (encrypted) and PREFIX.pub (PEM). It refuses
// to overwrite either file, and writes each through a temporary file renamed
// into place, so a failure never leaves half a key behind.
func WriteKeyPair(prefix string, priv crypto.Signer, password []byte) (*spec.PublicKey, error) {
	k, err := spec.NewPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	keyPEM, err := EncodePrivateKey(priv, password)
	if err != nil {
		return nil, err
	}
	keyPath, pubPath := prefix+".key", prefix+".pub"
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("%w: %s", ErrExists, p)
		}
	}
	if err := atomicfile.WriteBytes(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteBytes(pubPath, k.PEM(), 0o644); err != nil {
		os.Remove(keyPath)
		return nil, err
	}
	return k, nil
}

// LoadPublicKey reads a PEM public key file, or derives the public key from
// a key reference that is not a file (a KMS URI).
func LoadPublicKey(path string) (*spec.PublicKey, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	k, err := spec.ParsePublicKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("reading public key %s: %w", path, err)
	}
	return k, nil
}

// readBounded reads a key file of at most MaxKeyFileSize bytes
// (spec.ReadFile; a larger one is ErrKeyFile).
func readBounded(path string) ([]byte, error) {
	data, err := spec.ReadFile(path, MaxKeyFileSize)
	if errors.Is(err, spec.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	return data, err
}

// IsKMSRef reports whether ref is a KMS URI (scheme://...) rather than a path.
func IsKMSRef(ref string) bool {
	i := strings.Index(ref, "://")
	return i > 0 && !strings.ContainsAny(ref[:i], `/\.`)
}

// Load returns a Signer for a key reference: a private key file (decrypted
// with pf), a "pkcs11:" URI (RFC 7512; see LoadPKCS11), or a KMS URI handled by sigstore's KMS registry (the providers
// linked into the binary; see KMSProviders).
func Load(ctx context.Context, ref string, pf PassFunc) (*Signer, error) {
	if ref == "" {
		return nil, fmt.Errorf("%w: empty", ErrKeyRef)
	}
	if IsPKCS11Ref(ref) {
		return LoadPKCS11(ctx, ref, PKCS11OptionsFromEnv())
	}
	if IsKMSRef(ref) {
		sv, err := kms.Get(ctx, ref, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v (providers in this build: %s)", ErrKeyRef, ref, err, strings.Join(KMSProviders(), ", "))
		}
		return NewSigner(sv)
	}
	data, err := readBounded(ref)
	if err != nil {
		return nil, fmt.Errorf("reading key %s: %w", ref, err)
	}
	// Decryption (scrypt) takes a second or two and cannot be stopped: a
	// cancelled ctx returns at once and leaves it to finish in the
	// background.
	type decoded struct {
		priv crypto.PrivateKey
		err  error
	}
	done := make(chan decoded, 1)
	go func() {
		priv, err := DecodePrivateKey(data, pf)
		done <- decoded{priv, err}
	}()
	var d decoded
	select {
	case d = <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if d.err != nil {
		return nil, fmt.Errorf("loading key %s: %w", ref, d.err)
	}
	return FromPrivateKey(d.priv)
}

// KMSProviders lists the KMS URI schemes linked into this build.
func KMSProviders() []string {
	p := kms.SupportedProviders()
	if len(p) == 0 {
		return []string{"none (only sigstore-kms-<name> plugins on PATH)"}
	}
	return p
}

func signOptions(ctx context.Context) []signature.SignOption {
	return []signature.SignOption{options.WithContext(ctx)}
}

func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

// PublicKeyOf returns the public key a reference names: a public key file
// (PEM), or the public half of a private key reference (a key file, whose
// password pf gives, a KMS URI or a pkcs11: URI).
func PublicKeyOf(ctx context.Context, ref string, pf PassFunc) (*spec.PublicKey, error) {
	if !IsKMSRef(ref) && !IsPKCS11Ref(ref) {
		k, err := LoadPublicKey(ref)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return k, err
		}
	}
	s, err := Load(ctx, ref, pf)
	if err != nil {
		return nil, err
	}
	return s.Public(), nil
}
