// Command relprog is TestReleaseExecutablePagesExternalLink's program: it
// releases its executable's and shared libraries' pages, then calls into
// libc through its GOT (os/user with cgo), which a release of a RELRO
// segment would have undone. It prints the bytes released and the
// resident KiB of its shared libraries' read-only mappings before and
// after.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/upkit/upkit/internal/cliutil"
)

// libRssKiB is the resident KiB of the read-only mappings of the shared
// libraries (.so files) this process maps.
func libRssKiB() int {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	total, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		switch {
		case len(fl) >= 6 && strings.Contains(fl[0], "-") && len(fl[1]) == 4:
			in = fl[1][1] != 'w' && strings.Contains(fl[5], ".so")
		case len(fl) >= 2 && fl[0] == "Rss:" && in:
			n, _ := strconv.Atoi(fl[1])
			total += n
		}
	}
	return total
}

func main() {
	before := libRssKiB()
	n := cliutil.ReleaseExecutablePages()
	after := libRssKiB()
	u, err := user.Current()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("released %d; libraries %d %d; user %s\n", n, before, after, u.Uid)
}
