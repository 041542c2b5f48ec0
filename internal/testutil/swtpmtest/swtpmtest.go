// Package swtpmtest gives tests a real TPM 2.0: swtpm (libtpms) in socket
// mode, with its state in a directory of the test, stopped when the test
// ends.
//
// It needs swtpm (Debian/Ubuntu: apt-get install swtpm swtpm-tools) and,
// to inspect the TPM from outside, tpm2-tools. When they are missing the
// test fails, saying what to install; it never skips.
package swtpmtest

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const install = "install swtpm (Debian/Ubuntu: apt-get install swtpm swtpm-tools tpm2-tools)"

// TPM is a running swtpm.
type TPM struct {
	t    testing.TB
	dir  string // its state
	sock string
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts a TPM with fresh state in a temporary directory.
func Start(t testing.TB) *TPM {
	t.Helper()
	return StartIn(t, t.TempDir())
}

// StartIn starts a TPM whose state is in dir (kept from a previous TPM,
// or empty for a fresh one). It is stopped when the test ends.
func StartIn(t testing.TB, dir string) *TPM {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Fatalf("swtpmtest: swtpm not found: %s", install)
	}
	// The socket lives in a short path: unix socket paths are limited to
	// about 100 bytes, test temporary directories can be longer.
	sockDir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	tpm := &TPM{t: t, dir: dir, sock: filepath.Join(sockDir, "tpm")}
	tpm.run()
	t.Cleanup(tpm.Stop)
	return tpm
}

func (tpm *TPM) run() {
	t := tpm.t
	t.Helper()
	os.Remove(tpm.sock)
	os.Remove(tpm.sock + ".ctrl")
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+tpm.dir,
		"--server", "type=unixio,path="+tpm.sock,
		"--ctrl", "type=unixio,path="+tpm.sock+".ctrl",
		"--flags", "not-need-init,startup-clear",
		"--log", "file="+filepath.Join(tpm.dir, "swtpm.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("swtpmtest: starting swtpm: %v (%s)", err, install)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	tpm.cmd, tpm.done = cmd, done
	for i := 0; ; i++ {
		c, err := net.Dial("unix", tpm.sock)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(tpm.dir, "swtpm.log"))
			t.Fatalf("swtpmtest: swtpm exited: %s", log)
		default:
		}
		if i > 500 {
			t.Fatalf("swtpmtest: swtpm's socket %s did not appear: %v", tpm.sock, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Socket returns the path of the TPM's command socket (raw TPM 2.0
// commands, one client at a time).
func (tpm *TPM) Socket() string { return tpm.sock }

// StateDir returns the directory of the TPM's state.
func (tpm *TPM) StateDir() string { return tpm.dir }

// TCTI returns the tpm2-tools TCTI for this TPM (the -T option, or
// TPM2TOOLS_TCTI).
func (tpm *TPM) TCTI() string { return "swtpm:path=" + tpm.sock }

// Stop kills the TPM (SIGKILL: its state is what it had written, as after
// a power cut).
func (tpm *TPM) Stop() {
	if tpm.cmd == nil {
		return
	}
	tpm.cmd.Process.Kill()
	<-tpm.done
	tpm.cmd = nil
}

// PowerCycle kills the TPM and starts it again on the same state.
func (tpm *TPM) PowerCycle() {
	tpm.t.Helper()
	tpm.Stop()
	tpm.run()
}

// Tool runs a tpm2-tools command (such as "tpm2_nvread") against the TPM
// and returns its standard output; the test fails if it fails.
func (tpm *TPM) Tool(name string, args ...string) []byte {
	tpm.t.Helper()
	out, err := tpm.TryTool(name, args...)
	if err != nil {
		tpm.t.Fatal(err)
	}
	return out
}

// TryTool is Tool returning the error (with the tool's output) instead.
func (tpm *TPM) TryTool(name string, args ...string) ([]byte, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		tpm.t.Fatalf("swtpmtest: %s not found: install tpm2-tools (Debian/Ubuntu: apt-get install tpm2-tools)", name)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+tpm.TCTI())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, errors.New("swtpmtest: " + name + " " + strings.Join(args, " ") + ": " + err.Error() + ": " + stderr.String())
	}
	return out, nil
}
