// Package spec is the vocabulary every upkit format and both sides (the
// release tools and the device) share: what docs/FORMAT.md means by a
// digest, a public key and its key ID, a signer, a component, hardware or
// product name, a semantic version, a timestamp and a strict JSON document,
// and the limits those are held to. It holds rules, not formats: imagepkg,
// manifest, delta, oci and device each build their format on it, so that
// a value one side accepts the other accepts too, and each rule is written
// once.
//
//   - Digest: sha256, written "sha256:<64 lowercase hex>" (ParseDigest,
//     Digest.String, HashDigest).
//   - PublicKey: an ECDSA P-256 or Ed25519 public key with its key ID (the
//     hex sha256 of its DER SubjectPublicKeyInfo); Verify checks a
//     signature as every upkit verifier does.
//   - Signer: the one signing interface (key ID, sign bytes); PublicSigner
//     adds the public key.
//   - CheckName, CheckHardware, CheckSemver, ParseTime, FormatTime,
//     CheckTime: the field rules.
//   - CheckJSON, DecodeJSON: the strict JSON reader (duplicate keys,
//     unknown and missing members, nulls, negative numbers, trailing data,
//     depth and size limits).
//   - OpenRegular, ReadFile: the opener of every named input file
//     (regular files only, never blocking on a FIFO) and the bounded
//     reader of small files.
//
// The package imports only the standard library, so device firmware links
// it; a test enforces it.
package spec
