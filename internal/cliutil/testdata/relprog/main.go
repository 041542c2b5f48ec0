// Command relprog is TestReleaseExecutablePagesExternalLink's program: it
// releases its executable's pages, then calls into libc through its GOT
// (os/user with cgo), which a release of the RELRO segment would have
// undone.
package main

import (
	"fmt"
	"os"
	"os/user"

	"github.com/upkit/upkit/internal/cliutil"
)

func main() {
	n := cliutil.ReleaseExecutablePages()
	u, err := user.Current()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("released %d; user %s\n", n, u.Uid)
}
