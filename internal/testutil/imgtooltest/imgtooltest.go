// Package imgtooltest finds and runs upstream MCUboot imgtool, the
// reference that upkit's MCUboot images are checked against in tests.
//
// imgtool is, in this order: the command $UPKIT_IMGTOOL names (imgtool
// itself, or a wrapper such as shared/tools/imgtool.sh); the one
// scripts/test-deps.sh installs into the tools cache,
// $(testtools.Dir())/imgtool-VERSION/imgtool; ../shared/tools/imgtool.sh
// beside the module root. Tests that need it fail, never skip, when it is
// missing or does not run, naming the command that installs it.
package imgtooltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upkit/upkit/internal/testutil/testtools"
)

// Version is the imgtool release the tests check against.
const Version = "2.4.0"

// Install is what the failure message tells a developer to do.
const Install = "install it with `scripts/test-deps.sh imgtool` (`make test` runs it), or set $UPKIT_IMGTOOL to an imgtool command"

// find returns the imgtool command, once per test binary.
var find = sync.OnceValues(func() (string, error) {
	bin, err := lookup()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("imgtooltest: imgtool (%s) does not run: %v\n%s\n%s", bin, err, out, Install)
	}
	if got := strings.TrimSpace(string(out)); got != Version {
		return "", fmt.Errorf("imgtooltest: imgtool (%s) is version %q, the tests need %s: %s", bin, got, Version, Install)
	}
	return bin, nil
})

// lookup finds the imgtool command without running it.
func lookup() (string, error) {
	if v := os.Getenv("UPKIT_IMGTOOL"); v != "" {
		return v, nil
	}
	tried := []string{filepath.Join(testtools.Dir(), "imgtool-"+Version, "imgtool")}
	if root, err := moduleRoot(); err == nil {
		tried = append(tried, filepath.Join(filepath.Dir(root), "shared", "tools", "imgtool.sh"))
	}
	for _, p := range tried {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("imgtooltest: imgtool %s not found ($UPKIT_IMGTOOL is not set; tried %s): %s", Version, strings.Join(tried, ", "), Install)
}

// moduleRoot walks up from the working directory (a package's folder under
// go test) to the folder holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Path returns the imgtool command, failing the test (never skipping) if
// there is none.
func Path(t testing.TB) string {
	t.Helper()
	bin, err := find()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// Run runs imgtool with args (file names must be absolute: the wrapper
// changes directory) and returns its standard output; a non-zero exit
// fails the test with everything imgtool printed.
func Run(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, err := RunErr(t, args...)
	if err != nil {
		t.Fatalf("imgtool %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// RunErr runs imgtool and returns its outputs and exit error, for tests
// that expect it to refuse something.
func RunErr(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin := Path(t)
	for _, a := range args {
		if strings.HasPrefix(a, "./") || strings.HasPrefix(a, "../") {
			t.Fatalf("imgtooltest: pass absolute file names (the imgtool wrapper changes directory): %s", a)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}
