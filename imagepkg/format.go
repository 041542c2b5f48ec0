package imagepkg

import (
	"errors"

	"github.com/upkit/upkit/spec"
)

// Magic is the first 8 bytes of every image package. Like PNG's signature it
// contains a non-ASCII byte, CR LF, ^Z and LF, so that text-mode transfers
// and truncation to 7 bits are detected at once.
const Magic = "\x89UPK\r\n\x1a\n"

// FormatVersion is the format version Pack writes. Readers accept it and
// FormatVersion1.
//
// Version 2 adds a payload offset to the fixed header and zero padding
// between the signature block and the payload, so that a writer can reserve
// the header, write the payload in place while hashing it, and write the
// header last: no spool file, no second copy of the payload.
const FormatVersion = 2

// FormatVersion1 is the first format version, still read: its payload
// follows the signature block directly.
const FormatVersion1 = 1

// SchemaVersion is the metadata schemaVersion this package writes and reads.
const SchemaVersion = 1

// SignatureContext is prepended to the signed bytes of a version 2 package
// (domain separation: a package signature can never be mistaken for a
// signature over another upkit document or another format version, and the
// reverse).
const SignatureContext = "upkit-package-v2\x00"

// SignatureContextV1 is SignatureContext for format version 1.
const SignatureContextV1 = "upkit-package-v1\x00"

// Limits. Every length read from a package is checked against one of these
// before anything is allocated for it.
const (
	// MaxMetadataSize bounds the metadata length M.
	MaxMetadataSize = 64 << 10
	// MinSignatureBlock and MaxSignatureBlock bound the signature block
	// length S (key ID + algorithm + signature of at least 2 bytes).
	MinSignatureBlock = keyIDSize + 1 + 2
	MaxSignatureBlock = 512
	// MaxHeaderPadding bounds the zero bytes between the signature block
	// and the payload (version 2).
	MaxHeaderPadding = 1024
	// MaxHeaderSize bounds every byte before the payload.
	MaxHeaderSize = fixedHeaderSize + MaxMetadataSize + 2 + MaxSignatureBlock + MaxHeaderPadding
	// MaxHardware bounds the number of entries in metadata.hardware.
	MaxHardware = spec.MaxHardware
	// MaxStringSize bounds the length of metadata.version (names have
	// spec.MaxNameLength).
	MaxStringSize = spec.MaxVersionLength
	// MaxDecoderWindow is the largest zstd window a reader accepts: the
	// decoder's memory is bounded by it. Pack writes 2 MiB windows.
	MaxDecoderWindow = 8 << 20
	// ReadBufferSize is the size of the buffers used to stream payloads.
	ReadBufferSize = 1 << 20
)

const (
	fixedHeaderSizeV1 = 16 // magic, version, flags, metadata length
	fixedHeaderSize   = 20 // version 2: and the payload offset
	keyIDSize         = 32
	algECDSAP256      = 1
	algEd25519        = 2
)

// Errors. Every error returned for a malformed or untrusted package wraps
// one of these (test with errors.Is); the message says what and where.
// Those that refuse a package (malformed, untrusted, or not matching its
// signed metadata) also match ErrRejected.
var (
	// ErrRejected matches every refusal of a package: ErrMagic, ErrVersion,
	// ErrUnsupported, ErrMetadata, ErrMetadataTooLarge, ErrSignatureBlock,
	// ErrPadding, ErrUnknownKey, ErrSignature, ErrTruncated,
	// ErrPayloadDigest, ErrPayloadSize, ErrTrailingData, ErrUnsafePath and
	// ErrPathTooLong (tree.go). It is never returned alone.
	ErrRejected = errors.New("imagepkg: package rejected")

	ErrMagic             = rejection("imagepkg: not an upkit image package (bad magic)")
	ErrVersion           = rejection("imagepkg: unsupported format version")
	ErrUnsupported       = rejection("imagepkg: unsupported feature")
	ErrMetadata          = rejection("imagepkg: invalid metadata")
	ErrMetadataTooLarge  = rejection("imagepkg: metadata too large")
	ErrSignatureBlock    = rejection("imagepkg: malformed signature block")
	ErrPadding           = rejection("imagepkg: malformed header padding")
	ErrUnknownKey        = rejection("imagepkg: signed by an unknown key")
	ErrSignature         = rejection("imagepkg: signature does not verify")
	ErrTruncated         = rejection("imagepkg: truncated package")
	ErrPayloadDigest     = rejection("imagepkg: payload digest mismatch")
	ErrPayloadSize       = rejection("imagepkg: payload size mismatch")
	ErrTrailingData      = rejection("imagepkg: trailing data after the payload")
	ErrUnsafePath        = rejection("imagepkg: unsafe path in payload")
	ErrInvalidOptions    = errors.New("imagepkg: invalid pack options")
	ErrPayloadConsumed   = errors.New("imagepkg: payload already read")
	ErrSignerMisbehaving = errors.New("imagepkg: signer returned an unusable signature")
)

// rejection is a sentinel that also matches ErrRejected.
func rejection(msg string) error { return spec.Sentinel(msg, ErrRejected) }
