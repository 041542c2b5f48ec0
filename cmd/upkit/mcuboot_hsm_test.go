//go:build cgo

package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/upkit/upkit/internal/testutil/imgtooltest"
)

// TestHSMPackMCUboot signs an MCUboot image with a key that never leaves a
// PKCS#11 token (SoftHSM2); imgtool verifies it with the exported key.
func TestHSMPackMCUboot(t *testing.T) {
	imgtooltest.Path(t)
	env := hsmEnv(t)
	dir := t.TempDir()
	ref := "pkcs11:token=" + hsmToken + ";object=mcu"
	pub := filepath.Join(dir, "mcu.pub")
	mustRun(t, env, "key", "generate", "--out", ref, "--pub", pub)
	out := filepath.Join(dir, "sensor.bin")
	mustRun(t, env, "pack", "--format", "mcuboot", "--version", "3.0.0+1", "--security-version", "4",
		"--header-size", "0x200", "--pad-header", "--slot-size", "0x8000", "--pad", "--key", ref, "-o", out, mcuFirmware(t, dir, 2500))
	if o := imgtooltest.Run(t, "verify", "-k", pub, out); !strings.Contains(o, "Image was correctly validated") || !strings.Contains(o, "3.0.0+1") {
		t.Fatalf("imgtool verify of an HSM-signed image: %s", o)
	}
	mustRun(t, env, "verify", "--key", pub, out)
}
