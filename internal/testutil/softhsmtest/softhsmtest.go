// Package softhsmtest gives tests a real PKCS#11 token: a SoftHSM2 token
// initialized in a temporary directory that disappears with the test.
//
// It needs SoftHSM2 installed (Debian/Ubuntu: apt-get install softhsm2).
// When it is missing the test fails, saying what to install; it never
// skips, so a CI run without SoftHSM2 cannot pass by testing nothing.
package softhsmtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ModuleEnv, when set, is the path of the SoftHSM2 PKCS#11 module to use
// instead of searching the usual install locations.
const ModuleEnv = "SOFTHSM2_MODULE"

// modulePaths are the places distributions install libsofthsm2.so.
var modulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",                  // Debian, Ubuntu
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so", // Debian multiarch
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",         // Fedora, RHEL
	"/usr/lib/pkcs11/libsofthsm2.so",           // Arch, Alpine
	"/usr/local/lib/softhsm/libsofthsm2.so",    // source install
	"/opt/homebrew/lib/softhsm/libsofthsm2.so", // macOS Homebrew
}

const install = "install SoftHSM2 (Debian/Ubuntu: apt-get install softhsm2; Fedora: dnf install softhsm)"

// ModulePath returns the path of the SoftHSM2 PKCS#11 module: $SOFTHSM2_MODULE
// when set, otherwise the first usual install location that exists. It
// fails the test when there is none.
func ModulePath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(ModuleEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("softhsmtest: %s=%s: %v", ModuleEnv, p, err)
		}
		return p
	}
	for _, p := range modulePaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("softhsmtest: libsofthsm2.so not found in %s: %s, or set %s to its path",
		strings.Join(modulePaths, ", "), install, ModuleEnv)
	return ""
}

// NewToken initializes a fresh SoftHSM2 token labelled label, with user PIN
// pin, in a temporary directory of the test, and returns the path of the
// PKCS#11 module that serves it.
//
// It writes a softhsm2.conf under t.TempDir() (token directory also there,
// file object store) and points SOFTHSM2_CONF at it with t.Setenv, so the
// calling test must not be parallel, and everything that loads the module
// afterwards in this test (C_Initialize reads SOFTHSM2_CONF) sees only this
// token. Calling NewToken twice in one test adds a second token to the same
// directory. The security officer PIN is a fixed test value.
//
// The test fails (never skips) when softhsm2-util or the module is missing,
// or when initialization fails.
func NewToken(t testing.TB, label, pin string) (modulePath string) {
	t.Helper()
	module := ModulePath(t)
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		t.Fatalf("softhsmtest: softhsm2-util not on PATH: %s", install)
	}
	if len(pin) < 4 || len(pin) > 255 {
		t.Fatalf("softhsmtest: SoftHSM2 PINs are 4 to 255 bytes, got %d", len(pin))
	}

	conf := os.Getenv("SOFTHSM2_CONF")
	if !isOurs(conf) {
		dir := t.TempDir()
		tokens := filepath.Join(dir, "tokens")
		if err := os.Mkdir(tokens, 0o700); err != nil {
			t.Fatalf("softhsmtest: %v", err)
		}
		conf = filepath.Join(dir, "softhsm2.conf")
		text := fmt.Sprintf(`# written by upkit's internal/testutil/softhsmtest
directories.tokendir = %s
objectstore.backend = file
log.level = ERROR
slots.removable = false
slots.mechanisms = ALL
library.reset_on_fork = false
`, tokens)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatalf("softhsmtest: %v", err)
		}
		t.Setenv("SOFTHSM2_CONF", conf)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, util, "--init-token", "--free",
		"--label", label, "--pin", pin, "--so-pin", "so-"+pin,
		"--module", module)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("softhsmtest: %s --init-token --label %s: %v\n%s", util, label, err, out)
	}
	return module
}

// isOurs reports whether conf is a config file written by NewToken.
func isOurs(conf string) bool {
	data, err := os.ReadFile(conf)
	return err == nil && strings.HasPrefix(string(data), "# written by upkit's internal/testutil/softhsmtest")
}
