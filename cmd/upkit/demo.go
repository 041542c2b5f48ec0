package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/internal/sample"
)

// demoPassword encrypts the demo's throwaway keys. The demo sets
// UPKIT_PASSWORD to it for its own commands and restores it afterwards.
const demoPassword = "upkit-demo-only"

// demoHardware is the simulated device's hardware name.
const demoHardware = "demo-board"

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run the whole story on embedded defaults: keys, packages, delta, registry, device",
		Description: `Runs upkit's main job end to end with nothing to set up and no network:
a trust root with two release keys and threshold 2; two versions of a
sample root filesystem and application packed and signed, and of a sensor
MCU's firmware signed as an MCUboot image (what imgtool sign writes); the
deltas v1 -> v2;
both releases pushed to a registry (an embedded one on 127.0.0.1 unless
--registry); a simulated device that installs v1, updates to v2 through the
deltas and commits, then refuses a re-published v1 (rollback), a tampered
blob and a release signed by one key only. Every step runs the real upkit
command it prints. Takes a few seconds.

Example:
   upkit demo
   upkit demo --keep ./demo-out              # keep keys, packages and device state
   upkit demo --registry 127.0.0.1:5000      # use a running registry instead`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "keep", Usage: "work in `DIR` and keep everything there (default: a temporary folder, removed at the end)"},
			&cli.StringFlag{Name: "registry", Usage: "push to the registry at `HOST:PORT` instead of an embedded one"},
		},
		Action: demoAction,
	}
}

// demo holds the state of one demo run.
type demo struct {
	ctx  context.Context
	out  io.Writer // where the story is told (stderr of the demo)
	dir  string    // work folder
	step int
	keep bool // d.dir is the user's --keep folder
	// figures for the summary
	full, fetchedV1, fetchedV2, fullV2 int64
	refusals                           []string
}

func demoAction(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	start := time.Now()
	d := &demo{ctx: c.Context, out: c.App.ErrWriter}
	if keep := c.String("keep"); keep != "" {
		if err := os.MkdirAll(keep, 0o755); err != nil {
			return err
		}
		entries, err := os.ReadDir(keep)
		if err != nil {
			return err
		}
		if len(entries) > 0 {
			return usageError("--keep %s: the folder is not empty", keep)
		}
		abs, err := filepath.Abs(keep)
		if err != nil {
			return err
		}
		d.dir, d.keep = abs, true
	} else {
		tmp, err := os.MkdirTemp("", "upkit-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		d.dir = tmp
	}

	old, had := os.LookupEnv("UPKIT_PASSWORD")
	os.Setenv("UPKIT_PASSWORD", demoPassword)
	defer func() {
		if had {
			os.Setenv("UPKIT_PASSWORD", old)
		} else {
			os.Unsetenv("UPKIT_PASSWORD")
		}
	}()

	reg := c.String("registry")
	if reg == "" {
		addr, stop, err := startEmbeddedRegistry()
		if err != nil {
			return fmt.Errorf("demo: starting the embedded registry: %w", err)
		}
		defer stop()
		reg = addr
		d.say("An embedded OCI registry (go-containerregistry) is serving on http://%s/v2/", reg)
	} else {
		d.say("Using the registry at %s", reg)
	}
	d.say("Working in %s\n", d.dir)

	if err := d.story(reg); err != nil {
		return err
	}
	d.summary(time.Since(start))
	return nil
}

// startEmbeddedRegistry serves go-containerregistry's registry over real
// HTTP on a free loopback port.
func startEmbeddedRegistry() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{
		Handler:           registry.New(registry.Logger(log.New(io.Discard, "", 0))),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}
	return ln.Addr().String(), stop, nil
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
}

func (d *demo) section(title string) {
	d.step++
	fmt.Fprintf(d.out, "\n%d. %s\n", d.step, title)
}

func (d *demo) path(elem ...string) string {
	return filepath.Join(append([]string{d.dir}, elem...)...)
}

// cliResult is what one in-process run of the CLI produced.
type cliResult struct {
	code           int
	stdout, stderr string
}

// upkit runs one upkit command in-process, prints it (with paths relative
// to the work folder) and what it said, and returns its result.
func (d *demo) upkit(args ...string) cliResult {
	shown := make([]string, len(args))
	for i, a := range args {
		a = strings.ReplaceAll(a, d.dir+string(filepath.Separator), "")
		if strings.ContainsAny(a, " \t") {
			a = "'" + a + "'"
		}
		shown[i] = a
	}
	fmt.Fprintf(d.out, "   $ upkit %s\n", strings.Join(shown, " "))
	var out, errb bytes.Buffer
	code := run(d.ctx, append([]string{"upkit"}, args...), strings.NewReader(""), &out, &errb)
	for _, line := range strings.Split(strings.TrimRight(errb.String(), "\n"), "\n") {
		if line = strings.TrimRight(line, " "); line != "" {
			fmt.Fprintf(d.out, "     %s\n", strings.ReplaceAll(line, d.dir+string(filepath.Separator), ""))
		}
	}
	return cliResult{code: code, stdout: out.String(), stderr: errb.String()}
}

// must runs a command that has to succeed.
func (d *demo) must(args ...string) (string, error) {
	r := d.upkit(args...)
	if r.code != 0 {
		return "", fmt.Errorf("demo: `upkit %s` failed (exit %d)", strings.Join(args, " "), r.code)
	}
	return strings.TrimSpace(r.stdout), nil
}

// refused runs a command that has to be refused with exit code 1, and
// records why.
func (d *demo) refused(what string, args ...string) error {
	r := d.upkit(args...)
	if r.code != exitFailed {
		return fmt.Errorf("demo: %s was NOT refused: `upkit %s` exited %d", what, strings.Join(args, " "), r.code)
	}
	fmt.Fprintf(d.out, "   -> refused, as it must be: %s\n", what)
	d.refusals = append(d.refusals, what)
	return nil
}

func (d *demo) writeFile(data []byte, elem ...string) (string, error) {
	p := d.path(elem...)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	return p, os.WriteFile(p, data, 0o644)
}

// story is the demo proper: each step is the command a user would run.
func (d *demo) story(reg string) error {
	keys := func(name string) string { return d.path("keys", name) }
	if err := os.MkdirAll(d.path("keys"), 0o700); err != nil {
		return err
	}

	d.section("Keys: one root key (kept offline) and two release keys")
	for _, k := range []struct{ name, alg string }{{"root", "ed25519"}, {"release-a", "ecdsa-p256"}, {"release-b", "ed25519"}} {
		if _, err := d.must("key", "generate", "--out", keys(k.name), "--algorithm", k.alg); err != nil {
			return err
		}
	}

	d.section("Trust root: releases need signatures by BOTH release keys (threshold 2)")
	root := d.path("root.json")
	if _, err := d.must("root", "init", "--root-key", keys("root.pub"), "--root-threshold", "1",
		"--release-key", keys("release-a.pub"), "--release-key", keys("release-b.pub"), "--release-threshold", "2",
		"--expires", "365d", "-o", root); err != nil {
		return err
	}
	if _, err := d.must("root", "sign", "--key", keys("root.key"), root); err != nil {
		return err
	}

	d.section("Sample images: a root filesystem (tar), an application executable and MCU firmware, v1, v2 and v3")
	imgs := map[string]string{}
	for v := 1; v <= 3; v++ {
		fs, err := sample.RootFS(v)
		if err != nil {
			return err
		}
		agent, err := sample.Agent(min(v, 2))
		if err != nil {
			return err
		}
		if imgs[fmt.Sprintf("rootfs%d", v)], err = d.writeFile(fs, "images", fmt.Sprintf("rootfs-%d.tar", v)); err != nil {
			return err
		}
		if imgs[fmt.Sprintf("agent%d", v)], err = d.writeFile(agent, "images", fmt.Sprintf("agent-%d", v)); err != nil {
			return err
		}
		fw := agent[:min(len(agent), 48<<10)] // stands in for a sensor MCU's firmware
		if imgs[fmt.Sprintf("sensor%d", v)], err = d.writeFile(fw, "images", fmt.Sprintf("sensor-%d.bin", v)); err != nil {
			return err
		}
		d.say("   images/rootfs-%d.tar (%s), images/agent-%d (%s), images/sensor-%d.bin (%s)", v, humanSize(int64(len(fs))), v, humanSize(int64(len(agent))),
			v, humanSize(int64(len(fw))))
	}

	d.section("Pack and sign the images of v1 and v2 (and v3, used by the attacks at the end)")
	pack := func(v int, comp, typ, input string) (string, error) {
		out := d.path(fmt.Sprintf("v%d", v), fmt.Sprintf("%s-%d.0.0.upk", comp, v))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return "", err
		}
		_, err := d.must("pack", "--type", typ, "--component", comp, "--version", fmt.Sprintf("%d.0.0", v),
			"--security-version", fmt.Sprint(v), "--hardware", demoHardware, "--key", keys("release-a.key"), "-o", out, input)
		return out, err
	}
	pkgs := map[string]string{}
	for v := 1; v <= 3; v++ {
		for _, comp := range []struct{ name, typ string }{{"rootfs", "os"}, {"agent", "app"}} {
			p, err := pack(v, comp.name, comp.typ, imgs[fmt.Sprintf("%s%d", comp.name, v)])
			if err != nil {
				return err
			}
			pkgs[fmt.Sprintf("%s%d", comp.name, v)] = p
		}
		// The sensor MCU's firmware: an MCUboot image, signed by the same key.
		out := d.path(fmt.Sprintf("v%d", v), fmt.Sprintf("sensor-%d.0.0.bin", v))
		if _, err := d.must("pack", "--format", "mcuboot", "--version", fmt.Sprintf("%d.0.0", v), "--security-version", fmt.Sprint(v),
			"--header-size", "0x200", "--pad-header", "--slot-size", "0x20000", "--key", keys("release-a.key"), "-o", out, imgs[fmt.Sprintf("sensor%d", v)]); err != nil {
			return err
		}
		pkgs[fmt.Sprintf("sensor%d", v)] = out
	}

	d.section("Verify a package, then tamper with a copy: one flipped payload byte is caught")
	if _, err := d.must("verify", "--key", keys("release-a.pub"), pkgs["rootfs1"]); err != nil {
		return err
	}
	data, err := os.ReadFile(pkgs["rootfs1"])
	if err != nil {
		return err
	}
	data[len(data)-100] ^= 0x01
	tampered, err := d.writeFile(data, "tampered", "rootfs-1.0.0.upk")
	if err != nil {
		return err
	}
	if err := d.refused("a package with one flipped byte", "verify", "--key", keys("release-a.pub"), tampered); err != nil {
		return err
	}

	d.section("Deltas v1 -> v2 between the packages' payloads (and the MCUboot images)")
	deltas := map[string]string{}
	for _, comp := range []string{"rootfs", "agent", "sensor"} {
		p := d.path("v2", comp+"-1.0.0-2.0.0.delta")
		if _, err := d.must("delta", "create", "--from", pkgs[comp+"1"], "--to", pkgs[comp+"2"], "-o", p); err != nil {
			return err
		}
		deltas[comp] = p
	}
	p := d.path("v3", "rootfs-2.0.0-3.0.0.delta")
	if _, err := d.must("delta", "create", "--from", pkgs["rootfs2"], "--to", pkgs["rootfs3"], "-o", p); err != nil {
		return err
	}
	deltas["rootfs3"] = p

	d.section("Release manifests: create, then sign with each release key in turn")
	release := func(v int, signers []string, extra ...string) (string, error) {
		out := d.path(fmt.Sprintf("v%d", v), "release.json")
		args := []string{"release", "create", "--product", "demo-os", "--version", fmt.Sprint(v), "--expires", "30d",
			"--root", root}
		args = append(args, extra...) // flags come before the packages
		args = append(args, "--mcuboot", fmt.Sprintf("sensor@%s=%s", demoHardware, pkgs[fmt.Sprintf("sensor%d", v)]), "-o", out)
		for _, comp := range []string{"rootfs", "agent"} {
			args = append(args, pkgs[fmt.Sprintf("%s%d", comp, v)])
		}
		if _, err := d.must(args...); err != nil {
			return "", err
		}
		for _, s := range signers {
			if _, err := d.must("release", "sign", "--key", keys(s+".key"), out); err != nil {
				return "", err
			}
		}
		return out, nil
	}
	both := []string{"release-a", "release-b"}
	if _, err := release(1, both); err != nil {
		return err
	}
	if _, err := release(2, both, "--delta", deltas["rootfs"], "--delta", deltas["agent"], "--delta", deltas["sensor"]); err != nil {
		return err
	}
	if _, err := d.must("release", "verify", "--root", root, "--hardware", demoHardware, d.path("v2", "release.json")); err != nil {
		return err
	}

	d.section("Publish both releases to the registry")
	repo := reg + "/upkit-demo/demo-os"
	for v := 1; v <= 2; v++ {
		digest, err := d.must("push", "--quiet", d.path(fmt.Sprintf("v%d", v)), fmt.Sprintf("%s:%d", repo, v))
		if err != nil {
			return err
		}
		d.say("   pushed %s:%d as %s", repo, v, digest)
	}
	if _, err := d.must("ls", repo); err != nil {
		return err
	}

	dev := d.path("device")
	d.section("A device, provisioned with the trust root, installs v1 from the registry")
	if _, err := d.must("device", "init", "--state", dev, "--root", root, "--hardware", demoHardware); err != nil {
		return err
	}
	if d.fetchedV1, d.full, err = d.update(dev, fmt.Sprintf("%s:1", repo)); err != nil {
		return err
	}
	if _, err := d.must("device", "commit", "--state", dev); err != nil {
		return err
	}

	d.section("The device updates to v2: only the deltas are downloaded")
	if d.fetchedV2, d.fullV2, err = d.update(dev, fmt.Sprintf("%s:2", repo)); err != nil {
		return err
	}
	d.say("   (the new slots boot and report healthy)")
	if _, err := d.must("device", "commit", "--state", dev); err != nil {
		return err
	}
	if err := d.show("device", "status", "--state", dev); err != nil {
		return err
	}

	d.section("Attack 1: v1 re-published as the newest tag, validly signed -> rollback refused")
	if _, err := d.must("push", "--quiet", d.path("v1"), repo+":latest"); err != nil {
		return err
	}
	if err := d.refused("rollback to release 1", "device", "update", "--state", dev, repo+":latest"); err != nil {
		return err
	}

	d.section("Attack 2: a tampered blob on a mirror (an OCI layout, e.g. a USB stick) -> refused")
	if _, err := release(3, both, "--delta", deltas["rootfs3"]); err != nil {
		return err
	}
	layout := d.path("usb-stick")
	if _, err := d.must("push", "--quiet", d.path("v3"), "oci:"+layout+":3"); err != nil {
		return err
	}
	if err := tamperBlob(layout, deltas["rootfs3"]); err != nil {
		return err
	}
	d.say("   (one byte of the rootfs delta blob flipped in usb-stick/blobs/sha256/)")
	if err := d.refused("a tampered delta blob", "device", "update", "--state", dev, "oci:"+layout+":3"); err != nil {
		return err
	}

	d.section("Attack 3: a release signed by one release key only -> below threshold, refused")
	if err := os.Remove(d.path("v3", "release.json")); err != nil {
		return err
	}
	if _, err := release(3, []string{"release-a"}, "--delta", deltas["rootfs3"]); err != nil {
		return err
	}
	if _, err := d.must("push", "--quiet", d.path("v3"), repo+":3-one-key"); err != nil {
		return err
	}
	if err := d.refused("a release with 1 of 2 required signatures", "device", "update", "--state", dev, repo+":3-one-key"); err != nil {
		return err
	}
	d.section("The device still runs v2, committed")
	return d.show("device", "status", "--state", dev)
}

// show runs a command that has to succeed and prints its stdout too.
func (d *demo) show(args ...string) error {
	out, err := d.must(args...)
	for _, line := range strings.Split(out, "\n") {
		if line != "" {
			fmt.Fprintf(d.out, "     %s\n", line)
		}
	}
	return err
}

// update runs `device update --json` and returns bytes fetched and the
// size of the full packages.
func (d *demo) update(dev, ref string) (fetched, full int64, err error) {
	out, err := d.must("device", "update", "--state", dev, "--json", ref)
	if err != nil {
		return 0, 0, err
	}
	var res struct {
		Images []struct {
			Fetched     int64
			PackageSize int64
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return 0, 0, fmt.Errorf("demo: reading device update output: %w", err)
	}
	for _, im := range res.Images {
		fetched += im.Fetched
		full += im.PackageSize
	}
	return fetched, full, nil
}

// tamperBlob flips one byte in the middle of the layout's copy of file.
func tamperBlob(layout, file string) error {
	digest, _, err := pkgFileDigest(file)
	if err != nil {
		return err
	}
	p := filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
	data, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("demo: the pushed layout has no blob %s: %w", digest, err)
	}
	if len(data) == 0 {
		return errors.New("demo: empty blob")
	}
	data[len(data)/2] ^= 0x40
	os.Chmod(p, 0o644)
	return os.WriteFile(p, data, 0o644)
}

func (d *demo) summary(took time.Duration) {
	fmt.Fprintf(d.out, "\nSummary (%.1fs)\n", took.Seconds())
	fmt.Fprintf(d.out, "  trust root: 1 root key, 2 release keys, threshold 2 for releases\n")
	fmt.Fprintf(d.out, "  v1 first install: %s downloaded (full packages)\n", humanSize(d.fetchedV1))
	pct := 0.0
	if d.fullV2 > 0 {
		pct = 100 * float64(d.fetchedV2) / float64(d.fullV2)
	}
	fmt.Fprintf(d.out, "  v1 -> v2 update:   %s downloaded instead of %s (%.1f%% of the full packages)\n",
		humanSize(d.fetchedV2), humanSize(d.fullV2), pct)
	fmt.Fprintf(d.out, "  refused: %s\n", strings.Join(d.refusals, "; "))
	fmt.Fprintf(d.out, "  the device runs release 2, committed; its counters never go back\n")
	if d.keep {
		fmt.Fprintf(d.out, "  everything is kept in %s\n", d.dir)
	}
}
