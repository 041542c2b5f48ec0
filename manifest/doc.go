// Package manifest defines upkit's two signed JSON documents, the trust root
// and the release manifest, and the rules a device uses to accept them.
//
// Both documents travel as DSSE envelopes (https://github.com/secure-systems-lab/dsse):
//
//	{"payloadType": "...", "payload": "<base64>", "signatures": [{"keyid": "...", "sig": "<base64>"}]}
//
// Every signature is over PAE(payloadType, payload), the DSSE
// pre-authentication encoding of the exact payload bytes; documents are never
// re-encoded before verification. The payload types are [RootPayloadType]
// and [ReleasePayloadType].
//
// A trust root lists public keys and two roles, "root" and "release", each
// with key IDs and a threshold. A release manifest is accepted only when a
// threshold of distinct release-role keys signed it and it has not expired
// ([VerifyRelease]). A new root version N+1 is accepted only when a threshold
// of root version N's root keys AND a threshold of its own root keys signed it
// ([VerifyRoot], [VerifyRootChain]); this is how keys are rotated and revoked
// without reflashing devices, as in TUF.
//
// Parsing is strict and bounded: documents over [MaxDocumentSize], unknown
// schema versions, unknown fields, duplicate JSON keys at any depth (also
// keys that differ only in case), null values, trailing data and counts over
// the named Max* limits are rejected before any signature is trusted.
//
// Verification functions are pure: they take bytes and a reference time and
// do no I/O, so a device passes its own clock (or the newest time it has
// seen) and tests move the clock freely. Errors wrap the package's sentinel
// errors (ErrThreshold, ErrExpired, ...) and are meant for errors.Is.
//
// The package depends on the standard library and upkit's spec
// only, so that the device library can link it.
package manifest
