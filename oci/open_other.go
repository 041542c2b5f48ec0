//go:build !unix

package oci

const (
	oNoFollow = 0
	oNonBlock = 0
)
