// Package delta makes and applies binary patches between two images (raw
// files or image-package payloads): Create on the release side, Apply on
// the device.
//
// A patch is a fixed 116-byte header (ReadHeader) that binds it to the old
// and new images by size and sha256 and declares the bounds a device needs
// before allocating anything, followed by a zstd-compressed body of blocks,
// each covering at most Header.BlockSize bytes of output. The format is in
// docs/FORMAT.md ("Delta patches").
//
// Apply reads the old image by random access (io.ReaderAt), the patch as a
// stream, and writes the new image sequentially. It checks the old image's
// size and digest before writing anything (ErrWrongBase), every length read
// from the patch against the header's bounds, themselves capped by the
// Max* constants, and the new image's size and digest at the end
// (ErrNewDigest). Its memory is bounded by Header.MaxApplyMemory (about 8.5
// MB with the default Options), whatever the image size. ApplyFile and
// CreateFile write through a temporary file renamed only on success.
//
// Create matches new against a suffix array of old (bsdiff's approximate
// alignment), and codes the difference bytes with a context-mixing
// arithmetic coder that uses the aligned old bytes as context; see
// docs/FORMAT.md for the algorithm and docs/PERFORMANCE.md for figures.
//
// The package uses only the standard library and
// github.com/klauspost/compress/zstd, so device code can link it.
package delta
