// Package tampertest holds the tamper and garbage corpus test: for each
// artifact kind (image package, trust root, release manifest, delta) it
// builds valid artifacts with the TEST-ONLY keys of internal/testutil/testkeys,
// derives thousands of deterministic mutations from them and feeds each to
// the verifier a device uses, asserting that none is accepted and none
// panics. The test is in tamper_test.go; the figures of the last run are
// in docs/SECURITY-tamper.md. The package has no API.
package tampertest
