package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/upkit/upkit/internal/agent"
	"github.com/upkit/upkit/internal/testutil/releasetest"
)

// rig is a device for the command: GRUB's environment (grub-editenv),
// slot files with release 1 in slot A, file counters, a stick.
type rig struct {
	t      *testing.T
	dir    string
	config string
	srv    *releasetest.Server
}

func newDevice(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	d := &rig{t: t, dir: dir, srv: releasetest.NewAt(t, time.Now().Truncate(time.Second))}
	v1 := bytes.Repeat([]byte("release 1 "), 5000)
	rel1 := d.srv.Release(1, releasetest.Image{Component: "rootfs", Version: "1.0.0", SecurityVersion: 1, Payload: v1})
	d.write("rootfs-a", append(v1, make([]byte, 64<<10)...))
	d.write("rootfs-b", make([]byte, 128<<10))
	d.write("root.json", d.srv.Root())
	d.write("factory.json", rel1)
	d.write("cmdline", []byte("upkit.slot=A\n"))
	d.write("reboot.sh", []byte("#!/bin/sh\necho reboot >>"+filepath.Join(dir, "reboots")+"\n"))
	grubenv := filepath.Join(dir, "grubenv")
	for _, args := range [][]string{{grubenv, "create"}, {grubenv, "set", "ORDER=A B", "A_OK=1", "A_TRY=0"}} {
		if out, err := exec.Command("grub-editenv", args...).CombinedOutput(); err != nil {
			t.Fatalf("grub-editenv (apt-get install grub-common): %v %s", err, out)
		}
	}
	cfg := map[string]any{
		"hardware": releasetest.Hardware, "state": filepath.Join(dir, "state"), "staging": filepath.Join(dir, "staging"),
		"trustRoot": filepath.Join(dir, "root.json"), "factoryRelease": filepath.Join(dir, "factory.json"),
		"bootloader": map[string]any{"type": "grub", "component": "rootfs", "grubenv": grubenv, "cmdline": filepath.Join(dir, "cmdline")},
		"slots":      map[string]any{"rootfs": map[string]string{"a": filepath.Join(dir, "rootfs-a"), "b": filepath.Join(dir, "rootfs-b")}},
		"counters":   map[string]string{"type": "file"},
		"source":     map[string]string{"layout": filepath.Join(dir, "no-stick")},
		"poll":       map[string]string{"interval": "1h"},
		"reboot":     map[string]any{"command": []string{"/bin/sh", filepath.Join(dir, "reboot.sh")}},
	}
	data, _ := json.Marshal(cfg)
	d.config = filepath.Join(dir, "agent.json")
	d.write("agent.json", data)
	return d
}

func (d *rig) write(name string, data []byte) {
	d.t.Helper()
	if err := os.WriteFile(filepath.Join(d.dir, name), data, 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// run runs the command in-process and returns its exit code, standard
// output and standard error.
func (d *rig) run(args ...string) (int, string, string) {
	d.t.Helper()
	var out, errw bytes.Buffer
	code := run(context.Background(), append([]string{"--config", d.config}, args...), &out, &errw)
	return code, out.String(), errw.String()
}

func (d *rig) stick(version uint64, payload []byte) string {
	d.t.Helper()
	dir := filepath.Join(d.t.TempDir(), "stick")
	rel := d.srv.Release(version, releasetest.Image{Component: "rootfs", Version: fmt.Sprintf("%d.0.0", version), SecurityVersion: version, Payload: payload})
	d.srv.Publish("oci:"+dir+":latest", rel)
	return dir
}

// TestExitCodes: every documented exit code, from the command line.
func TestExitCodes(t *testing.T) {
	d := newDevice(t)
	if code, _, stderr := d.run("status", "--bogus"); code != exitUsage || !strings.Contains(stderr, "bogus") {
		t.Fatalf("unknown flag: %d %s", code, stderr)
	}
	if code, _, _ := d.run("frobnicate"); code != exitUsage {
		t.Fatalf("unknown command: %d", code)
	}
	if code, _, _ := d.run("install"); code != exitUsage {
		t.Fatalf("install without SOURCE: %d", code)
	}
	if code, _, _ := d.run("run", "--json"); code != exitUsage {
		t.Fatalf("a flag of another command: %d", code)
	}
	var errw bytes.Buffer
	if code := run(context.Background(), []string{"--config", filepath.Join(d.dir, "missing.json"), "status"}, &bytes.Buffer{}, &errw); code != exitUsage || !strings.Contains(errw.String(), "missing.json") {
		t.Fatalf("missing configuration: %d %s", code, errw.String())
	}
	if code, out, _ := d.run("--help"); code != exitOK || !strings.Contains(out, "Exit codes") {
		t.Fatalf("--help: %d", code)
	}

	code, out, _ := d.run("status", "--json")
	var st agent.Status
	if code != exitOK || json.Unmarshal([]byte(out), &st) != nil || st.Provisioned || st.Booted != "a" {
		t.Fatalf("status before the first boot: %d %s", code, out)
	}
	if code, _, stderr := d.run("boot"); code != exitOK || !strings.Contains(stderr, "adopt: the factory release") {
		t.Fatalf("first boot: %d %s", code, stderr)
	}
	if code, out, _ := d.run("status"); code != exitOK || !strings.Contains(out, "rootfs 1.0.0: slot A") {
		t.Fatalf("status: %d %s", code, out)
	}
	// No stick in the configured folder, then an empty one.
	if code, _, _ := d.run("run-once-is-not-a-command"); code != exitUsage {
		t.Fatal(code)
	}
	if code, _, stderr := d.run("install", filepath.Join(d.dir, "no-stick")); code != exitNoSource {
		t.Fatalf("install from a missing folder: %d %s", code, stderr)
	}
	v1 := bytes.Repeat([]byte("release 1 "), 5000)
	if code, _, stderr := d.run("install", d.stick(1, v1)); code != exitNothing {
		t.Fatalf("install of the committed release: %d %s", code, stderr)
	}
	v2 := bytes.Repeat([]byte("release 2 "), 5000)
	stick2 := d.stick(2, v2)
	unlock := lockHeld(t, d)
	if code, _, stderr := d.run("install", stick2); code != exitLocked || !strings.Contains(stderr, "another upkit-agent") {
		t.Fatalf("install while another agent runs: %d %s", code, stderr)
	}
	unlock()
	code, out, stderr := d.run("install", "--no-reboot", "--json", stick2)
	var res agent.InstallResult
	if code != exitOK || json.Unmarshal([]byte(out), &res) != nil || res.ReleaseVersion != 2 || res.Tried != "b" || res.Rebooting {
		t.Fatalf("install --no-reboot: %d %s %s", code, out, stderr)
	}
	if _, err := os.Stat(filepath.Join(d.dir, "reboots")); err == nil {
		t.Fatal("--no-reboot rebooted")
	}
	if code, _, stderr := d.run("install", d.stick(1, v1)); code != exitRefused || !strings.Contains(stderr, "release refused") {
		t.Fatalf("install of release 1 after 2: %d %s", code, stderr)
	}
	// The bootloader fell back (slot A booted while 2 is pending in B):
	// rolled back.
	if code, _, stderr := d.run("boot"); code != exitRolledBack {
		t.Fatalf("boot after a fallback: %d %s", code, stderr)
	}
}

// lockHeld takes the agent's lock as another agent would.
func lockHeld(t *testing.T, d *rig) func() {
	t.Helper()
	cfg, err := agent.ReadConfig(d.config)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.NewLogger(&bytes.Buffer{}, false))
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := a.Lock()
	if err != nil {
		t.Fatal(err)
	}
	return unlock
}

// TestSIGTERM: `upkit-agent run`, waiting for its next check, stops at
// once on SIGTERM with exit status 0; under systemd (JOURNAL_STREAM set)
// its lines carry syslog levels.
func TestSIGTERM(t *testing.T) {
	d := newDevice(t)
	bin := filepath.Join(t.TempDir(), "upkit-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--config", d.config, "run")
	cmd.Env = append(os.Environ(), "JOURNAL_STREAM=8:1234")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(stderr.String(), "wait: next check") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("run did not reach its wait:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if err != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("after SIGTERM: %v after %s\n%s", err, time.Since(start), stderr.String())
	}
	for _, want := range []string{"<6>provision: the device starts", "<6>stop: stopping"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, stderr.String())
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
