//go:build !unix

package spec

// Where open(2) has no O_NONBLOCK, OpenRegular's type check after opening
// remains.
const oNonBlock = 0
