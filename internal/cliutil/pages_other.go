//go:build !linux

package cliutil

// ReleaseExecutablePages does nothing outside Linux (see pages_linux.go).
func ReleaseExecutablePages() int64 { return 0 }
