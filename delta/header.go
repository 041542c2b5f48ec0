package delta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/upkit/upkit/spec"
)

// Magic is the first 8 bytes of every patch. It differs from the image
// package magic ("\x89UPK\r\n\x1a\n") in its fourth byte.
const Magic = "\x89UPD\r\n\x1a\n"

// Version is the patch format version this package writes. Version 2
// changed the diff coder (subgroup flags, recent-value decisions); version
// 3 predicts references and codes the extra bytes with a context-mixing
// model, all in one zstd stream; version 4 codes the extra bytes with a
// larger model (bit-history states, two mixers, two APMs) and stores the
// body as it is (AlgBlocks). Apply reads versions 2 to 4; version 1
// patches are refused with ErrVersion.
const Version = 4

// minVersion is the oldest format version Apply still reads.
const minVersion = 2

// HeaderSize is the size in bytes of the fixed patch header.
const HeaderSize = 116

// Limits every header is checked against before anything is allocated.
// Apply's memory is bounded by Header.MaxApplyMemory, itself bounded by
// these, whatever the image size.
const (
	// MaxImageSize bounds OldSize and NewSize (1 TiB, spec.MaxBlobSize).
	MaxImageSize = spec.MaxBlobSize
	// MinWindow and MaxWindow bound the zstd window of a version 2 or 3
	// patch body; the window is a power of two.
	MinWindow = 1 << 10
	MaxWindow = 8 << 20
	// MaxBlockSize bounds the output bytes covered by one block; it is also
	// the longest single operation (MaxOp).
	MaxBlockSize = 4 << 20
	// MaxCtrlSize bounds the control section of one block.
	MaxCtrlSize = 1 << 20
	// MinModelBits and MaxModelBits bound the size of the diff model
	// (Header.ModelBits): at most 5.31 MiB of tables at MaxModelBits.
	MinModelBits = 12
	MaxModelBits = 20
)

// Algorithm identifies how the patch body is to be interpreted.
type Algorithm uint8

const (
	// AlgBlocksZstd is the algorithm of format versions 2 and 3: blocks
	// of seek/add/copy operations with separate control, diff and extra
	// sections, all in one zstd stream (see docs/FORMAT.md).
	AlgBlocksZstd Algorithm = 1
	// AlgBlocks is the algorithm of format version 4: the same blocks,
	// every section arithmetic-coded, the body stored as it is (zstd found
	// nothing left to compress). The header's window is 0.
	AlgBlocks Algorithm = 2
)

func (a Algorithm) String() string {
	switch a {
	case AlgBlocksZstd:
		return "blocks-zstd"
	case AlgBlocks:
		return "blocks"
	}
	return fmt.Sprintf("unknown(%d)", uint8(a))
}

// Sentinel errors. Every error returned by ReadHeader, Apply and the file
// helpers for bad input wraps exactly one of them (test with errors.Is).
// Those that refuse a patch (a bad patch, or a good one for another image)
// also match ErrRejected.
var (
	// ErrRejected matches every refusal of a patch: ErrMagic, ErrVersion,
	// ErrBounds, ErrCorrupt, ErrTruncated, ErrTrailingData, ErrWrongBase
	// and ErrNewDigest (as manifest.ErrMalformed covers its specific
	// errors). It is never returned alone.
	ErrRejected = errors.New("delta: patch rejected")
	// ErrMagic: the input does not start with Magic.
	ErrMagic = rejection("delta: not a patch (bad magic)")
	// ErrVersion: unknown format version or algorithm.
	ErrVersion = rejection("delta: unsupported patch version or algorithm")
	// ErrBounds: a header field or a value in the body exceeds a declared
	// or fixed limit (window, block size, operation past the end of old,
	// output longer than declared, ...).
	ErrBounds = rejection("delta: value out of bounds")
	// ErrCorrupt: the patch is malformed (bad checksum, bad encoding,
	// inconsistent lengths).
	ErrCorrupt = rejection("delta: corrupt patch")
	// ErrTruncated: the patch ends early.
	ErrTruncated = rejection("delta: truncated patch")
	// ErrTrailingData: bytes follow the end of the patch.
	ErrTrailingData = rejection("delta: trailing data after patch")
	// ErrWrongBase: the old image's size or sha256 is not the one the patch
	// was made from. Apply reports it before writing any output.
	ErrWrongBase = rejection("delta: wrong base image")
	// ErrNewDigest: the output's sha256 differs from the header's.
	ErrNewDigest = rejection("delta: new image digest mismatch")
	// ErrOptions: Create was given invalid Options.
	ErrOptions = errors.New("delta: invalid option")
	// ErrTooLarge: Create was given an image larger than MaxImageSize.
	ErrTooLarge = errors.New("delta: image too large")
)

// rejection is a sentinel that also matches ErrRejected.
func rejection(msg string) error { return spec.Sentinel(msg, ErrRejected) }

// Header is the fixed, bounded header of a patch (HeaderSize bytes, layout
// in docs/FORMAT.md). Digests are raw sha256 sums; OldDigest and NewDigest
// give them in the project's "sha256:<hex>" form.
type Header struct {
	Version   uint16
	Algorithm Algorithm
	// Window is the zstd window of a version 2 or 3 body in bytes (power of
	// two, MinWindow..MaxWindow): the decoder refuses frames declaring
	// more. 0 in version 4, whose body is not compressed.
	Window uint32
	// BlockSize is the most output bytes one block produces, and so the
	// longest operation (1..MaxBlockSize).
	BlockSize uint32
	// CtrlSize is the most bytes of one block's control section
	// (1..MaxCtrlSize).
	CtrlSize uint32
	// ModelBits sets the size of the diff coder's context tables
	// (MinModelBits..MaxModelBits; memory in docs/FORMAT.md).
	ModelBits uint8
	OldSize   int64
	NewSize   int64
	// BodySize is the length of the compressed body that follows the
	// header; the patch is exactly HeaderSize+BodySize bytes.
	BodySize  int64
	OldSHA256 [32]byte
	NewSHA256 [32]byte
}

// OldDigest returns the old image digest as "sha256:<64 hex>".
func (h *Header) OldDigest() string { return spec.Digest(h.OldSHA256).String() }

// NewDigest returns the new image digest as "sha256:<64 hex>".
func (h *Header) NewDigest() string { return spec.Digest(h.NewSHA256).String() }

// PatchSize is the total size of the patch: header plus body.
func (h *Header) PatchSize() int64 { return HeaderSize + h.BodySize }

// MaxApplyMemory is the most memory Apply allocates for this patch's
// buffers, models and decoder (versions 2 and 3: the zstd window; block
// and control buffers; a coded diff section read ahead, parDiffMax); the
// rest is a small constant.
func (h *Header) MaxApplyMemory() int64 {
	n := int64(h.BlockSize) + int64(h.CtrlSize) + modelMemory(int(h.ModelBits)) + parDiffMax
	switch {
	case h.Version >= 4:
		// The refs section's target map is decoded with a second control
		// model.
		n += litMemory(int(h.ModelBits)) + refsMemory + 2*ctrlMemory
	case h.Version == 3:
		n += 2*int64(h.Window) + lit3Memory(int(h.ModelBits)) + refsMemory + ctrlMemory
	default:
		n += 2 * int64(h.Window)
	}
	return n
}

// versionAlg is the algorithm of each format version.
func versionAlg(v uint16) Algorithm {
	if v >= 4 {
		return AlgBlocks
	}
	return AlgBlocksZstd
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// MarshalBinary encodes h into its HeaderSize-byte form, checksum included.
// It fails with ErrBounds if a field is outside the limits.
func (h *Header) MarshalBinary() ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	b := make([]byte, HeaderSize)
	copy(b, Magic)
	le := binary.LittleEndian
	le.PutUint16(b[8:], h.Version)
	b[10] = byte(h.Algorithm)
	b[11] = h.ModelBits
	le.PutUint32(b[12:], h.Window)
	le.PutUint32(b[16:], h.BlockSize)
	le.PutUint32(b[20:], h.CtrlSize)
	le.PutUint64(b[24:], uint64(h.OldSize))
	le.PutUint64(b[32:], uint64(h.NewSize))
	le.PutUint64(b[40:], uint64(h.BodySize))
	copy(b[48:80], h.OldSHA256[:])
	copy(b[80:112], h.NewSHA256[:])
	le.PutUint32(b[112:], crc32.Checksum(b[:112], crcTable))
	return b, nil
}

// ReadHeader reads exactly HeaderSize bytes from r and parses and
// bounds-checks them; it reads nothing else. Errors wrap ErrTruncated (r
// ends early), ErrMagic, ErrCorrupt (header checksum),
// ErrVersion or ErrBounds.
func ReadHeader(r io.Reader) (*Header, error) {
	var b [HeaderSize]byte
	if n, err := io.ReadFull(r, b[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			if n >= len(Magic) && string(b[:len(Magic)]) != Magic {
				return nil, ErrMagic
			}
			return nil, fmt.Errorf("%w: header is %d bytes, got %d", ErrTruncated, HeaderSize, n)
		}
		return nil, fmt.Errorf("delta: reading header: %w", err)
	}
	return parseHeader(b[:])
}

func parseHeader(b []byte) (*Header, error) {
	if string(b[:8]) != Magic {
		return nil, ErrMagic
	}
	le := binary.LittleEndian
	if got, want := le.Uint32(b[112:]), crc32.Checksum(b[:112], crcTable); got != want {
		return nil, fmt.Errorf("%w: header checksum %08x, computed %08x", ErrCorrupt, got, want)
	}
	h := &Header{
		Version:   le.Uint16(b[8:]),
		Algorithm: Algorithm(b[10]),
		Window:    le.Uint32(b[12:]),
		BlockSize: le.Uint32(b[16:]),
		CtrlSize:  le.Uint32(b[20:]),
		ModelBits: b[11],
	}
	if h.Version < minVersion || h.Version > Version {
		return nil, fmt.Errorf("%w: version %d (this build reads %d..%d)", ErrVersion, h.Version, minVersion, Version)
	}
	if h.Algorithm != versionAlg(h.Version) {
		return nil, fmt.Errorf("%w: algorithm %d in a version %d patch", ErrVersion, b[10], h.Version)
	}
	for _, f := range []struct {
		dst  *int64
		off  int
		name string
	}{{&h.OldSize, 24, "old size"}, {&h.NewSize, 32, "new size"}, {&h.BodySize, 40, "body size"}} {
		v := le.Uint64(b[f.off:])
		if v > MaxImageSize*2 {
			return nil, fmt.Errorf("%w: %s %d", ErrBounds, f.name, v)
		}
		*f.dst = int64(v)
	}
	copy(h.OldSHA256[:], b[48:80])
	copy(h.NewSHA256[:], b[80:112])
	if err := h.check(); err != nil {
		return nil, err
	}
	return h, nil
}

// check verifies every field against the fixed limits.
func (h *Header) check() error {
	switch {
	case h.Version < minVersion || h.Version > Version || h.Algorithm != versionAlg(h.Version):
		return fmt.Errorf("%w: version %d algorithm %d", ErrVersion, h.Version, h.Algorithm)
	case h.Algorithm == AlgBlocks && h.Window != 0:
		return fmt.Errorf("%w: window %d in a body without zstd (must be 0)", ErrBounds, h.Window)
	case h.Algorithm == AlgBlocksZstd && (h.Window < MinWindow || h.Window > MaxWindow || h.Window&(h.Window-1) != 0):
		return fmt.Errorf("%w: window %d (power of two in %d..%d)", ErrBounds, h.Window, MinWindow, MaxWindow)
	case h.BlockSize < 1 || h.BlockSize > MaxBlockSize:
		return fmt.Errorf("%w: block size %d (max %d)", ErrBounds, h.BlockSize, MaxBlockSize)
	case h.CtrlSize < 1 || h.CtrlSize > MaxCtrlSize:
		return fmt.Errorf("%w: control size %d (max %d)", ErrBounds, h.CtrlSize, MaxCtrlSize)
	case h.ModelBits < MinModelBits || h.ModelBits > MaxModelBits:
		return fmt.Errorf("%w: model bits %d (%d..%d)", ErrBounds, h.ModelBits, MinModelBits, MaxModelBits)
	case h.OldSize < 0 || h.OldSize > MaxImageSize:
		return fmt.Errorf("%w: old size %d (max %d)", ErrBounds, h.OldSize, int64(MaxImageSize))
	case h.NewSize < 0 || h.NewSize > MaxImageSize:
		return fmt.Errorf("%w: new size %d (max %d)", ErrBounds, h.NewSize, int64(MaxImageSize))
	case h.BodySize < 1 || h.BodySize > MaxImageSize*2:
		return fmt.Errorf("%w: body size %d", ErrBounds, h.BodySize)
	}
	return nil
}
