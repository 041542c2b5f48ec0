package device_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/mcuboot"
)

const mcuSlot = 0x20000

// mcuImage signs an MCUboot image of body with key n and returns it.
func mcuImage(t *testing.T, version string, secCnt uint32, body []byte, n int) []byte {
	t.Helper()
	v, err := mcuboot.ParseVersion(version)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mcuboot.Sign(context.Background(), bytes.NewReader(body), mcuboot.Options{
		Version: v, SecurityCounter: secCnt, HeaderSize: 0x200, PadHeader: true, SlotSize: mcuSlot,
	}, key(n))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// listMCU stores an MCUboot image and returns its release entry, as
// `upkit release create --mcuboot sensor@HW=FILE` writes it.
func (w *world) listMCU(img []byte, version string, secver uint64) manifest.Image {
	w.t.Helper()
	blob := manifest.Blob{Digest: w.put(img), Size: int64(len(img))}
	return manifest.Image{Component: "sensor", Type: "firmware", Version: version, SecurityVersion: secver,
		Hardware: []string{hw}, Package: blob, Payload: blob}
}

// mcuDev is a gateway with a sensor MCU behind it (a FileSecondary).
type mcuDev struct {
	*dev
	flash string
	sec   device.Secondary
}

func (w *world) provisionedWithMCU(sec func(*device.FileSecondary) device.Secondary) *mcuDev {
	w.t.Helper()
	dir := w.t.TempDir()
	flash := filepath.Join(dir, "sensor.flash")
	fs := device.NewFileSecondary(flash, mcuSlot, nil)
	var s device.Secondary = fs
	if sec != nil {
		s = sec(fs)
	}
	store := device.NewFileStore(filepath.Join(dir, "state", "state"), nil)
	slots := device.NewFileSlots(filepath.Join(dir, "slots"), nil)
	d, err := device.New(device.Config{
		Store: store, Slots: slots, Hardware: hw, StagingDir: filepath.Join(dir, "staging"),
		Secondaries: map[string]device.Secondary{"sensor": s},
	})
	if err != nil {
		w.t.Fatal(err)
	}
	if err := d.Provision(w.ctx, w.root1(), t0); err != nil {
		w.t.Fatal(err)
	}
	return &mcuDev{dev: &dev{Device: d, dir: dir, slots: slots, store: store}, flash: flash, sec: s}
}

// flashed returns the image the simulated MCU holds (nil if none).
func (m *mcuDev) flashed(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(m.flash)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != mcuSlot {
		t.Fatalf("flash image of %d bytes, slot is %d", len(b), mcuSlot)
	}
	img, err := mcuboot.ParseSlot(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("flash holds no image: %v", err)
	}
	for i, c := range b[img.End:] {
		if c != 0xff {
			t.Fatalf("flash byte %d after the image is 0x%02x, want erased", img.End+int64(i), c)
		}
	}
	return b[:img.End]
}

// TestSecondaryUpdate installs a release with a root filesystem and a
// sensor MCU image signed by a release key: the MCU receives nothing before
// Commit, then exactly the signed image; the next release reaches it
// through a delta between the two MCUboot images.
func TestSecondaryUpdate(t *testing.T) {
	w := newWorld(t)
	m := w.provisionedWithMCU(nil)
	fw1 := payload(10, 40<<10)
	mcu1 := mcuImage(t, "1.0.0+1", 1, fw1, 4)
	rootfs := w.pack(image{component: "rootfs", typ: "os", version: "1.0.0", secver: 1, payload: payload(1, 64<<10)})
	v1 := w.release(1, t0, []manifest.Image{rootfs, w.listMCU(mcu1, "1.0.0+1", 1)}, 4, 5)
	if _, err := w.update(m.dev, v1, nil, t0); err != nil {
		t.Fatal(err)
	}
	if got := m.flashed(t); got != nil {
		t.Fatal("the MCU received its image before the update was committed")
	}
	if err := m.Commit(w.ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.flashed(t), mcu1) {
		t.Fatal("the MCU does not hold the committed image")
	}
	st := m.assertBootable(t)
	if st.SecurityCounters["sensor"] != 1 || st.Installed["sensor"].Version != "1.0.0+1" {
		t.Fatalf("state %+v", st.Installed["sensor"])
	}

	// v2: a delta between the MCUboot images (made from the image files).
	mcu2 := mcuImage(t, "1.1.0+2", 2, edit(fw1, 11), 5)
	sensor2 := w.listMCU(mcu2, "1.1.0+2", 2)
	w.addDelta(&sensor2, mcu1, mcu2)
	v2 := w.release(2, t0.Add(time.Hour), []manifest.Image{rootfs, sensor2}, 4, 5)
	res, err := w.update(m.dev, v2, nil, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 1 || res.Images[0].Method != device.MethodDelta || res.Images[0].Fetched >= int64(len(mcu2))/2 {
		t.Fatalf("install %+v, want the sensor through a small delta", res.Images)
	}
	if err := m.Commit(w.ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.flashed(t), mcu2) {
		t.Fatal("the MCU does not hold v2")
	}
	if c, _ := m.sec.SecurityCounter(w.ctx); c != 2 {
		t.Fatalf("MCU security counter %d, want 2", c)
	}
}

// TestAttackMCUImageUnknownKey: a release (validly signed by a threshold)
// lists an MCUboot image signed by a key that is not a release key of the
// root: MCUboot would not boot it, and the device refuses it before it is
// recorded.
func TestAttackMCUImageUnknownKey(t *testing.T) {
	w := newWorld(t)
	m := w.provisionedWithMCU(nil)
	img := mcuImage(t, "1.0.0", 1, payload(10, 4096), 7)
	_, err := w.update(m.dev, w.release(1, t0, []manifest.Image{w.listMCU(img, "1.0.0", 1)}, 4, 5), nil, t0)
	wantErr(t, err, device.ErrDigest, mcuboot.ErrUnknownKey)
	if err := m.Commit(w.ctx); !errors.Is(err, device.ErrNoPending) {
		t.Fatalf("commit after the refusal: %v", err)
	}
}

// TestAttackMCUImageTampered: the listed image's firmware changed after
// signing (its digest is what the release lists, its image hash is not).
func TestAttackMCUImageTampered(t *testing.T) {
	w := newWorld(t)
	m := w.provisionedWithMCU(nil)
	img := mcuImage(t, "1.0.0", 1, payload(10, 4096), 4)
	img[0x200+100] ^= 1
	_, err := w.update(m.dev, w.release(1, t0, []manifest.Image{w.listMCU(img, "1.0.0", 1)}, 4, 5), nil, t0)
	wantErr(t, err, device.ErrDigest, mcuboot.ErrHash)
}

// TestAttackMCUSecurityCounterMismatch: the image's SEC_CNT is not the
// security version the release lists (the device counter and MCUboot's
// would disagree), nor is its version.
func TestAttackMCUSecurityCounterMismatch(t *testing.T) {
	w := newWorld(t)
	m := w.provisionedWithMCU(nil)
	img := mcuImage(t, "1.0.0", 1, payload(10, 4096), 4)
	_, err := w.update(m.dev, w.release(1, t0, []manifest.Image{w.listMCU(img, "1.0.0", 5)}, 4, 5), nil, t0)
	wantErr(t, err, device.ErrNotListed)
	_, err = w.update(m.dev, w.release(2, t0.Add(time.Hour), []manifest.Image{w.listMCU(img, "1.0.1", 1)}, 4, 5), nil, t0.Add(time.Hour))
	wantErr(t, err, device.ErrNotListed)
}

// TestAttackMCUBelowSecondaryCounter: the MCU already runs an image with
// security counter 5 (flashed at the factory); a release listing security
// version 3 for it is refused at Check, before any download, as MCUboot's
// downgrade protection would refuse it at boot.
func TestAttackMCUBelowSecondaryCounter(t *testing.T) {
	w := newWorld(t)
	m := w.provisionedWithMCU(nil)
	factory := mcuImage(t, "2.0.0", 5, payload(9, 4096), 4)
	if err := m.sec.Update(w.ctx, bytes.NewReader(factory), int64(len(factory))); err != nil {
		t.Fatal(err)
	}
	img := mcuImage(t, "1.0.0", 3, payload(10, 4096), 4)
	_, err := m.Check(w.ctx, w.release(1, t0, []manifest.Image{w.listMCU(img, "1.0.0", 3)}, 4, 5), nil, t0)
	wantErr(t, err, device.ErrSecurityVersion)
	// Equal is allowed (reinstalling what the MCU runs).
	ok := mcuImage(t, "2.0.1", 5, payload(10, 4096), 4)
	w.mustCommitRelease(m.dev, w.release(2, t0.Add(time.Hour), []manifest.Image{w.listMCU(ok, "2.0.1", 5)}, 4, 5), nil, t0.Add(time.Hour))
	if !bytes.Equal(m.flashed(t), ok) {
		t.Fatal("the MCU does not hold the committed image")
	}
}

// TestAttackMCURollbackAfterCommit: once security version 2 is committed
// for the sensor, a validly signed release with security version 1 is
// refused as for any component.
func TestAttackMCURollbackAfterCommit(t *testing.T) {
	w := newWorld(t)
	m := w.provisionedWithMCU(nil)
	v2 := mcuImage(t, "2.0.0", 2, payload(10, 4096), 4)
	w.mustCommitRelease(m.dev, w.release(1, t0, []manifest.Image{w.listMCU(v2, "2.0.0", 2)}, 4, 5), nil, t0)
	v1 := mcuImage(t, "1.0.0", 1, payload(11, 4096), 4)
	_, err := w.update(m.dev, w.release(2, t0.Add(time.Hour), []manifest.Image{w.listMCU(v1, "1.0.0", 1)}, 4, 5), nil, t0.Add(time.Hour))
	wantErr(t, err, device.ErrSecurityVersion)
}

// TestSecondaryNeedsMCUbootImage: an image package listed for a component
// that is handed to an MCU is refused.
func TestSecondaryNeedsMCUbootImage(t *testing.T) {
	w := newWorld(t)
	m := w.provisionedWithMCU(nil)
	upk := w.pack(image{component: "sensor", typ: "firmware", version: "1.0.0", secver: 1, payload: payload(3, 4096)})
	_, err := m.Check(w.ctx, w.release(1, t0, []manifest.Image{upk}, 4, 5), nil, t0)
	wantErr(t, err, device.ErrNotListed)
}

// TestMCUImageWithoutSecondary: a device without a Secondary for the
// component stores and checks the MCUboot image all the same (a gateway
// that keeps the MCU's image for later).
func TestMCUImageWithoutSecondary(t *testing.T) {
	w := newWorld(t)
	d := w.provisioned()
	img := mcuImage(t, "1.0.0", 1, payload(10, 4096), 5)
	w.mustCommitRelease(d, w.release(1, t0, []manifest.Image{w.listMCU(img, "1.0.0", 1)}, 4, 5), nil, t0)
	st := d.assertBootable(t)
	if st.Installed["sensor"].PayloadDigest != digestOf(img) {
		t.Fatal("slot does not hold the image")
	}
	bad := mcuImage(t, "1.0.1", 1, payload(11, 4096), 7)
	_, err := w.update(d, w.release(2, t0.Add(time.Hour), []manifest.Image{w.listMCU(bad, "1.0.1", 1)}, 4, 5), nil, t0.Add(time.Hour))
	wantErr(t, err, device.ErrDigest, mcuboot.ErrUnknownKey)
}

// flakySecondary fails its first Update calls.
type flakySecondary struct {
	device.Secondary
	failures int
}

func (f *flakySecondary) Update(ctx context.Context, r io.ReaderAt, size int64) error {
	if f.failures > 0 {
		f.failures--
		return errors.New("link down")
	}
	return f.Secondary.Update(ctx, r, size)
}

// TestSecondaryHandOverRetried: the MCU link fails during Commit: the
// gateway's update is committed all the same (it booted and is healthy),
// Commit says the hand-over failed, and Recover hands the image over once
// the link is back. Rollback of a pending update never touches the MCU.
func TestSecondaryHandOverRetried(t *testing.T) {
	w := newWorld(t)
	flaky := &flakySecondary{failures: 2}
	m := w.provisionedWithMCU(func(fs *device.FileSecondary) device.Secondary { flaky.Secondary = fs; return flaky })
	img := mcuImage(t, "1.0.0", 1, payload(10, 4096), 4)
	if _, err := w.update(m.dev, w.release(1, t0, []manifest.Image{w.listMCU(img, "1.0.0", 1)}, 4, 5), nil, t0); err != nil {
		t.Fatal(err)
	}
	wantErr(t, m.Commit(w.ctx), device.ErrSecondary)
	if st, _ := m.store.Load(w.ctx); st.Pending != nil || st.Installed["sensor"].PayloadDigest != digestOf(img) {
		t.Fatal("the update is not committed")
	}
	wantErr(t, m.Recover(w.ctx), device.ErrSecondary)
	if m.flashed(t) != nil {
		t.Fatal("flash written by a failed hand-over")
	}
	if err := m.Recover(w.ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.flashed(t), img) {
		t.Fatal("Recover did not hand the image over")
	}
	if err := m.Recover(w.ctx); err != nil || flaky.failures != 0 {
		t.Fatal("Recover with the image in place must not hand it over again")
	}

	img2 := mcuImage(t, "1.1.0", 2, payload(11, 4096), 4)
	if _, err := w.update(m.dev, w.release(2, t0.Add(time.Hour), []manifest.Image{w.listMCU(img2, "1.1.0", 2)}, 4, 5), nil, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := m.Rollback(w.ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.flashed(t), img) {
		t.Fatal("rollback changed the MCU's image")
	}
}

// TestFileSecondaryRefusesDowngrade: the simulated MCU, like MCUboot with
// downgrade protection, refuses an image whose counter is below its own.
func TestFileSecondaryRefusesDowngrade(t *testing.T) {
	ctx := context.Background()
	s := device.NewFileSecondary(filepath.Join(t.TempDir(), "mcu.flash"), mcuSlot, nil)
	if c, err := s.SecurityCounter(ctx); err != nil || c != 0 {
		t.Fatalf("empty flash: counter %d, %v", c, err)
	}
	if h, err := s.ImageHash(ctx); err != nil || h != nil {
		t.Fatalf("empty flash: hash %x, %v", h, err)
	}
	hi, lo := mcuImage(t, "1.0.0", 4, payload(1, 1000), 4), mcuImage(t, "0.9.0", 3, payload(2, 1000), 4)
	if err := s.Update(ctx, bytes.NewReader(hi), int64(len(hi))); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, bytes.NewReader(lo), int64(len(lo))); !errors.Is(err, device.ErrSecurityVersion) {
		t.Fatalf("downgrade: %v", err)
	}
	if c, _ := s.SecurityCounter(ctx); c != 4 {
		t.Fatalf("counter %d after a refused downgrade", c)
	}
}
