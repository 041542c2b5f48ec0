package manifest

import "github.com/upkit/upkit/spec"

// Limits on untrusted input. Every count and size read from a document is
// checked against one of these before it is used.
const (
	// MaxDocumentSize bounds an envelope and a payload, in bytes.
	MaxDocumentSize = 1 << 20
	// MaxSignatures bounds the signatures in one envelope.
	MaxSignatures = 32
	// MaxKeys bounds the keys in a root and the key IDs of one role.
	MaxKeys = 64
	// MaxImages bounds the images in one release.
	MaxImages = 256
	// MaxDeltas bounds the deltas listed for one image.
	MaxDeltas = 64
	// MaxHardware bounds the hardware names of one image.
	MaxHardware = spec.MaxHardware
	// MaxRootChain bounds the number of root versions VerifyRootChain walks.
	MaxRootChain = 64
	// MaxNameLength bounds product, component, type and hardware names, in
	// bytes.
	MaxNameLength = spec.MaxNameLength
	// MaxIDLength bounds payload types and the key IDs named by signatures,
	// in bytes.
	MaxIDLength = 128
	// MaxVersionLength bounds a semantic version string, in bytes.
	MaxVersionLength = spec.MaxVersionLength
	// MaxSignatureSize bounds one decoded signature, in bytes (Ed25519
	// signatures are 64 bytes, ECDSA P-256 ASN.1 signatures at most 72).
	MaxSignatureSize = 512
	// MaxJSONDepth bounds the nesting of JSON objects and arrays.
	MaxJSONDepth = spec.MaxJSONDepth
	// MaxJSONElements bounds the members of any one JSON object or array,
	// before the document-specific limits above are applied.
	MaxJSONElements = spec.MaxJSONElements
	// MaxBlobSize bounds the package, payload and delta sizes a release may
	// declare (1 TiB).
	MaxBlobSize = spec.MaxBlobSize
)

// Payload types of the two envelopes.
const (
	RootPayloadType    = "application/vnd.upkit.root.v1+json"
	ReleasePayloadType = "application/vnd.upkit.release.v1+json"
)

// SchemaVersion is the only schemaVersion this package reads and writes.
const SchemaVersion = 1
