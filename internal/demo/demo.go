// Package demo is the story `upkit demo` tells: keys and a trust root,
// sample images packed and signed (a sensor MCU's firmware as an MCUboot
// image), deltas, releases published to a registry, and a simulated device
// that installs, updates through the deltas and refuses three attacks. Every step runs a real upkit command,
// in-process, through the Runner the CLI passes, and prints it. The sample
// images are generated (sample.go) around two embedded agent executables
// (sample/).
package demo

import (
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

	"github.com/upkit/upkit/internal/humanize"
	"github.com/upkit/upkit/oci"
)

// Password encrypts the demo's throwaway keys: Run sets UPKIT_PASSWORD to
// it for its commands and restores it afterwards.
const Password = "upkit-demo-only"

// Hardware is the simulated device's hardware name.
const Hardware = "demo-board"

// Runner runs one upkit command in-process (args without "upkit") and
// returns its exit code and output.
type Runner func(ctx context.Context, args []string) (code int, stdout, stderr string)

// Config configures a run.
type Config struct {
	Dir      string    // the work folder (made by the caller)
	Keep     bool      // Dir is kept for the user: say so at the end
	Registry string    // HOST:PORT of a registry; "" starts an embedded one
	Out      io.Writer // where the story is told
	Run      Runner
}

// Run tells the whole story. It fails if a step that must succeed fails,
// or if an attack is not refused with exit code 1.
func Run(ctx context.Context, cfg Config) error {
	start := time.Now()
	d := &demo{ctx: ctx, Config: cfg}
	old, had := os.LookupEnv("UPKIT_PASSWORD")
	os.Setenv("UPKIT_PASSWORD", Password)
	defer func() {
		if had {
			os.Setenv("UPKIT_PASSWORD", old)
		} else {
			os.Unsetenv("UPKIT_PASSWORD")
		}
	}()
	reg := cfg.Registry
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
	d.say("Working in %s\n", d.Dir)
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

// demo holds the state of one run.
type demo struct {
	Config
	ctx  context.Context
	step int
	// what the story made: key, image, package and delta paths by name
	root, repo, dev    string
	imgs, pkgs, deltas map[string]string
	// figures for the summary
	full, fetchedV1, fetchedV2, fullV2 int64
	refusals                           []string
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.Out, format+"\n", args...)
}

func (d *demo) section(title string) {
	d.step++
	fmt.Fprintf(d.Out, "\n%d. %s\n", d.step, title)
}

func (d *demo) path(elem ...string) string {
	return filepath.Join(append([]string{d.Dir}, elem...)...)
}

func (d *demo) key(name string) string { return d.path("keys", name) }

// upkit runs one command, prints it (with paths relative to the work
// folder) and what it said on stderr, and returns its exit code and stdout.
func (d *demo) upkit(args ...string) (int, string) {
	shown := make([]string, len(args))
	for i, a := range args {
		a = strings.ReplaceAll(a, d.Dir+string(filepath.Separator), "")
		if strings.ContainsAny(a, " \t") {
			a = "'" + a + "'"
		}
		shown[i] = a
	}
	fmt.Fprintf(d.Out, "   $ upkit %s\n", strings.Join(shown, " "))
	code, stdout, stderr := d.Run(d.ctx, args)
	for _, line := range strings.Split(strings.TrimRight(stderr, "\n"), "\n") {
		if line = strings.TrimRight(line, " "); line != "" {
			fmt.Fprintf(d.Out, "     %s\n", strings.ReplaceAll(line, d.Dir+string(filepath.Separator), ""))
		}
	}
	return code, stdout
}

// must runs a command that has to succeed and returns its stdout.
func (d *demo) must(args ...string) (string, error) {
	code, stdout := d.upkit(args...)
	if code != 0 {
		return "", fmt.Errorf("demo: `upkit %s` failed (exit %d)", strings.Join(args, " "), code)
	}
	return strings.TrimSpace(stdout), nil
}

// refused runs a command that has to be refused with exit code 1, and
// records why.
func (d *demo) refused(what string, args ...string) error {
	if code, _ := d.upkit(args...); code != 1 {
		return fmt.Errorf("demo: %s was NOT refused: `upkit %s` exited %d", what, strings.Join(args, " "), code)
	}
	fmt.Fprintf(d.Out, "   -> refused, as it must be: %s\n", what)
	d.refusals = append(d.refusals, what)
	return nil
}

// show runs a command that has to succeed and prints its stdout too.
func (d *demo) show(args ...string) error {
	out, err := d.must(args...)
	for _, line := range strings.Split(out, "\n") {
		if line != "" {
			fmt.Fprintf(d.Out, "     %s\n", line)
		}
	}
	return err
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
	d.repo = reg + "/upkit-demo/demo-os"
	d.dev = d.path("device")
	for _, step := range []func() error{
		d.keysAndRoot, d.images, d.packAll, d.verifyAndTamper, d.makeDeltas,
		d.makeReleases, d.publish, d.installV1, d.updateV2,
		d.attackRollback, d.attackTamperedBlob, d.attackOneKey,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	d.section("The device still runs v2, committed")
	return d.show("device", "status", "--state", d.dev)
}

func (d *demo) keysAndRoot() error {
	if err := os.MkdirAll(d.path("keys"), 0o700); err != nil {
		return err
	}
	d.section("Keys: one root key (kept offline) and two release keys")
	for _, k := range []struct{ name, alg string }{{"root", "ed25519"}, {"release-a", "ecdsa-p256"}, {"release-b", "ed25519"}} {
		if _, err := d.must("key", "generate", "--out", d.key(k.name), "--algorithm", k.alg); err != nil {
			return err
		}
	}
	d.section("Trust root: releases need signatures by BOTH release keys (threshold 2)")
	d.root = d.path("root.json")
	if _, err := d.must("root", "init", "--root-key", d.key("root.pub"), "--root-threshold", "1",
		"--release-key", d.key("release-a.pub"), "--release-key", d.key("release-b.pub"), "--release-threshold", "2",
		"--expires", "365d", "-o", d.root); err != nil {
		return err
	}
	_, err := d.must("root", "sign", "--key", d.key("root.key"), d.root)
	return err
}

func (d *demo) images() error {
	d.section("Sample images: a root filesystem (tar), an application executable and MCU firmware, v1, v2 and v3")
	d.imgs = map[string]string{}
	for v := 1; v <= 3; v++ {
		fs, err := RootFS(v)
		if err != nil {
			return err
		}
		agent, err := Agent(min(v, 2))
		if err != nil {
			return err
		}
		if d.imgs[fmt.Sprintf("rootfs%d", v)], err = d.writeFile(fs, "images", fmt.Sprintf("rootfs-%d.tar", v)); err != nil {
			return err
		}
		if d.imgs[fmt.Sprintf("agent%d", v)], err = d.writeFile(agent, "images", fmt.Sprintf("agent-%d", v)); err != nil {
			return err
		}
		fw := agent[:min(len(agent), 48<<10)] // stands in for a sensor MCU's firmware
		if d.imgs[fmt.Sprintf("sensor%d", v)], err = d.writeFile(fw, "images", fmt.Sprintf("sensor-%d.bin", v)); err != nil {
			return err
		}
		d.say("   images/rootfs-%d.tar (%s), images/agent-%d (%s), images/sensor-%d.bin (%s)", v, humanize.Bytes(int64(len(fs))),
			v, humanize.Bytes(int64(len(agent))), v, humanize.Bytes(int64(len(fw))))
	}
	return nil
}

func (d *demo) packAll() error {
	d.section("Pack and sign the images of v1 and v2 (and v3, used by the attacks at the end)")
	d.pkgs = map[string]string{}
	for v := 1; v <= 3; v++ {
		for _, comp := range []struct{ name, typ string }{{"rootfs", "os"}, {"agent", "app"}} {
			out := d.path(fmt.Sprintf("v%d", v), fmt.Sprintf("%s-%d.0.0.upk", comp.name, v))
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			if _, err := d.must("pack", "--type", comp.typ, "--component", comp.name, "--version", fmt.Sprintf("%d.0.0", v),
				"--security-version", fmt.Sprint(v), "--hardware", Hardware, "--key", d.key("release-a.key"), "-o", out,
				d.imgs[fmt.Sprintf("%s%d", comp.name, v)]); err != nil {
				return err
			}
			d.pkgs[fmt.Sprintf("%s%d", comp.name, v)] = out
		}
		// The sensor MCU's firmware: an MCUboot image, signed by the same key.
		out := d.path(fmt.Sprintf("v%d", v), fmt.Sprintf("sensor-%d.0.0.bin", v))
		if _, err := d.must("pack", "--format", "mcuboot", "--version", fmt.Sprintf("%d.0.0", v), "--security-version", fmt.Sprint(v),
			"--header-size", "0x200", "--pad-header", "--slot-size", "0x20000", "--key", d.key("release-a.key"), "-o", out,
			d.imgs[fmt.Sprintf("sensor%d", v)]); err != nil {
			return err
		}
		d.pkgs[fmt.Sprintf("sensor%d", v)] = out
	}
	return nil
}

func (d *demo) verifyAndTamper() error {
	d.section("Verify a package, then tamper with a copy: one flipped payload byte is caught")
	if _, err := d.must("verify", "--key", d.key("release-a.pub"), d.pkgs["rootfs1"]); err != nil {
		return err
	}
	data, err := os.ReadFile(d.pkgs["rootfs1"])
	if err != nil {
		return err
	}
	data[len(data)-100] ^= 0x01
	tampered, err := d.writeFile(data, "tampered", "rootfs-1.0.0.upk")
	if err != nil {
		return err
	}
	return d.refused("a package with one flipped byte", "verify", "--key", d.key("release-a.pub"), tampered)
}

func (d *demo) makeDeltas() error {
	d.section("Deltas v1 -> v2 between the packages' payloads (and the MCUboot images)")
	d.deltas = map[string]string{}
	for _, dl := range []struct{ name, from, to, out string }{
		{"rootfs", "rootfs1", "rootfs2", d.path("v2", "rootfs-1.0.0-2.0.0.delta")},
		{"agent", "agent1", "agent2", d.path("v2", "agent-1.0.0-2.0.0.delta")},
		{"sensor", "sensor1", "sensor2", d.path("v2", "sensor-1.0.0-2.0.0.delta")},
		{"rootfs3", "rootfs2", "rootfs3", d.path("v3", "rootfs-2.0.0-3.0.0.delta")},
	} {
		if _, err := d.must("delta", "create", "--from", d.pkgs[dl.from], "--to", d.pkgs[dl.to], "-o", dl.out); err != nil {
			return err
		}
		d.deltas[dl.name] = dl.out
	}
	return nil
}

// release creates release v from the packages of version v and extra
// flags, and signs it with each of signers.
func (d *demo) release(v int, signers []string, extra ...string) error {
	out := d.path(fmt.Sprintf("v%d", v), "release.json")
	args := []string{"release", "create", "--product", "demo-os", "--version", fmt.Sprint(v), "--expires", "30d",
		"--root", d.root}
	args = append(append(args, extra...), "--mcuboot", fmt.Sprintf("sensor@%s=%s", Hardware, d.pkgs[fmt.Sprintf("sensor%d", v)]), "-o", out)
	for _, comp := range []string{"rootfs", "agent"} {
		args = append(args, d.pkgs[fmt.Sprintf("%s%d", comp, v)])
	}
	if _, err := d.must(args...); err != nil {
		return err
	}
	for _, s := range signers {
		if _, err := d.must("release", "sign", "--key", d.key(s+".key"), out); err != nil {
			return err
		}
	}
	return nil
}

var bothKeys = []string{"release-a", "release-b"}

func (d *demo) makeReleases() error {
	d.section("Release manifests: create, then sign with each release key in turn")
	if err := d.release(1, bothKeys); err != nil {
		return err
	}
	if err := d.release(2, bothKeys, "--delta", d.deltas["rootfs"], "--delta", d.deltas["agent"], "--delta", d.deltas["sensor"]); err != nil {
		return err
	}
	_, err := d.must("release", "verify", "--root", d.root, "--hardware", Hardware, d.path("v2", "release.json"))
	return err
}

func (d *demo) publish() error {
	d.section("Publish both releases to the registry")
	for v := 1; v <= 2; v++ {
		digest, err := d.must("push", "--quiet", d.path(fmt.Sprintf("v%d", v)), fmt.Sprintf("%s:%d", d.repo, v))
		if err != nil {
			return err
		}
		d.say("   pushed %s:%d as %s", d.repo, v, digest)
	}
	_, err := d.must("ls", d.repo)
	return err
}

func (d *demo) installV1() error {
	d.section("A device, provisioned with the trust root, installs v1 from the registry")
	if _, err := d.must("device", "init", "--state", d.dev, "--root", d.root, "--hardware", Hardware); err != nil {
		return err
	}
	var err error
	if d.fetchedV1, d.full, err = d.update(d.repo + ":1"); err != nil {
		return err
	}
	_, err = d.must("device", "commit", "--state", d.dev)
	return err
}

func (d *demo) updateV2() error {
	d.section("The device updates to v2: only the deltas are downloaded")
	var err error
	if d.fetchedV2, d.fullV2, err = d.update(d.repo + ":2"); err != nil {
		return err
	}
	d.say("   (the new slots boot and report healthy)")
	if _, err := d.must("device", "commit", "--state", d.dev); err != nil {
		return err
	}
	return d.show("device", "status", "--state", d.dev)
}

func (d *demo) attackRollback() error {
	d.section("Attack 1: v1 re-published as the newest tag, validly signed -> rollback refused")
	if _, err := d.must("push", "--quiet", d.path("v1"), d.repo+":latest"); err != nil {
		return err
	}
	return d.refused("rollback to release 1", "device", "update", "--state", d.dev, d.repo+":latest")
}

func (d *demo) attackTamperedBlob() error {
	d.section("Attack 2: a tampered blob on a mirror (an OCI layout, e.g. a USB stick) -> refused")
	if err := d.release(3, bothKeys, "--delta", d.deltas["rootfs3"]); err != nil {
		return err
	}
	layout := d.path("usb-stick")
	if _, err := d.must("push", "--quiet", d.path("v3"), "oci:"+layout+":3"); err != nil {
		return err
	}
	if err := tamperBlob(d.ctx, layout, d.deltas["rootfs3"]); err != nil {
		return err
	}
	d.say("   (one byte of the rootfs delta blob flipped in usb-stick/blobs/sha256/)")
	return d.refused("a tampered delta blob", "device", "update", "--state", d.dev, "oci:"+layout+":3")
}

func (d *demo) attackOneKey() error {
	d.section("Attack 3: a release signed by one release key only -> below threshold, refused")
	if err := os.Remove(d.path("v3", "release.json")); err != nil {
		return err
	}
	if err := d.release(3, []string{"release-a"}, "--delta", d.deltas["rootfs3"]); err != nil {
		return err
	}
	if _, err := d.must("push", "--quiet", d.path("v3"), d.repo+":3-one-key"); err != nil {
		return err
	}
	return d.refused("a release with 1 of 2 required signatures", "device", "update", "--state", d.dev, d.repo+":3-one-key")
}

// update runs `device update --json` and returns bytes fetched and the
// size of the full packages.
func (d *demo) update(ref string) (fetched, full int64, err error) {
	out, err := d.must("device", "update", "--state", d.dev, "--json", ref)
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
func tamperBlob(ctx context.Context, layout, file string) error {
	digest, _, err := oci.HashFile(ctx, file)
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
	w := d.Out
	fmt.Fprintf(w, "\nSummary (%.1fs)\n", took.Seconds())
	fmt.Fprintf(w, "  trust root: 1 root key, 2 release keys, threshold 2 for releases\n")
	fmt.Fprintf(w, "  v1 first install: %s downloaded (full packages)\n", humanize.Bytes(d.fetchedV1))
	pct := 0.0
	if d.fullV2 > 0 {
		pct = 100 * float64(d.fetchedV2) / float64(d.fullV2)
	}
	fmt.Fprintf(w, "  v1 -> v2 update:   %s downloaded instead of %s (%.1f%% of the full packages)\n",
		humanize.Bytes(d.fetchedV2), humanize.Bytes(d.fullV2), pct)
	fmt.Fprintf(w, "  refused: %s\n", strings.Join(d.refusals, "; "))
	fmt.Fprintf(w, "  the device runs release 2, committed; its counters never go back\n")
	if d.Keep {
		fmt.Fprintf(w, "  everything is kept in %s\n", d.Dir)
	}
}
