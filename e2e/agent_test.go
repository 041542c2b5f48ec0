//go:build e2e

// The agent's scenarios (issue 15): upkit-agent in every rootfs, run by the
// init at each boot, updating the device from its USB stick.

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/agent"
	"github.com/upkit/upkit/internal/testutil/swtpmtest"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/oci"
	"github.com/upkit/upkit/spec"
)

// What the releases are for, and where the agent keeps its counter.
const (
	e2eHardware = "upkit-e2e-x86"
	e2eProduct  = "upkit-e2e"
	nvIndex     = "0x01800100"
)

// The trust root's key (root and release roles, threshold 1): a fixed
// test key, so that the overlay, and with it the image cache, stays the
// same from run to run.
func e2eKey() *testkeys.Signer { return testkeys.Ed25519(15) }

// rootExpires is fixed for the same reason.
var rootExpires = time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC)

// agentConfig is /etc/upkit/agent-LOADER.json in every rootfs.
func agentConfig(loader string) map[string]any {
	cfg := map[string]any{
		"hardware": e2eHardware, "product": e2eProduct,
		"state": "/data/upkit/state", "staging": "/data/upkit/staging",
		"trustRoot": "/etc/upkit/root.json", "factoryRelease": "/data/upkit/factory-release.json",
		"lock":     "/run/upkit/agent.lock",
		"slots":    map[string]any{"rootfs": map[string]string{"a": "PARTLABEL=rootfs-a", "b": "PARTLABEL=rootfs-b"}},
		"counters": map[string]any{"type": "tpm", "device": "/dev/tpmrm0", "indices": map[string]string{"rootfs": nvIndex}},
		"source":   map[string]string{"layout": "/mnt/stick"},
		"poll":     map[string]string{"interval": "10m"},
		// The health check exits 0 or 1 by release (e2e/build.sh).
		"healthCheck": map[string]any{"command": []string{"/usr/lib/upkit-e2e/health"}, "timeout": "2m"},
		"reboot":      map[string]any{"command": []string{"/usr/lib/upkit-e2e/reboot"}, "timeout": "1m"},
	}
	if loader == "grub" {
		cfg["bootloader"] = map[string]any{"type": "grub", "component": "rootfs", "grubenv": "/boot/efi/EFI/BOOT/grubenv"}
	} else {
		// U-Boot's variables' file on the ESP (contrib/u-boot, "a file");
		// the root file system is read-only, the lock goes to /run.
		cfg["bootloader"] = map[string]any{"type": "u-boot", "component": "rootfs", "fwEnvConfig": "/etc/fw_env.config",
			"allowEmpty": true, "fwEnvLock": "/run/fw_printenv.lock", "tries": 3}
	}
	return cfg
}

// rootEnvelope is the device's trust root.
func rootEnvelope(ctx context.Context) ([]byte, error) {
	k := e2eKey()
	id, pub := manifest.KeyOf(k.Public())
	env, err := manifest.NewRootEnvelope(&manifest.Root{Version: 1, Expires: rootExpires, Keys: map[string]manifest.Key{id: pub},
		Roles: manifest.Roles{Root: manifest.Role{KeyIDs: []string{id}, Threshold: 1}, Release: manifest.Role{KeyIDs: []string{id}, Threshold: 1}}})
	if err != nil {
		return nil, err
	}
	if err := manifest.Sign(ctx, env, k); err != nil {
		return nil, err
	}
	return env.Marshal()
}

// makeOverlay writes into dir what e2e/build.sh copies into every rootfs:
// upkit-agent (built for linux/amd64), its configurations for GRUB and
// U-Boot, libubootenv's fw_env.config, and the trust root.
func makeOverlay(ctx context.Context, dir string) error {
	bin := filepath.Join(dir, "usr", "bin", "upkit-agent")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/upkit-agent")
	build.Dir = ".."
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building upkit-agent: %v\n%s", err, out)
	}
	etc := filepath.Join(dir, "etc", "upkit")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	root, err := rootEnvelope(ctx)
	if err != nil {
		return err
	}
	files := map[string][]byte{filepath.Join(etc, "root.json"): root,
		filepath.Join(dir, "etc", "fw_env.config"): []byte("/boot/efi/upkit.env 0x0 0x4000\n")}
	for _, loader := range []string{"grub", "uboot"} {
		data, err := json.MarshalIndent(agentConfig(loader), "", "  ")
		if err != nil {
			return err
		}
		if _, err := agent.ParseConfig(data, loader); err != nil {
			return err
		}
		files[filepath.Join(etc, "agent-"+loader+".json")] = append(data, '\n')
	}
	for p, data := range files {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// release is one signed release of the e2e device and its files.
type release struct {
	name    string // 1.0.0, 2.0.0, 2.0.0-full, 3.0.0, 3.0.0-noinit
	version uint64
	env     []byte
	files   []oci.File
}

// kit is the releases of a run, signed once (kitOnce).
type kit struct {
	releases map[string]*release
	err      error
}

var (
	kitOnce sync.Once
	theKit  kit
)

// pkgCreated is the creation time in every package's metadata: fixed, so
// that packing the same image gives the same bytes and the packages can
// stay in the image cache.
var pkgCreated = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// releases packs each rootfs image (once: the packages and the delta stay
// next to the images, in the cache) and signs the releases of this run:
// 1.0.0 (release 1, security version 1), 2.0.0 (release 2, security
// version 2, with a delta from 1.0.0), 2.0.0-full (release 2 without it),
// 3.0.0 and 3.0.0-noinit (release 3, security version 3). They are created
// an hour apart before now and expire in 30 days.
func (s *scenario) releases() map[string]*release {
	s.Helper()
	kitOnce.Do(func() {
		t0 := time.Now()
		theKit.releases, theKit.err = makeReleases(context.Background(), images)
		fmt.Printf("e2e: releases signed (%.0f s)\n", time.Since(t0).Seconds())
	})
	if theKit.err != nil {
		s.Fatalf("making the releases: %v", theKit.err)
	}
	return theKit.releases
}

func makeReleases(ctx context.Context, img *Images) (map[string]*release, error) {
	cache := filepath.Join(img.Dir, "agent-releases")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	k := e2eKey()
	type packed struct {
		pkg, payload manifest.Blob
		path         string
	}
	pack := func(name, version string, sv uint64) (packed, error) {
		src := img.Rootfs(name)
		data, err := os.ReadFile(src)
		if err != nil {
			return packed{}, err
		}
		payload := manifest.Blob{Digest: spec.SHA256(data).String(), Size: int64(len(data))}
		path := filepath.Join(cache, "rootfs-"+name+".upk")
		if pkg, err := os.ReadFile(path); err == nil {
			return packed{pkg: manifest.Blob{Digest: spec.SHA256(pkg).String(), Size: int64(len(pkg))}, payload: payload, path: path}, nil
		}
		var buf bytes.Buffer
		if _, err := imagepkg.Pack(ctx, &buf, bytes.NewReader(data), imagepkg.PackOptions{
			Component: "rootfs", Type: imagepkg.TypeOS, Version: version, SecurityVersion: sv, Hardware: []string{e2eHardware},
			Compression: imagepkg.CompressionZstd, Created: pkgCreated, TempDir: cache,
		}, k); err != nil {
			return packed{}, err
		}
		if err := os.WriteFile(path+".tmp", buf.Bytes(), 0o644); err != nil {
			return packed{}, err
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			return packed{}, err
		}
		return packed{pkg: manifest.Blob{Digest: spec.SHA256(buf.Bytes()).String(), Size: int64(buf.Len())}, payload: payload, path: path}, nil
	}
	p1, err := pack("1.0.0", "1.0.0", 1)
	if err != nil {
		return nil, err
	}
	p2, err := pack("2.0.0", "2.0.0", 2)
	if err != nil {
		return nil, err
	}
	p3, err := pack("3.0.0", "3.0.0", 3)
	if err != nil {
		return nil, err
	}
	p3n, err := pack("3.0.0-noinit", "3.0.0", 3)
	if err != nil {
		return nil, err
	}
	// The delta 1.0.0 -> 2.0.0 (delta.Create holds both images: some
	// 400 MB for a few seconds).
	deltaPath := filepath.Join(cache, "rootfs-1.0.0-2.0.0.delta")
	dl, err := os.ReadFile(deltaPath)
	if err != nil {
		old, err := os.ReadFile(img.Rootfs("1.0.0"))
		if err != nil {
			return nil, err
		}
		new, err := os.ReadFile(img.Rootfs("2.0.0"))
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if _, err := delta.Create(ctx, old, new, &buf, nil); err != nil {
			return nil, err
		}
		dl = buf.Bytes()
		if err := os.WriteFile(deltaPath+".tmp", dl, 0o644); err != nil {
			return nil, err
		}
		if err := os.Rename(deltaPath+".tmp", deltaPath); err != nil {
			return nil, err
		}
	}
	deltaBlob := manifest.Blob{Digest: spec.SHA256(dl).String(), Size: int64(len(dl))}

	now := time.Now().UTC().Truncate(time.Second)
	out := map[string]*release{}
	mk := func(name string, version uint64, imgVersion string, sv uint64, p packed, withDelta bool) error {
		im := manifest.Image{Component: "rootfs", Type: "os", Version: imgVersion, SecurityVersion: sv, Hardware: []string{e2eHardware},
			Package: p.pkg, Payload: p.payload}
		files := []oci.File{{Path: p.path, MediaType: oci.MediaTypePackage, Title: "rootfs-" + name + ".upk", Digest: p.pkg.Digest, Size: p.pkg.Size,
			Annotations: map[string]string{oci.AnnotationComponent: "rootfs"}}}
		if withDelta {
			im.Deltas = []manifest.Delta{{FromPayloadDigest: p1.payload.Digest, Digest: deltaBlob.Digest, Size: deltaBlob.Size}}
			files = append(files, oci.File{Path: deltaPath, MediaType: oci.MediaTypeDelta, Title: "rootfs-1.0.0-2.0.0.delta",
				Digest: deltaBlob.Digest, Size: deltaBlob.Size,
				Annotations: map[string]string{oci.AnnotationComponent: "rootfs", oci.AnnotationDeltaFrom: p1.payload.Digest, oci.AnnotationDeltaTo: p.payload.Digest}})
		}
		env, err := manifest.NewReleaseEnvelope(&manifest.Release{Product: e2eProduct, Version: version,
			Created: now.Add(-time.Duration(10-version) * time.Hour), Expires: now.AddDate(0, 0, 30), Images: []manifest.Image{im}})
		if err != nil {
			return err
		}
		if err := manifest.Sign(ctx, env, k); err != nil {
			return err
		}
		b, err := env.Marshal()
		if err != nil {
			return err
		}
		out[name] = &release{name: name, version: version, env: b, files: files}
		return nil
	}
	for _, r := range []struct {
		name, imgVersion string
		version, sv      uint64
		p                packed
		delta            bool
	}{
		{"1.0.0", "1.0.0", 1, 1, p1, false}, {"2.0.0", "2.0.0", 2, 2, p2, true}, {"2.0.0-full", "2.0.0", 2, 2, p2, false},
		{"3.0.0", "3.0.0", 3, 3, p3, false}, {"3.0.0-noinit", "3.0.0", 3, 3, p3n, false},
	} {
		if err := mk(r.name, r.version, r.imgVersion, r.sv, r.p, r.delta); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// agentDevice makes a device whose slot A holds the factory release (its
// image written into rootfs-a, its signed release into the data partition
// for the agent to adopt on the first boot) and whose USB stick holds an
// OCI image layout with the stick releases, one tag each.
func (s *scenario) agentDevice(fw Firmware, factory string, stick ...string) *Device {
	s.Helper()
	rels := s.releases()
	d := s.newDevice(fw)
	if factory != "1.0.0" {
		s.writeSlot(d, "rootfs-a", factory)
	}
	if err := d.WriteData(s.ctx(), "upkit/factory-release.json", rels[factory].env); err != nil {
		s.Fatalf("writing the factory release: %v", err)
	}
	layout := filepath.Join(s.TempDir(), "stick")
	for _, name := range stick {
		r := rels[name]
		if _, err := oci.Push(s.ctx(), "oci:"+layout+":"+strings.ReplaceAll(name, "+", "-"),
			oci.Release{Envelope: r.env, Product: e2eProduct, Version: r.version, Files: r.files}, nil); err != nil {
			s.Fatalf("the stick: %v", err)
		}
	}
	if len(stick) > 0 {
		if err := d.SetStick(s.ctx(), layout); err != nil {
			s.Fatalf("%v", err)
		}
	}
	return d
}

// expectAgent checks what `upkit-agent boot` did on a boot: its exit
// status and lines of its log (substrings).
func (s *scenario) expectAgent(b Boot, rc int, lines ...string) {
	s.Helper()
	if b.AgentRC != rc {
		s.Fatalf("upkit-agent boot exited %d on %s slot %s, want %d; its log:\n  %s", b.AgentRC, b.Release, b.Slot, rc, strings.Join(b.AgentLog, "\n  "))
	}
	log := strings.Join(b.AgentLog, "\n")
	for _, want := range lines {
		if !strings.Contains(log, want) {
			s.Fatalf("upkit-agent boot on %s slot %s did not log %q; its log:\n  %s", b.Release, b.Slot, want, strings.Join(b.AgentLog, "\n  "))
		}
	}
}

// agentStatus runs `upkit-agent status --json` in the device.
func (s *scenario) agentStatus(m *Machine) *agent.Status {
	s.Helper()
	st, err := s.tryAgentStatus(m)
	if err != nil {
		s.Fatalf("%v", err)
	}
	return st
}

func (s *scenario) tryAgentStatus(m *Machine) (*agent.Status, error) {
	out, rc, err := m.Run(s.ctx(), "upkit-agent status --json")
	if err != nil || rc != 0 {
		return nil, fmt.Errorf("upkit-agent status: exit %d, %v: %s", rc, err, out)
	}
	var st agent.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Device == nil {
		return nil, fmt.Errorf("upkit-agent status: %v: %s", err, out)
	}
	return &st, nil
}

// committed checks the agent's status: release version, rootfs version,
// slot, and the counter the TPM holds.
func (s *scenario) expectCommitted(st *agent.Status, release uint64, version, slot string, counter uint64) {
	s.Helper()
	d := st.Device
	if d.ReleaseVersion != release || len(d.Components) != 1 || d.Components[0].Version != version ||
		d.Components[0].Slot != strings.ToLower(slot) || d.Pending != nil || st.HardwareCounters["rootfs"] != counter {
		s.Fatalf("status: release %d, %+v, pending %+v, TPM counter %d; want release %d, rootfs %s in slot %s, nothing pending, TPM counter %d",
			d.ReleaseVersion, d.Components, d.Pending, st.HardwareCounters["rootfs"], release, version, slot, counter)
	}
}

// tpmCounter reads the agent's counter from the powered-off device's TPM
// state, from outside: swtpm and tpm2_nvread (the raw value is the
// counter plus one).
func (s *scenario) tpmCounter(d *Device) uint64 {
	s.Helper()
	tpm := swtpmtest.StartIn(s.T, d.TPMDir)
	defer tpm.Stop()
	out := tpm.Tool("tpm2_nvread", "-C", "o", "-s", "8", nvIndex)
	if len(out) != 8 {
		s.Fatalf("tpm2_nvread: %x", out)
	}
	var raw uint64
	for _, b := range out {
		raw = raw<<8 | uint64(b)
	}
	return raw - 1
}

// output returns the lines a spawned command printed so far.
func (m *Machine) output(j Job) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, l := range m.lines[j.from:] {
		if l.Marker != nil && l.Marker.Event == "out" && l.Marker.Field("id") == j.ID {
			out = append(out, l.Marker.Text)
		}
	}
	return out
}

// sinceJob returns the console lines since a command was spawned.
func (m *Machine) sinceJob(j Job) []Line {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Line(nil), m.lines[j.from:]...)
}

// installAndReboot runs `upkit-agent install /mnt/stick` in the device,
// which reboots it, and returns the install's lines and the time from the
// command to the agent's reboot.
func (s *scenario) installAndReboot(m *Machine) (Job, time.Duration) {
	s.Helper()
	j, d, err := s.tryInstallAndReboot(m)
	if err != nil {
		s.Fatalf("%v", err)
	}
	return j, d
}

func (s *scenario) tryInstallAndReboot(m *Machine) (Job, time.Duration, error) {
	j, err := m.Spawn("upkit-agent install /mnt/stick")
	if err != nil {
		return j, 0, err
	}
	ctx, cancel := context.WithTimeout(s.ctx(), *flagBootTimeout)
	defer cancel()
	i, err := m.waitLine(ctx, j.from, func(l Line) bool {
		return l.Marker != nil && (l.Marker.Event == "rebooting" || l.Marker.Event == "done" && l.Marker.Field("id") == j.ID)
	})
	if err != nil {
		return j, 0, fmt.Errorf("upkit-agent install did not reboot: %v", err)
	}
	l := m.Lines()[i]
	if l.Marker.Event == "done" {
		return j, 0, fmt.Errorf("upkit-agent install exited %s without rebooting: %s", l.Marker.Field("rc"), strings.Join(m.output(j), " | "))
	}
	return j, l.At - j.At, nil
}

func hasLine(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// updateDelta is scenario 1 on fw: release 1.0.0 boots from slot A (the
// agent adopts it: TPM counter 1); the agent installs 2.0.0 from the stick
// by delta and reboots; the bootloader boots slot B; the health check
// passes; the agent commits: 2.0.0 in B, TPM counter 2 (read in the device
// by the agent, and from outside with tpm2_nvread).
func updateDelta(t *testing.T, name string, fw Firmware) {
	s := begin(t, name)
	loader := fw.String()
	d := s.agentDevice(fw, "1.0.0", "1.0.0", "2.0.0")
	m := s.start(d)
	b1 := s.waitBoot(m)
	s.expectBoot(b1, loader, "A", "1.0.0")
	s.expectAgent(b1, 0, "adopt: the factory release upkit-e2e version 1 is committed")
	s.expectCommitted(s.agentStatus(m), 1, "1.0.0", "A", 1)

	j, installTime := s.installAndReboot(m)
	out := m.output(j)
	if !hasLine(out, "by delta") || !hasLine(out, "installed: rootfs 2.0.0 into slot B: delta") || !hasLine(out, "activate: slot B boots next") {
		s.Fatalf("the install did not go by delta into slot B:\n  %s", strings.Join(out, "\n  "))
	}
	b2 := s.waitBoot(m)
	s.expectBoot(b2, loader, "B", "2.0.0")
	s.expectAgent(b2, 0, "boot: booted slot B (trial-booted)", "health: passed", "commit: release upkit-e2e version 2 committed", "TPM counters: rootfs=2")
	s.expectCommitted(s.agentStatus(m), 2, "2.0.0", "B", 2)
	// The power goes right after the commit: what the agent wrote (the
	// bootloader's variables on the FAT ESP, the state, the TPM) is there.
	m.Cut()
	if c := s.tpmCounter(d); c != 2 {
		s.Fatalf("the TPM holds counter %d after the commit, want 2", c)
	}
	if fw == GRUB {
		s.expectVars("grubenv after the update", s.grubenv(d), "ORDER=B A", "B_OK=1", "B_TRY=0", "upkit_active=rootfs=B")
	} else {
		s.expectVars("U-Boot's variables after the update", s.ubootEnv(d), "BOOT_ORDER=B A", "BOOT_B_LEFT=3", "upkit_active=rootfs=B")
	}
	m = s.start(d)
	b3 := s.waitBoot(m)
	s.expectBoot(b3, loader, "B", "2.0.0")
	s.expectAgent(b3, 0, "boot: booted slot B (normal)")
	s.powerOff(m)
	s.note("install %.1f s; boots: first %s; update %s", installTime.Seconds(), b1.Timings(), b2.Timings())
}

// TestAgentUpdateDelta is scenario 1 with GRUB.
func TestAgentUpdateDelta(t *testing.T) { updateDelta(t, "update-delta", GRUB) }

// TestAgentUBootUpdateDelta is scenario 1 with U-Boot (scenario 5).
func TestAgentUBootUpdateDelta(t *testing.T) { updateDelta(t, "uboot-update-delta", UBoot) }

// failedUpdate is scenario 2 on fw: the device runs 2.0.0 in slot A
// (adopted: counter 2); the agent installs 3.0.0 into B and reboots; 3.0.0
// fails its health check on every try (the agent reboots without marking
// it good; GRUB gives one try, U-Boot three) or, with noinit, its kernel
// panics before the agent runs; the bootloader falls back to A; the agent
// sees the fallback and rolls back: 2.0.0 committed, TPM counter still 2,
// slot B marked bad.
func failedUpdate(t *testing.T, name string, fw Firmware, noinit bool) {
	s := begin(t, name)
	loader := fw.String()
	bad := "3.0.0"
	if noinit {
		bad = "3.0.0-noinit"
	}
	d := s.agentDevice(fw, "2.0.0", bad)
	m := s.start(d)
	b1 := s.waitBoot(m)
	s.expectBoot(b1, loader, "A", "2.0.0")
	s.expectAgent(b1, 0, "adopt: the factory release upkit-e2e version 2 is committed")
	s.expectCommitted(s.agentStatus(m), 2, "2.0.0", "A", 2)

	j, _ := s.installAndReboot(m)
	b2 := s.waitBoot(m)
	s.expectBoot(b2, loader, "A", "2.0.0")
	s.expectAgent(b2, 7, "boot: booted slot A (fell-back)", "rollback: the bootloader fell back to the committed slot")
	tries := map[Firmware]int{GRUB: 1, UBoot: 3}[fw]
	// What happened between the install and this boot, from the console.
	trials, unhealthy := 0, 0
	for _, l := range m.sinceJob(j) {
		if l.Marker != nil && (l.Marker.Event == "boot" || l.Marker.Event == "init-crash") && l.Marker.Field("release") == "3.0.0" {
			trials++
		}
		if strings.HasPrefix(l.Text, AgentPrefix+"health: /usr/lib/upkit-e2e/health: exit status 1") {
			unhealthy++
		}
	}
	wantUnhealthy := tries
	if noinit {
		wantUnhealthy = 0
	}
	if trials != tries || unhealthy != wantUnhealthy {
		s.Fatalf("release 3.0.0 booted %d times (%d failed health checks); want %d (%d)", trials, unhealthy, tries, wantUnhealthy)
	}
	s.expectCommitted(s.agentStatus(m), 2, "2.0.0", "A", 2)
	b3 := s.reboot(m)
	s.expectBoot(b3, loader, "A", "2.0.0")
	s.expectAgent(b3, 0, "boot: booted slot A (normal)")
	s.powerOff(m)
	if c := s.tpmCounter(d); c != 2 {
		s.Fatalf("the TPM holds counter %d after the rollback, want 2 (unchanged)", c)
	}
	if fw == GRUB {
		s.expectVars("grubenv after the rollback", s.grubenv(d), "ORDER=A B", "A_OK=1", "B_OK=0", "upkit_active=rootfs=A")
	} else {
		s.expectVars("U-Boot's variables after the rollback", s.ubootEnv(d), "BOOT_ORDER=A", "BOOT_B_LEFT=0", "upkit_active=rootfs=A")
	}
	s.note("%d %s of 3.0.0, fallback boot %s", trials, map[bool]string{true: "try", false: "tries"}[trials == 1], b2.Timings())
}

// TestAgentFailedUpdate is scenario 2 with GRUB: 3.0.0's health check fails.
func TestAgentFailedUpdate(t *testing.T) { failedUpdate(t, "failed-update", GRUB, false) }

// TestAgentFailedUpdateNoInit is scenario 2 with GRUB: 3.0.0's init never
// comes up.
func TestAgentFailedUpdateNoInit(t *testing.T) { failedUpdate(t, "failed-update-noinit", GRUB, true) }

// TestAgentUBootFailedUpdate is scenario 2 with U-Boot (scenario 5).
func TestAgentUBootFailedUpdate(t *testing.T) { failedUpdate(t, "uboot-failed-update", UBoot, false) }

// TestAgentUBootFailedUpdateNoInit is scenario 2's variant with U-Boot.
func TestAgentUBootFailedUpdateNoInit(t *testing.T) {
	failedUpdate(t, "uboot-failed-update-noinit", UBoot, true)
}

// TestAgentRollbackRefused is scenario 3: the device runs 2.0.0; a validly
// signed 1.0.0 on the stick is refused (exit status 4, naming the
// rollback); nothing reboots, 2.0.0 stays committed with its counter.
func TestAgentRollbackRefused(t *testing.T) {
	s := begin(t, "rollback-refused")
	d := s.agentDevice(GRUB, "2.0.0", "1.0.0")
	m := s.start(d)
	b := s.waitBoot(m)
	s.expectBoot(b, "grub", "A", "2.0.0")
	s.expectAgent(b, 0)
	for i := 0; i < 2; i++ {
		out, rc, err := m.Run(s.ctx(), "upkit-agent install /mnt/stick")
		if err != nil || rc != 4 || !strings.Contains(out, "release version rollback") {
			s.Fatalf("install of 1.0.0 on 2.0.0: exit %d, %v:\n%s", rc, err, out)
		}
	}
	if lines := m.Lines(); func() bool {
		for _, l := range lines {
			if l.Marker != nil && l.Marker.Event == "rebooting" {
				return true
			}
		}
		return false
	}() {
		s.Fatalf("the device rebooted")
	}
	s.expectCommitted(s.agentStatus(m), 2, "2.0.0", "A", 2)
	s.powerOff(m)
	if c := s.tpmCounter(d); c != 2 {
		s.Fatalf("TPM counter %d", c)
	}
	s.expectVars("grubenv", s.grubenv(d), "ORDER=A B", "A_OK=1", "B_OK=0")
}

// lastAgentStep returns the step of the last agent line among lines.
func lastAgentStep(lines []Line) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if st := agentStep(lines[i]); st != "" {
			return st
		}
	}
	return ""
}

// The phases of an update that TestAgentPowerCuts cuts in (AgentPhase).
var cutPhases = []string{"download", "slot-write", "activation", "reboot", "commit"}

// phaseWindows returns, for an update timed from its install command,
// when each phase of cutPhases began and ended (the next one began).
func phaseWindows(lines []Line, from time.Duration) map[string][2]time.Duration {
	starts := map[string]time.Duration{}
	var order []string
	for i := range lines {
		p := agentPhaseOf(lines[:i+1])
		if _, seen := starts[p]; !seen {
			starts[p] = lines[i].At - from
			order = append(order, p)
		}
	}
	w := map[string][2]time.Duration{}
	for i, p := range order {
		end := starts[p] + time.Second
		if i+1 < len(order) {
			end = starts[order[i+1]]
		}
		w[p] = [2]time.Duration{starts[p], end}
	}
	return w
}

var fetchedRE = regexp.MustCompile(`fetched (\d+) of (\d+) bytes \(resumed at (\d+);`)

// TestAgentPowerCuts is scenario 4: the QEMU process is killed (SIGKILL) at
// a moment of an update of 1.0.0 to 2.0.0 (full package), in one of its
// phases in turn: download, slot write, activation, reboot, commit. A
// first update without a cut times the phases; each cut falls at a random
// moment (from the seed) of its phase. After the cut the device is
// started again: it must boot its committed release, or the update when
// the update was already activated; the TPM counter must be at or above
// the committed security version and at most 2 (the newest installed);
// then the agent completes the update (installing again if it was rolled
// back or never activated): 2.0.0 committed in slot B, TPM counter 2.
// COMPLETED: the update finished without downloading it again; RETRIED:
// it was downloaded again from its first byte.
func TestAgentPowerCuts(t *testing.T) {
	s := begin(t, "agent-power-cuts")
	n := *flagCuts
	rng := rand.New(rand.NewPCG(seed, 4))

	// The update without a cut: the phases' moments.
	d := s.agentDevice(GRUB, "1.0.0", "2.0.0-full")
	m := s.start(d)
	first := s.waitBoot(m)
	s.expectBoot(first, "grub", "A", "1.0.0")
	j, _ := s.installAndReboot(m)
	b := s.waitBoot(m)
	s.expectBoot(b, "grub", "B", "2.0.0")
	s.expectAgent(b, 0, "commit: release upkit-e2e version 2 committed")
	win := phaseWindows(m.sinceJob(j), j.At)
	m.Cut()
	var spans []string
	for _, p := range cutPhases {
		w, ok := win[p]
		if !ok {
			s.Fatalf("the update showed no %s phase (phases %v)", p, win)
		}
		spans = append(spans, fmt.Sprintf("%s %.1f-%.1f s", p, w[0].Seconds(), w[1].Seconds()))
	}
	s.Logf("an update without a cut, from the install command: %s; seed %d", strings.Join(spans, ", "), seed)

	bad, completed, retried := 0, 0, 0
	during := map[string]int{}
	offset := int(rng.Int64N(int64(len(cutPhases))))
	for k := 1; k <= n; k++ {
		target := cutPhases[(k-1+offset)%len(cutPhases)]
		w := win[target]
		// The cut waits for its phase to begin on the console, then for a
		// random part of how long that phase lasted in the first update.
		// Activation is one file write, logged once done: its cut waits for
		// the install's last line before it ("installed:") and falls within
		// 300 ms of it, before or after the write.
		delay := time.Duration(rng.Int64N(int64(max(w[1]-w[0], time.Millisecond))))
		if target == "activation" {
			delay = time.Duration(rng.Int64N(int64(300 * time.Millisecond)))
		}
		outcome, why, phase, booted, at := s.cutOnce(k, target, delay)
		during[phase]++
		switch outcome {
		case "COMPLETED":
			completed++
		case "RETRIED":
			retried++
		default:
			bad++
			s.Errorf("cut %d at +%d ms during %s: %s", k, at.Milliseconds(), phase, why)
		}
		fmt.Printf("e2e: cut %d/%d at +%d ms during %s: booted %s, then %s\n", k, n, at.Milliseconds(), phase, booted, outcome)
	}
	var seen []string
	for _, p := range append([]string{"firmware", "grub", "kernel", "init", "running"}, append(cutPhases, "done")...) {
		if during[p] > 0 {
			seen = append(seen, fmt.Sprintf("%s %d", p, during[p]))
		}
	}
	s.note("%d cuts, %d failed, %d completed, %d retried, seed %d; during %s; uncut update: %s",
		n, bad, completed, retried, seed, strings.Join(seen, ", "), strings.Join(spans, ", "))
}

// cutOnce runs one cut of TestAgentPowerCuts on a fresh device: the update
// is cut delay after the console shows the target phase (for activation,
// after the install's "installed:" line). It returns the outcome
// (COMPLETED, RETRIED or FAIL), why it failed, the phase the cut fell in,
// what the device booted after it ("RELEASE slot X") and when the cut fell,
// from the install command.
func (s *scenario) cutOnce(k int, target string, delay time.Duration) (outcome, why, phase, booted string, at time.Duration) {
	s.Helper()
	fail := func(format string, args ...any) (string, string, string, string, time.Duration) {
		return "FAIL", fmt.Sprintf(format, args...), phase, booted, at
	}
	d := s.agentDevice(GRUB, "1.0.0", "2.0.0-full")
	m, err := d.Start(s.ctx())
	if err != nil {
		return fail("starting: %v", err)
	}
	defer m.Stop()
	ctx, cancel := context.WithTimeout(s.ctx(), *flagBootTimeout)
	b, err := m.WaitBoot(ctx)
	cancel()
	if err != nil || b.Slot != "A" || b.AgentRC != 0 {
		return fail("the device did not come up on 1.0.0 before the cut: %v, slot %s, agent %d; console:%s", err, b.Slot, b.AgentRC, m.Tail(50))
	}
	j, err := m.Spawn("upkit-agent install /mnt/stick")
	if err != nil {
		return fail("%v", err)
	}
	order := map[string]int{}
	for i, p := range append(cutPhases, "done") {
		order[p] = i + 1
	}
	// The phase of the update: from the lines since the install command (the
	// first boot's agent reported before it).
	phaseNow := func() string { return agentPhaseOf(m.sinceJob(j)) }
	for deadline := time.Now().Add(*flagBootTimeout); ; time.Sleep(10 * time.Millisecond) {
		p := phaseNow()
		if target == "activation" {
			if order[p] > order["slot-write"] || p == "slot-write" && lastAgentStep(m.sinceJob(j)) == "installed" {
				break
			}
		} else if order[p] >= order[target] {
			break
		}
		if time.Now().After(deadline) || m.Exited() {
			return fail("the update did not reach %s (phase %s)", target, p)
		}
	}
	time.Sleep(delay)
	at = m.Elapsed() - j.At
	phase = phaseNow()
	m.Cut()

	// Power on again: the committed release boots, or the update if it
	// was activated.
	m, err = d.Start(s.ctx())
	if err != nil {
		return fail("restarting: %v", err)
	}
	defer m.Stop()
	ctx, cancel = context.WithTimeout(s.ctx(), *flagBootTimeout)
	b, err = m.WaitBoot(ctx)
	cancel()
	if err != nil {
		return fail("the device did not boot after the cut: %v", err)
	}
	booted = b.Release + " slot " + b.Slot
	release := map[string]string{"A": "1.0.0", "B": "2.0.0"}
	if b.Release != release[b.Slot] || b.Problems != "" {
		return fail("booted %s (problems %q); console:%s", booted, b.Problems, m.Tail(50))
	}
	st, err := s.tryAgentStatus(m)
	if err != nil {
		return fail("%v", err)
	}
	dev := st.Device
	hw := st.HardwareCounters["rootfs"]
	if len(dev.Components) != 1 {
		return fail("nothing committed after the cut: %+v", dev)
	}
	committed := dev.Components[0]
	if hw < committed.SecurityVersion || hw > 2 {
		return fail("TPM counter %d with %s committed (security version %d); the newest installed is 2", hw, committed.Version, committed.SecurityVersion)
	}
	switch {
	case b.AgentRC == 0 && strings.EqualFold(committed.Slot, b.Slot):
		// The committed release booted (1.0.0, or 2.0.0 committed on this
		// boot or before the cut).
	case b.AgentRC == 7 && b.Slot == "A" && committed.Version == "1.0.0":
		// The update was pending, not activated or its try spent: rolled
		// back to the committed 1.0.0.
	default:
		return fail("booted %s, agent exit %d, committed %s in slot %s (log: %s)", booted, b.AgentRC, committed.Version, committed.Slot, strings.Join(b.AgentLog, " | "))
	}
	outcome = "COMPLETED"
	if b.AgentRC == 7 {
		outcome = "RETRIED"
	}
	if committed.Version != "2.0.0" {
		// The next agent run completes the update.
		j, _, err := s.tryInstallAndReboot(m)
		if err != nil {
			return fail("the next install: %v", err)
		}
		for _, line := range m.output(j) {
			if f := fetchedRE.FindStringSubmatch(line); f != nil && f[1] == f[2] && f[3] == "0" && f[1] != "0" {
				outcome = "RETRIED"
			}
		}
		ctx, cancel = context.WithTimeout(s.ctx(), *flagBootTimeout)
		b, err = m.WaitBoot(ctx)
		cancel()
		if err != nil || b.Slot != "B" || b.Release != "2.0.0" || b.AgentRC != 0 {
			return fail("the update did not complete after the cut: %v, booted %s slot %s, agent %d", err, b.Release, b.Slot, b.AgentRC)
		}
	}
	if st, err = s.tryAgentStatus(m); err != nil {
		return fail("%v", err)
	}
	if st.Device.ReleaseVersion != 2 || st.Device.Components[0].Slot != "b" || st.Device.Pending != nil || st.HardwareCounters["rootfs"] != 2 {
		return fail("after the update: release %d, %+v, TPM counter %d", st.Device.ReleaseVersion, st.Device.Components, st.HardwareCounters["rootfs"])
	}
	m.Cut()
	if c := s.tpmCounter(d); c != 2 {
		return fail("the TPM holds %d after the update (tpm2_nvread)", c)
	}
	return outcome, "", phase, booted, at
}
