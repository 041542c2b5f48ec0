// Package imgtooltest finds and runs upstream MCUboot imgtool, the
// reference that upkit's MCUboot images are checked against in tests.
//
// imgtool is found through the UPKIT_IMGTOOL environment variable (a
// command: imgtool itself, or a wrapper such as shared/tools/imgtool.sh),
// else at ../shared/tools/imgtool.sh beside the module root, where the
// project's CI lays it. Tests that need it fail, never skip, when it is
// missing or cannot run, naming what to install.
package imgtooltest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Install is what the failure message tells a developer to do.
const Install = "set UPKIT_IMGTOOL to an imgtool command, or lay MCUboot's scripts/imgtool at ../shared/tools/imgtool.sh beside the module; " +
	"it needs: apt-get install -y python3 python3-click python3-intelhex python3-cbor2 python3-cryptography python3-yaml"

var (
	once    sync.Once
	found   string
	findErr string
)

// moduleRoot walks up from the working directory to the directory with go.mod.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func find() {
	if v := os.Getenv("UPKIT_IMGTOOL"); v != "" {
		found = v
	} else if root := moduleRoot(); root != "" {
		p := filepath.Join(filepath.Dir(root), "shared", "tools", "imgtool.sh")
		if _, err := os.Stat(p); err == nil {
			found = p
		}
	}
	if found == "" {
		findErr = "imgtool not found: " + Install
		return
	}
	out, err := exec.Command(found, "version").CombinedOutput()
	if err != nil {
		findErr = "imgtool (" + found + ") does not run: " + err.Error() + "\n" + string(out) + "\n" + Install
		found = ""
	}
}

// Path returns the imgtool command, failing the test if there is none.
func Path(t testing.TB) string {
	t.Helper()
	once.Do(find)
	if found == "" {
		t.Fatal(findErr)
	}
	return found
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
