package imagepkg

import (
	"context"
	"errors"
)

// Magic is the first 8 bytes of every image package. Like PNG's signature it
// contains a non-ASCII byte, CR LF, ^Z and LF, so that text-mode transfers
// and truncation to 7 bits are detected at once.
const Magic = "\x89UPK\r\n\x1a\n"

// FormatVersion is the format version this package writes and reads.
const FormatVersion = 1

// SchemaVersion is the metadata schemaVersion this package writes and reads.
const SchemaVersion = 1

// SignatureContext is prepended to the signed bytes (domain separation: a
// package signature can never be mistaken for a signature over another
// upkit document, and the reverse).
const SignatureContext = "upkit-package-v1\x00"

// Limits. Every length read from a package is checked against one of these
// before anything is allocated for it.
const (
	// MaxMetadataSize bounds the metadata length M.
	MaxMetadataSize = 64 << 10
	// MinSignatureBlock and MaxSignatureBlock bound the signature block
	// length S (key ID + algorithm + signature of at least 2 bytes).
	MinSignatureBlock = keyIDSize + 1 + 2
	MaxSignatureBlock = 512
	// MaxHeaderSize bounds every byte before the payload.
	MaxHeaderSize = fixedHeaderSize + MaxMetadataSize + 2 + MaxSignatureBlock
	// MaxHardware bounds the number of entries in metadata.hardware.
	MaxHardware = 64
	// MaxStringSize bounds the length of metadata strings without a
	// tighter limit of their own (version, hardware entries).
	MaxStringSize = 128
	// MaxDecoderWindow is the largest zstd window a reader accepts: the
	// decoder's memory is bounded by it. Pack writes 2 MiB windows.
	MaxDecoderWindow = 8 << 20
	// ReadBufferSize is the size of the buffers used to stream payloads.
	ReadBufferSize = 1 << 20
)

const (
	fixedHeaderSize = 16
	keyIDSize       = 32
	algECDSAP256    = 1
	algEd25519      = 2
)

// Errors. Every error returned for a malformed or untrusted package wraps
// one of these (test with errors.Is); the message says what and where.
var (
	ErrMagic             = errors.New("imagepkg: not an upkit image package (bad magic)")
	ErrVersion           = errors.New("imagepkg: unsupported format version")
	ErrUnsupported       = errors.New("imagepkg: unsupported feature")
	ErrMetadata          = errors.New("imagepkg: invalid metadata")
	ErrMetadataTooLarge  = errors.New("imagepkg: metadata too large")
	ErrSignatureBlock    = errors.New("imagepkg: malformed signature block")
	ErrUnknownKey        = errors.New("imagepkg: signed by an unknown key")
	ErrSignature         = errors.New("imagepkg: signature does not verify")
	ErrTruncated         = errors.New("imagepkg: truncated package")
	ErrPayloadDigest     = errors.New("imagepkg: payload digest mismatch")
	ErrPayloadSize       = errors.New("imagepkg: payload size mismatch")
	ErrTrailingData      = errors.New("imagepkg: trailing data after the payload")
	ErrUnsafePath        = errors.New("imagepkg: unsafe path in payload")
	ErrInvalidOptions    = errors.New("imagepkg: invalid pack options")
	ErrPayloadConsumed   = errors.New("imagepkg: payload already read")
	ErrSignerMisbehaving = errors.New("imagepkg: signer returned an unusable signature")
)

// Signer signs package headers. KeyID is the lowercase hex sha256 of the
// signer's DER SubjectPublicKeyInfo; Sign returns an Ed25519 signature over
// message, or an ASN.1 ECDSA P-256 signature over sha256(message).
//
// Pack learns the algorithm from optional methods, tried in this order:
// Public() *pubkey.Key, Public() crypto.PublicKey, PublicKey()
// crypto.PublicKey, then Algorithm() string ("ecdsa-p256" or "ed25519").
// When the public key is available, Pack also checks that it matches KeyID
// and that the signature verifies, before writing anything. Without any of
// them, the algorithm is inferred from the signature's encoding (an ASN.1
// DER pair: ECDSA P-256; 64 other bytes: Ed25519).
type Signer interface {
	KeyID() string
	Sign(ctx context.Context, message []byte) ([]byte, error)
}
