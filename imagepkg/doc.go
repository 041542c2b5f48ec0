// Package imagepkg reads and writes upkit image packages (.upk): one signed
// image (OS partition image, application bundle, MCU firmware) in one file.
//
// A package is streamable. A fixed header, the signed metadata (JSON) and a
// signature block come first, the payload last, so a reader checks the
// signature before it reads a single payload byte, and then checks the
// payload's size and sha256 while streaming it through, in memory that does
// not grow with the payload. The byte layout is specified in
// docs/FORMAT.md ("Image package"):
//
//	offset     size   field
//	0          8      magic "\x89UPK\r\n\x1a\n"
//	8          2      format version, uint16 big-endian, = 1
//	10         2      flags, uint16 big-endian, = 0
//	12         4      metadata length M, uint32 big-endian, 1..MaxMetadataSize
//	16         M      metadata, strict JSON (see Metadata)
//	16+M       2      signature block length S, uint16 big-endian, 35..MaxSignatureBlock
//	18+M       32     key ID: raw sha256 of the signer's DER SubjectPublicKeyInfo
//	50+M       1      algorithm: 1 = ecdsa-p256, 2 = ed25519
//	51+M       S-33   signature
//	18+M+S     ...    payload: exactly metadata.payload.storedSize bytes, then end of file
//
// The signature covers "upkit-package-v1\x00" followed by bytes [0, 16+M):
// the header and the metadata, which in turn pins the payload by size and
// sha256 (of the uncompressed payload).
//
// Writing: Pack and PackPath. Reading: Open parses and bounds the header,
// Reader.VerifySignature checks it against trusted keys, Reader.Payload
// streams the payload and fails at its end unless size and digest hold
// (Reader.VerifyPayload reads and discards it). Verify does all of it;
// Extract writes a verified payload to disk.
//
// The package imports only the standard library, klauspost/compress and
// upkit's spec, so that device firmware can link it.
package imagepkg
