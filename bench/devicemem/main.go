// Command devicemem measures the device library's memory on a large update.
// bench/device-size.sh runs it under /usr/bin/time -v:
//
//	devicemem gen DIR SIZE   write a trust root, a release (full package and
//	                         delta) of a SIZE-byte image, and two devices:
//	                         DIR/dev-delta runs the old image, DIR/dev-full
//	                         runs nothing; and the same for upkit-agent:
//	                         DIR/agent-delta (its factory release, the old
//	                         image, in slot A) and DIR/agent-full (nothing
//	                         installed), each with agent.json (GRUB
//	                         environment, file slots, file counters), the
//	                         release in the OCI layout DIR/layout
//	devicemem run DIR DEV    install and commit the release on DIR/DEV
//	                         (the measured process: the device library only)
//
// gen is heavy (delta.Create holds both images and a suffix array); run is
// what a device does, and so are `upkit-agent install DIR/layout` and
// `upkit-agent boot` on the agent devices.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/upkit/upkit/spec"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/device/grubenv"
	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/oci"
)

const hardware = "bench-board"

// now is the clock of the releases: they are created when gen runs and
// expire a year later, so that upkit-agent (which reads the clock) takes
// them.
var now = time.Now().UTC().Truncate(time.Second)

func main() {
	var err error
	switch {
	case len(os.Args) == 4 && os.Args[1] == "gen":
		var size int
		if size, err = strconv.Atoi(os.Args[3]); err == nil {
			err = gen(context.Background(), os.Args[2], size)
		}
	case len(os.Args) == 4 && os.Args[1] == "run":
		err = run(context.Background(), os.Args[2], os.Args[3])
	default:
		err = fmt.Errorf("usage: devicemem gen DIR SIZE | devicemem run DIR dev-delta|dev-full")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "devicemem:", err)
		os.Exit(1)
	}
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return spec.Digest(s).String()
}

func newDevice(dir string) (*device.Device, *device.FileStore, *device.FileSlots, error) {
	store := device.NewFileStore(filepath.Join(dir, "state"), nil)
	slots := device.NewFileSlots(filepath.Join(dir, "slots"), nil)
	d, err := device.New(device.Config{Store: store, Slots: slots, Hardware: hardware, StagingDir: filepath.Join(dir, "staging")})
	return d, store, slots, err
}

func gen(ctx context.Context, dir string, size int) error {
	rel := filepath.Join(dir, "release")
	if err := os.MkdirAll(rel, 0o755); err != nil {
		return err
	}
	old, newImg := images(size)
	fmt.Fprintf(os.Stderr, "devicemem: creating the delta of %d -> %d bytes\n", len(old), len(newImg))
	var patch bytes.Buffer
	if _, err := delta.Create(ctx, old, newImg, &patch, nil); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rel, "rootfs.delta"), patch.Bytes(), 0o644); err != nil {
		return err
	}
	k := testkeys.Ed25519(1)
	var pkg bytes.Buffer
	meta, err := imagepkg.Pack(ctx, &pkg, bytes.NewReader(newImg), imagepkg.PackOptions{
		Component: "rootfs", Type: imagepkg.TypeOS, Version: "2.0.0", SecurityVersion: 2, Hardware: []string{hardware},
		Compression: imagepkg.CompressionZstd, TempDir: dir,
	}, k)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rel, "rootfs-2.0.0.upk"), pkg.Bytes(), 0o644); err != nil {
		return err
	}
	rootJSON, err := signedRoot(ctx, k)
	if err != nil {
		return err
	}
	relEnv, err := manifest.NewReleaseEnvelope(&manifest.Release{Product: "bench", Version: 2, Created: now, Expires: now.AddDate(1, 0, 0),
		Images: []manifest.Image{{Component: "rootfs", Type: "os", Version: "2.0.0", SecurityVersion: 2, Hardware: []string{hardware},
			Package: manifest.Blob{Digest: digest(pkg.Bytes()), Size: int64(pkg.Len())},
			Payload: manifest.Blob{Digest: meta.Payload.SHA256, Size: meta.Payload.Size},
			Deltas:  []manifest.Delta{{FromPayloadDigest: digest(old), Digest: digest(patch.Bytes()), Size: int64(patch.Len())}}}}})
	if err != nil {
		return err
	}
	if err := manifest.Sign(ctx, relEnv, k); err != nil {
		return err
	}
	relJSON, err := relEnv.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rel, "release.json"), relJSON, 0o644); err != nil {
		return err
	}
	if err := devices(ctx, dir, rootJSON, old); err != nil {
		return err
	}
	// The same release in an OCI image layout, and a release 1 of the old
	// image (the agent's factory release).
	rel1, err := release1(ctx, dir, k, old)
	if err != nil {
		return err
	}
	files := oci.ReleaseFiles(mustParse(relJSON))
	for i := range files {
		files[i].Path = filepath.Join(rel, map[string]string{oci.MediaTypePackage: "rootfs-2.0.0.upk", oci.MediaTypeDelta: "rootfs.delta"}[files[i].MediaType])
		files[i].Title = filepath.Base(files[i].Path)
	}
	if _, err := oci.Push(ctx, "oci:"+filepath.Join(dir, "layout")+":2", oci.Release{Envelope: relJSON, Product: "bench", Version: 2, Created: now, Files: files}, nil); err != nil {
		return err
	}
	if err := agentDevices(dir, rootJSON, rel1, old, len(newImg)); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "devicemem: image %d bytes, package %d bytes, delta %d bytes\n", len(newImg), pkg.Len(), patch.Len())
	return nil
}

// images returns the old and new images of size bytes. The old image mixes
// what OS images hold, per 1 MiB stripe: 512 KiB of random bytes
// (compressed content), 256 KiB of text-like bytes (16 symbols), 256 KiB
// of zeros (free space), so that the package's zstd stream uses its whole
// window. The new image: a byte changed every 64 KiB, 64 KiB inserted
// mid-way.
func images(size int) (old, newImg []byte) {
	r := rand.New(rand.NewChaCha8([32]byte{1}))
	old = make([]byte, size)
	text := []byte("etaoin shrdlu\n.,")
	for i := 0; i < size; i += 8 {
		switch off := i % (1 << 20); {
		case off < 512<<10:
			v := r.Uint64()
			for j := 0; j < 8 && i+j < size; j++ {
				old[i+j] = byte(v >> (8 * j))
			}
		case off < 768<<10:
			v := r.Uint64()
			for j := 0; j < 8 && i+j < size; j++ {
				old[i+j] = text[int(v>>(4*j))&15]
			}
		}
	}
	ins := make([]byte, 64<<10)
	for i := range ins {
		ins[i] = byte(r.Uint32())
	}
	newImg = make([]byte, 0, size+len(ins))
	newImg = append(newImg, old[:size/2]...)
	newImg = append(newImg, ins...)
	newImg = append(newImg, old[size/2:]...)
	for i := 0; i < len(newImg); i += 64 << 10 {
		newImg[i] ^= 0x5a
	}
	return old, newImg
}

// signedRoot is a trust root whose one key k signs roots and releases.
func signedRoot(ctx context.Context, k *testkeys.Signer) ([]byte, error) {
	id, pub := manifest.KeyOf(k.Public())
	rootEnv, err := manifest.NewRootEnvelope(&manifest.Root{Version: 1, Expires: now.AddDate(5, 0, 0), Keys: map[string]manifest.Key{id: pub},
		Roles: manifest.Roles{Root: manifest.Role{KeyIDs: []string{id}, Threshold: 1}, Release: manifest.Role{KeyIDs: []string{id}, Threshold: 1}}})
	if err != nil {
		return nil, err
	}
	if err := manifest.Sign(ctx, rootEnv, k); err != nil {
		return nil, err
	}
	return rootEnv.Marshal()
}

// devices provisions DIR/dev-full (nothing installed) and DIR/dev-delta,
// which runs the old image, release 1, in slot a.
func devices(ctx context.Context, dir string, rootJSON, old []byte) error {
	for _, name := range []string{"dev-delta", "dev-full"} {
		d, store, slots, err := newDevice(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := d.Provision(ctx, rootJSON, now); err != nil {
			return err
		}
		if name == "dev-full" {
			continue
		}
		if err := os.MkdirAll(filepath.Join(dir, name, "slots"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(slots.Path("rootfs", device.SlotA), old, 0o644); err != nil {
			return err
		}
		st, err := store.Load(ctx)
		if err != nil {
			return err
		}
		st.ReleaseVersion = 1
		st.Installed["rootfs"] = device.InstalledImage{Version: "1.0.0", SecurityVersion: 1, PayloadDigest: digest(old), PayloadSize: int64(len(old)), Slot: device.SlotA}
		st.SecurityCounters["rootfs"] = 1
		if err := store.Save(ctx, st); err != nil {
			return err
		}
		if err := slots.Activate(ctx, "rootfs", device.SlotA); err != nil {
			return err
		}
	}
	return nil
}

func mustParse(env []byte) *manifest.Release {
	_, rel, err := manifest.ParseReleaseEnvelope(env)
	if err != nil {
		panic(err)
	}
	return rel
}

// release1 signs release 1 of the old image (its package is not needed:
// the image is already in slot A).
func release1(ctx context.Context, dir string, k *testkeys.Signer, old []byte) ([]byte, error) {
	env, err := manifest.NewReleaseEnvelope(&manifest.Release{Product: "bench", Version: 1, Created: now.Add(-time.Hour), Expires: now.AddDate(1, 0, 0),
		Images: []manifest.Image{{Component: "rootfs", Type: "os", Version: "1.0.0", SecurityVersion: 1, Hardware: []string{hardware},
			Package: manifest.Blob{Digest: digest([]byte("not published")), Size: 13},
			Payload: manifest.Blob{Digest: digest(old), Size: int64(len(old))}}}})
	if err != nil {
		return nil, err
	}
	if err := manifest.Sign(ctx, env, k); err != nil {
		return nil, err
	}
	return env.Marshal()
}

// agentDevices writes DIR/agent-delta and DIR/agent-full: slot files
// (slot A holding the old image for agent-delta, empty for agent-full),
// a GRUB environment with slot A booted, and agent.json.
func agentDevices(dir string, rootJSON, rel1, old []byte, newSize int) error {
	for _, name := range []string{"agent-delta", "agent-full"} {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		slotSize := int64(max(len(old), newSize)) + 1<<20
		a, b := filepath.Join(d, "rootfs-a"), filepath.Join(d, "rootfs-b")
		if name == "agent-delta" {
			if err := os.WriteFile(a, old, 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(d, "factory-release.json"), rel1, 0o644); err != nil {
				return err
			}
		}
		for _, p := range []string{a, b} {
			f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			err = f.Truncate(slotSize)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
		env, err := grubenv.New(grubenv.DefaultSize)
		if err != nil {
			return err
		}
		for _, kv := range [][2]string{{"ORDER", "A B"}, {"A_OK", "1"}, {"A_TRY", "0"}, {"B_OK", "0"}, {"B_TRY", "0"}} {
			if err := env.Set(kv[0], kv[1]); err != nil {
				return err
			}
		}
		for file, data := range map[string][]byte{"grubenv": env.Encode(), "cmdline": []byte("upkit.slot=A\n"), "root.json": rootJSON} {
			if err := os.WriteFile(filepath.Join(d, file), data, 0o644); err != nil {
				return err
			}
		}
		cfg := map[string]any{
			"hardware": hardware, "state": filepath.Join(d, "state"), "staging": filepath.Join(d, "staging"),
			"trustRoot": filepath.Join(d, "root.json"), "factoryRelease": filepath.Join(d, "factory-release.json"),
			"bootloader": map[string]any{"type": "grub", "component": "rootfs", "grubenv": filepath.Join(d, "grubenv"), "cmdline": filepath.Join(d, "cmdline")},
			"slots":      map[string]any{"rootfs": map[string]string{"a": a, "b": b}},
			"counters":   map[string]string{"type": "file"},
			"reboot":     map[string]any{"command": []string{"/bin/true"}},
		}
		data, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "agent.json"), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func run(ctx context.Context, dir, dev string) error {
	d, _, _, err := newDevice(filepath.Join(dir, dev))
	if err != nil {
		return err
	}
	env, err := os.ReadFile(filepath.Join(dir, "release", "release.json"))
	if err != nil {
		return err
	}
	start := time.Now()
	plan, err := d.CheckAndRecord(ctx, env, nil, now)
	if err != nil {
		return err
	}
	res, err := d.Install(ctx, device.NewDirSource(filepath.Join(dir, "release")), plan, now)
	if err != nil {
		return err
	}
	if err := d.Commit(ctx); err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	for _, im := range res.Images {
		fmt.Printf("%s: %s, fetched %d bytes (full package %d), slot %s, %.1fs, Go heap sys %.1f MiB, total Go sys %.1f MiB\n",
			im.Component, im.Method, im.Fetched, im.PackageSize, im.Slot, time.Since(start).Seconds(),
			float64(ms.HeapSys)/(1<<20), float64(ms.Sys)/(1<<20))
	}
	return nil
}
