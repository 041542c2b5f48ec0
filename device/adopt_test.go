package device_test

import (
	"io/fs"
	"os"
	"testing"
	"time"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/manifest"
)

// flash writes images into slot a of a provisioned device, as a factory
// does before the first boot.
func (d *dev) flash(t *testing.T, images map[string][]byte) {
	t.Helper()
	if err := os.MkdirAll(d.dir+"/slots", 0o700); err != nil {
		t.Fatal(err)
	}
	for c, b := range images {
		if err := os.WriteFile(d.slots.Path(c, device.SlotA), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAdoptFactoryImage: a device flashed with release 1 in slot a adopts
// it: the images are committed where they are, the counters advance, the
// slots are activated, and the next release comes as a delta from the
// adopted image into slot b.
func TestAdoptFactoryImage(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	d := w.provisioned()
	d.flash(t, map[string][]byte{"rootfs": r.rootfs1, "app": r.app1})

	if err := d.Adopt(w.ctx, r.v1, nil, map[string]string{"rootfs": device.SlotA, "app": device.SlotA}, t0); err != nil {
		t.Fatal(err)
	}
	st := d.assertBootable(t)
	if st.ReleaseVersion != 1 || st.SecurityCounters["rootfs"] != 1 || st.Installed["rootfs"].Slot != device.SlotA || st.Product != product || st.Pending != nil {
		t.Fatalf("after adopting: %+v", st)
	}
	// A second adoption is refused, whatever the release.
	wantErr(t, d.Adopt(w.ctx, r.v2, nil, map[string]string{"rootfs": device.SlotA, "app": device.SlotA}, t0), device.ErrProvisioned)

	res, err := w.update(d, r.v2, nil, t0.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if res.Images[0].Component != "rootfs" || res.Images[0].Method != device.MethodDelta || res.Images[0].Slot != device.SlotB {
		t.Fatalf("update after adopting: %+v", res.Images)
	}
	if err := d.Commit(w.ctx); err != nil {
		t.Fatal(err)
	}
	if st := d.assertBootable(t); st.ReleaseVersion != 2 || st.Installed["rootfs"].Slot != device.SlotB {
		t.Fatalf("after the update: %+v", st)
	}
}

// TestAdoptRefusals: Adopt changes nothing unless the slots hold exactly
// the signed images of a release the device accepts.
func TestAdoptRefusals(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.twoReleases()
	both := map[string]string{"rootfs": device.SlotA, "app": device.SlotA}
	cases := []struct {
		name  string
		flash map[string][]byte
		env   []byte
		slots map[string]string
		want  error
	}{
		{"slot holds another image", map[string][]byte{"rootfs": r.rootfs2, "app": r.app1}, r.v1, both, device.ErrDigest},
		{"slot empty", map[string][]byte{"app": r.app1}, r.v1, both, fs.ErrNotExist},
		{"component without a slot", map[string][]byte{"rootfs": r.rootfs1, "app": r.app1}, r.v1, map[string]string{"rootfs": device.SlotA}, device.ErrConfig},
		{"invalid slot", map[string][]byte{"rootfs": r.rootfs1, "app": r.app1}, r.v1, map[string]string{"rootfs": "c", "app": device.SlotA}, device.ErrConfig},
		{"signed by too few keys", map[string][]byte{"rootfs": r.rootfs1, "app": r.app1}, w.release(1, t0, r.img1, 4), both, manifest.ErrThreshold},
		{"expired", map[string][]byte{"rootfs": r.rootfs1, "app": r.app1}, r.v1, both, manifest.ErrExpired},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := w.provisioned()
			d.flash(t, c.flash)
			now := t0
			if c.name == "expired" {
				now = tExpires.Add(time.Hour)
			}
			before, err := d.Status(w.ctx)
			if err != nil {
				t.Fatal(err)
			}
			err = d.Adopt(w.ctx, c.env, nil, c.slots, now)
			if err == nil {
				t.Fatal("adopted")
			}
			wantErr(t, err, c.want)
			after, err := d.Status(w.ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(after.Components) != 0 || after.ReleaseVersion != before.ReleaseVersion || !after.NewestCreated.Equal(before.NewestCreated) {
				t.Fatalf("a refused adoption changed the state: %+v", after)
			}
		})
	}
}
