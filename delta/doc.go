// Package delta makes and applies binary patches between two images (raw
// files or image-package payloads): Create on the release side, Apply on
// the device.
//
// A patch is a fixed 116-byte header (ReadHeader) that binds it to the old
// and new images by size and sha256 and declares the bounds a device needs
// before allocating anything, followed by a body of blocks, each covering
// at most Header.BlockSize bytes of output (coded by the package's own
// arithmetic coders in format version 4; zstd-compressed in versions 2 and
// 3). The format is in docs/FORMAT.md ("Delta patches").
//
// Apply reads the old image by random access (io.ReaderAt), the patch as a
// stream, and writes the new image sequentially. It checks the old image's
// size and digest before writing anything (ErrWrongBase), every length read
// from the patch against the header's bounds, themselves capped by the
// Max* constants, and the new image's size and digest at the end
// (ErrNewDigest). Its memory is bounded by Header.MaxApplyMemory (about
// 11.7 MB with the default Options; measured peak resident sizes are in
// docs/PERFORMANCE.md), whatever the image size. Where a block has both,
// Apply decodes its add runs on a second goroutine while it decodes the
// copy runs; the output and the errors are the same on one CPU. ApplyFile
// and CreateFile write through a temporary file renamed only on success.
// Apply reads format versions 2, 3 and 4; Create writes version 4.
//
// Create matches new against a suffix array of old (bsdiff's approximate
// alignment). In executables (ELF for x86-64, AArch64 and ARM, or raw
// firmware) it finds references (calls, jumps, address computations,
// pointers) and carries in the patch a map of how far their targets moved,
// so that both sides predict each reference of an aligned run before the
// difference is coded, and matches a second time on views of both images
// where references read as their targets (Zucchini's idea, in bounded
// memory on the applying side). The differences, the operations and the
// bytes that match nothing are coded by context-mixing arithmetic coders;
// see docs/FORMAT.md for the format and docs/PERFORMANCE.md for figures.
//
// The package uses only the standard library and
// github.com/klauspost/compress/zstd, so device code can link it.
package delta
