//go:build !unix

package regfile

// Where open(2) has no O_NONBLOCK the type check after opening remains.
const oNonBlock = 0
