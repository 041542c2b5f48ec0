package device_test

import (
	"bytes"
	"context"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/manifest"
)

// bigImages writes an old image of oldSize random bytes to oldPath and
// writes to patch a delta (delta.Create) to a new image of newSize bytes:
// copies of the old one, each with a few bytes changed. A small old image
// keeps delta.Create (suffix array of old) fast under the race detector;
// the device still streams newSize bytes through the patch.
func bigImages(t testing.TB, oldSize, newSize int, oldPath string, patch io.Writer) (oldDigest, newDigest string) {
	t.Helper()
	old := make([]byte, oldSize)
	rand.New(rand.NewSource(42)).Read(old)
	if err := os.WriteFile(oldPath, old, 0o600); err != nil {
		t.Fatal(err)
	}
	newImg := make([]byte, 0, newSize)
	for i := 0; len(newImg) < newSize; i++ {
		n := min(oldSize, newSize-len(newImg))
		start := len(newImg)
		newImg = append(newImg, old[:n]...)
		newImg[start+(i*7919)%n] ^= 0xa5
		newImg[start+(i*104729)%n] ^= 0x3c
	}
	if _, err := delta.Create(context.Background(), old, newImg, patch, nil); err != nil {
		t.Fatal(err)
	}
	return digestOf(old), digestOf(newImg)
}

// TestMemoryFlatDeltaUpdate installs a 64 MiB image by delta and samples the
// Go heap while it runs: the peak above the baseline must stay under a
// bound that does not depend on the image size.
func TestMemoryFlatDeltaUpdate(t *testing.T) {
	const size = 64 << 20
	const bound = 16 << 20
	w := newWorld(t)
	d := w.provisioned()
	ctx := context.Background()
	if err := os.MkdirAll(filepath.Dir(d.slots.Path("rootfs", device.SlotA)), 0o700); err != nil {
		t.Fatal(err)
	}
	var patch bytes.Buffer
	const oldSize = 1 << 20
	oldDigest, newDigest := bigImages(t, oldSize, size, d.slots.Path("rootfs", device.SlotA), &patch)

	// The device runs rootfs 1.0.0 (digest oldDigest) in slot a.
	st, err := d.store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.ReleaseVersion = 1
	st.Installed["rootfs"] = device.InstalledImage{Version: "1.0.0", SecurityVersion: 1, PayloadDigest: oldDigest, PayloadSize: oldSize, Slot: device.SlotA}
	st.SecurityCounters["rootfs"] = 1
	if err := d.store.Save(ctx, st); err != nil {
		t.Fatal(err)
	}
	img := manifest.Image{Component: "rootfs", Type: "os", Version: "2.0.0", SecurityVersion: 1, Hardware: []string{hw},
		Package: manifest.Blob{Digest: digestOf([]byte("full package, not fetched")), Size: size},
		Payload: manifest.Blob{Digest: newDigest, Size: size},
		Deltas:  []manifest.Delta{{FromPayloadDigest: oldDigest, Digest: w.put(patch.Bytes()), Size: int64(patch.Len())}},
	}
	env := w.release(2, tNow, []manifest.Image{img}, 4, 5)
	patch = bytes.Buffer{}

	plan, err := d.Check(ctx, env, nil, tNow)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	res, err := d.Install(ctx, w.source(), plan, tNow)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.Images[0].Method != device.MethodDelta {
		t.Fatalf("not a delta update: %+v", res.Images[0])
	}
	grew := int64(peak.Load()) - int64(base)
	t.Logf("64 MiB delta update: heap in use grew by %.1f MiB at peak (bound %d MiB), fetched %d bytes", float64(grew)/(1<<20), bound>>20, res.Images[0].Fetched)
	if grew > bound {
		t.Fatalf("heap grew by %d bytes during a 64 MiB update, bound %d", grew, bound)
	}
	if err := d.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}
