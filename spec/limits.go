package spec

// Limits shared by every format and by both sides (release tools and
// devices): a value that passes on one side passes on the other.
const (
	// MaxNameLength bounds product, component, type and hardware names,
	// in bytes.
	MaxNameLength = 64
	// MaxVersionLength bounds a semantic version, in bytes.
	MaxVersionLength = 128
	// MaxHardware bounds the hardware names one image lists.
	MaxHardware = 64
	// MaxBlobSize bounds every size a document declares: packages,
	// payloads, deltas, images (1 TiB).
	MaxBlobSize = 1 << 40
	// MaxJSONDepth bounds the nesting of objects and arrays in upkit's
	// JSON documents.
	MaxJSONDepth = 16
	// MaxJSONElements bounds the members of any one JSON object or array.
	MaxJSONElements = 1024
)
