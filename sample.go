// Package upkit is the root of the upkit module. Its only Go content is the
// embedded sample material under testdata/sample, which `upkit demo` and the
// tests use; the toolchain lives in the subpackages (see README.md).
package upkit

import "embed"

// Sample holds testdata/sample: the demo agent executables and their source.
//
//go:embed testdata/sample/agent-v1 testdata/sample/agent-v2 testdata/sample/agent.c
var Sample embed.FS
