//go:build !unix

package ubootenv

// lock is a no-op where flock does not exist.
func (s *Storage) lock() (func(), error) { return func() {}, nil }
