package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upkit/upkit/internal/testutil/releasetest"
	"github.com/upkit/upkit/internal/testutil/swtpmtest"
)

// tool returns the path of a real tool; the test fails (never skips) when
// it is missing.
func tool(t *testing.T, name string) string {
	t.Helper()
	pkgs := map[string]string{
		"grub-editenv": "grub-common", "fw_printenv": "libubootenv-tool", "fw_setenv": "libubootenv-tool",
		"mkenvimage": "u-boot-tools",
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install it (Debian/Ubuntu: apt-get install %s)", name, pkgs[name])
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(tool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func parseListing(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// Payloads of the test releases: v1 is what the factory flashed into
// slot A; v2 a small change of it (a delta from v1 is listed); v3 another.
var (
	payloadV1 = bytes.Repeat([]byte("rootfs release 1 "), 6000)
	payloadV2 = append(bytes.Repeat([]byte("rootfs release 1 "), 5000), bytes.Repeat([]byte("rootfs release 2 "), 1000)...)
	payloadV3 = bytes.Repeat([]byte("rootfs release 3 "), 6000)
)

// slotSize is the size of each (file) slot.
const slotSize = 256 << 10

// rig is a device for the agent: slot files, a bootloader environment
// read and written by the real tools (grub-editenv, or fw_printenv and
// fw_setenv), a kernel command line the simulated bootloader writes,
// a health check and a reboot command that are shell scripts, a release
// server, and the agent's configuration.
type rig struct {
	t       *testing.T
	kind    string // grub or u-boot
	dir     string
	srv     *releasetest.Server
	cfg     *Config
	cfgPath string
	slotA   string
	slotB   string
	cmdline string
	env     string // the grubenv, or U-Boot's variables' file
	envCfg  string // fw_env.config
	health  string // its content is the health check's exit status
	reboots string // the reboot command appends a line per reboot
	tpm     *swtpmtest.TPM
	logMu   sync.Mutex
	logs    bytes.Buffer
	// rel1, rel2, rel3 are the releases' envelopes.
	rel1, rel2, rel3 []byte
}

type rigOption func(*rig)

// withTPM keeps the counters in a TPM (swtpm).
func withTPM() rigOption { return func(r *rig) { r.tpm = swtpmtest.Start(r.t) } }

func newRig(t *testing.T, kind string, opts ...rigOption) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{t: t, kind: kind, dir: dir, srv: releasetest.New(t), cmdline: filepath.Join(dir, "cmdline"),
		slotA: filepath.Join(dir, "rootfs-a"), slotB: filepath.Join(dir, "rootfs-b"),
		health: filepath.Join(dir, "health-status"), reboots: filepath.Join(dir, "reboots")}
	for _, o := range opts {
		o(r)
	}
	// The factory: release 1 in slot A, slot B empty, the bootloader on A.
	r.rel1 = r.srv.Release(1, releasetest.Image{Component: "rootfs", Version: "1.0.0", SecurityVersion: 1, Payload: payloadV1})
	r.rel2 = r.srv.Release(2, releasetest.Image{Component: "rootfs", Version: "2.0.0", SecurityVersion: 2, Payload: payloadV2, DeltaFrom: [][]byte{payloadV1}})
	r.rel3 = r.srv.Release(3, releasetest.Image{Component: "rootfs", Version: "3.0.0", SecurityVersion: 2, Payload: payloadV3})
	r.writeFile(r.slotA, append(bytes.Clone(payloadV1), make([]byte, slotSize-len(payloadV1))...))
	r.writeFile(r.slotB, make([]byte, slotSize))
	r.writeFile(filepath.Join(dir, "root.json"), r.srv.Root())
	r.writeFile(filepath.Join(dir, "factory-release.json"), r.rel1)
	r.writeFile(r.health, []byte("0"))
	r.script("health.sh", fmt.Sprintf("echo \"checking slot $UPKIT_SLOT\"\nexit $(cat %s)\n", r.health))
	r.script("reboot.sh", fmt.Sprintf("echo rebooting\necho reboot >>%s\n", r.reboots))
	r.setCmdline("A")

	cfg := map[string]any{
		"hardware": releasetest.Hardware, "product": releasetest.Product,
		"state": filepath.Join(dir, "data", "state"), "staging": filepath.Join(dir, "data", "staging"),
		"trustRoot": filepath.Join(dir, "root.json"), "factoryRelease": filepath.Join(dir, "factory-release.json"),
		"slots":       map[string]any{"rootfs": map[string]string{"a": r.slotA, "b": r.slotB}},
		"counters":    map[string]any{"type": "file"},
		"poll":        map[string]string{"interval": "50ms", "jitter": "10ms", "retryMin": "10ms", "retryMax": "40ms"},
		"healthCheck": map[string]any{"command": []string{"/bin/sh", filepath.Join(dir, "health.sh")}, "timeout": "30s"},
		"reboot":      map[string]any{"command": []string{"/bin/sh", filepath.Join(dir, "reboot.sh")}},
	}
	if r.tpm != nil {
		cfg["counters"] = map[string]any{"type": "tpm", "device": r.tpm.Socket(), "indices": map[string]string{"rootfs": "0x01800100"}}
	}
	switch kind {
	case "grub":
		r.env = filepath.Join(dir, "grubenv")
		run(t, "grub-editenv", r.env, "create")
		run(t, "grub-editenv", r.env, "set", "ORDER=A B", "A_OK=1", "A_TRY=0", "B_OK=0", "B_TRY=0")
		cfg["bootloader"] = map[string]any{"type": "grub", "component": "rootfs", "grubenv": r.env, "cmdline": r.cmdline}
	case "u-boot":
		// A variables' file the boot script merges (contrib/u-boot), as
		// the e2e device keeps it.
		r.env = filepath.Join(dir, "upkit.env")
		r.envCfg = filepath.Join(dir, "fw_env.config")
		r.writeFile(r.envCfg, []byte(r.env+" 0x0 0x4000\n"))
		txt := filepath.Join(dir, "upkit.env.txt")
		r.writeFile(txt, []byte("BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=0\n"))
		run(t, "mkenvimage", "-s", "0x4000", "-o", r.env, txt)
		cfg["bootloader"] = map[string]any{"type": "u-boot", "component": "rootfs", "fwEnvConfig": r.envCfg, "allowEmpty": true,
			"tries": 3, "cmdline": r.cmdline, "fwEnvLock": filepath.Join(dir, "fw_printenv.lock")}
	default:
		t.Fatalf("bootloader %q", kind)
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	r.cfgPath = filepath.Join(dir, "agent.json")
	r.writeFile(r.cfgPath, data)
	if r.cfg, err = ReadConfig(r.cfgPath); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) writeFile(path string, data []byte) {
	r.t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) script(name, body string) {
	r.t.Helper()
	r.writeFile(filepath.Join(r.dir, name), []byte("#!/bin/sh\n"+body))
}

func (r *rig) setCmdline(bootname string) {
	r.t.Helper()
	r.writeFile(r.cmdline, []byte("console=ttyS0 root=PARTLABEL=rootfs-"+strings.ToLower(bootname)+" upkit.slot="+bootname+"\n"))
}

func (r *rig) setHealthy(ok bool) {
	r.t.Helper()
	status := "1"
	if ok {
		status = "0"
	}
	r.writeFile(r.health, []byte(status))
}

// agent returns a new Agent over the rig, as a new process would be (so a
// test "restarts" the agent by calling it again).
func (r *rig) agent() *Agent {
	r.t.Helper()
	a, err := New(r.cfg, NewLogger(&lockedWriter{r}, false))
	if err != nil {
		r.t.Fatal(err)
	}
	a.Now = func() time.Time { return releasetest.Now }
	return a
}

type lockedWriter struct{ r *rig }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.r.logMu.Lock()
	defer w.r.logMu.Unlock()
	return w.r.logs.Write(p)
}

// log returns what the agents logged so far.
func (r *rig) log() string {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	return r.logs.String()
}

// reboots returns how many times the reboot command ran.
func (r *rig) rebootCount() int {
	data, err := os.ReadFile(r.reboots)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return strings.Count(string(data), "reboot\n")
}

// vars reads the bootloader's variables with the real tool.
func (r *rig) vars() map[string]string {
	r.t.Helper()
	if r.kind == "grub" {
		return parseListing(run(r.t, "grub-editenv", r.env, "list"))
	}
	return parseListing(run(r.t, "fw_printenv", "-c", r.envCfg))
}

// setVars writes the bootloader's variables with the real tool, as the
// bootloader's save_env or saveenv would.
func (r *rig) setVars(vars map[string]string) {
	r.t.Helper()
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if r.kind == "grub" {
		args := []string{r.env, "set"}
		for _, k := range keys {
			args = append(args, k+"="+vars[k])
		}
		run(r.t, "grub-editenv", args...)
		return
	}
	var sb strings.Builder
	for _, k := range keys {
		sb.WriteString(k + "=" + vars[k] + "\n")
	}
	script := filepath.Join(r.dir, "fw_setenv.txt")
	r.writeFile(script, []byte(sb.String()))
	run(r.t, "fw_setenv", "-c", r.envCfg, "-s", script)
}

// boot does what contrib/grub/grub.cfg or contrib/u-boot/boot.cmd does at
// power on: choose the slot from the variables, spend its attempt, save
// the variables, and start the kernel with upkit.slot=X. It returns the
// slot booted. (The real scripts boot in the QEMU device of e2e/.)
func (r *rig) boot() string {
	r.t.Helper()
	v := r.vars()
	var slot string
	if r.kind == "grub" {
		order := strings.Fields(v["ORDER"])
		if len(order) == 0 {
			order = []string{"A", "B"}
		}
		ok := func(s string) bool { return v[s+"_OK"] == "1" }
		for _, s := range order {
			if ok(s) && v[s+"_TRY"] == "0" {
				slot = s
				break
			}
		}
		if slot == "" {
			for _, s := range []string{"A", "B"} {
				if ok(s) {
					v[s+"_TRY"] = "0"
				}
			}
			for _, s := range order {
				if ok(s) {
					slot = s
					break
				}
			}
		}
		if slot == "" {
			slot = "A"
		}
		r.setVars(map[string]string{"ORDER": strings.Join(order, " "), "A_OK": v["A_OK"], "B_OK": v["B_OK"],
			"A_TRY": map[bool]string{true: "1", false: v["A_TRY"]}[slot == "A"],
			"B_TRY": map[bool]string{true: "1", false: v["B_TRY"]}[slot == "B"]})
	} else {
		order := strings.Fields(v["BOOT_ORDER"])
		if len(order) == 0 {
			order = []string{"A", "B"}
		}
		left := func(s string) uint64 {
			val, ok := v["BOOT_"+s+"_LEFT"]
			if !ok {
				return 3
			}
			n, _ := strconv.ParseUint(val, 16, 8)
			return n
		}
		for _, s := range order {
			if n := left(s); n > 0 {
				slot = s
				v["BOOT_"+s+"_LEFT"] = strconv.FormatUint(n-1, 16)
				break
			}
		}
		if slot == "" {
			// Both get 3 again and the board resets.
			r.setVars(map[string]string{"BOOT_ORDER": v["BOOT_ORDER"], "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3", "upkit_active": v["upkit_active"]})
			return r.boot()
		}
		r.setVars(map[string]string{"BOOT_ORDER": v["BOOT_ORDER"], "BOOT_A_LEFT": v["BOOT_A_LEFT"], "BOOT_B_LEFT": v["BOOT_B_LEFT"], "upkit_active": v["upkit_active"]})
	}
	r.setCmdline(slot)
	return slot
}

// slotHolds reports whether a slot file starts with payload.
func (r *rig) slotHolds(bootname string, payload []byte) bool {
	r.t.Helper()
	path := r.slotA
	if bootname == "B" {
		path = r.slotB
	}
	data, err := os.ReadFile(path)
	if err != nil {
		r.t.Fatal(err)
	}
	return bytes.HasPrefix(data, payload)
}

// stick publishes releases to an OCI image layout (a USB stick), one tag
// per release, and returns its folder.
func (r *rig) stick(rels ...[]byte) string {
	r.t.Helper()
	dir := filepath.Join(r.t.TempDir(), "stick")
	for i, rel := range rels {
		r.srv.Publish(fmt.Sprintf("oci:%s:r%d", dir, i), rel)
	}
	return dir
}
