//go:build !unix

package device

// See open_unix.go. Systems without these flags rely on the regular-file
// check of openRegular alone.
const (
	oNoFollow = 0
	oNonBlock = 0
)

func isSymlinkError(error) bool { return false }
