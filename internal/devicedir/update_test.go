package devicedir_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/internal/devicedir"
	"github.com/upkit/upkit/internal/testutil/releasetest"
)

// newDevice is a simulated device provisioned with srv's trust root.
func newDevice(t *testing.T, srv *releasetest.Server) *device.Device {
	t.Helper()
	dir := t.TempDir()
	d, err := device.New(device.Config{Store: device.NewFileStore(filepath.Join(dir, "state"), nil),
		Slots: device.NewFileSlots(filepath.Join(dir, "slots"), nil), Hardware: releasetest.Hardware, StagingDir: filepath.Join(dir, "staging")})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Provision(context.Background(), srv.Root(), releasetest.Now); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestOpenNewest: a USB stick's OCI image layout holding several releases
// under different tags yields the newest the device accepts; a layout
// with one tag yields it, refused or not; one with no release is an
// error.
func TestOpenNewest(t *testing.T) {
	ctx := context.Background()
	srv := releasetest.New(t)
	v1 := bytes.Repeat([]byte("v1 "), 10000)
	v2 := bytes.Repeat([]byte("v2 "), 10000)
	rel1 := srv.Release(1, releasetest.Image{Component: "rootfs", Version: "1.0.0", SecurityVersion: 1, Payload: v1})
	rel2 := srv.Release(2, releasetest.Image{Component: "rootfs", Version: "2.0.0", SecurityVersion: 2, Payload: v2, DeltaFrom: [][]byte{v1}})
	stick := filepath.Join(t.TempDir(), "stick")
	srv.Publish("oci:"+stick+":1.0.0", rel1)
	srv.Publish("oci:"+stick+":2.0.0", rel2)
	only1 := filepath.Join(t.TempDir(), "only1")
	srv.Publish("oci:"+only1+":1.0.0", rel1)

	d := newDevice(t, srv)
	for _, src := range []string{stick, "oci:" + stick} {
		s, err := devicedir.OpenNewest(ctx, d, src, "", releasetest.Now, nil)
		if err != nil || !bytes.Equal(s.Envelope, rel2) {
			t.Fatalf("%s: got %v, want release 2", src, err)
		}
	}
	s, err := devicedir.OpenNewest(ctx, d, "oci:"+stick+":1.0.0", "", releasetest.Now, nil)
	if err != nil || !bytes.Equal(s.Envelope, rel1) {
		t.Fatalf("a tag named: %v", err)
	}

	// Install release 2, then commit it: the stick's newest is the
	// committed one (nothing to do); the layout with only release 1 is
	// given back for CheckAndRecord to refuse.
	s, err = devicedir.OpenNewest(ctx, d, stick, "", releasetest.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	plan, note, err := devicedir.Plan(ctx, d, s, nil, releasetest.Now, false, nil)
	if err != nil || note != "" || plan.ReleaseVersion != 2 || plan.Images[0].Method != device.MethodFull {
		t.Fatalf("plan: %+v, %q, %v", plan, note, err)
	}
	if _, err := d.Install(ctx, s.Blobs, plan, releasetest.Now); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	s, err = devicedir.OpenNewest(ctx, d, stick, "", releasetest.Now, nil)
	if err != nil || !bytes.Equal(s.Envelope, rel2) {
		t.Fatalf("after the commit: %v", err)
	}
	if _, _, err := devicedir.Plan(ctx, d, s, nil, releasetest.Now, false, nil); !errors.Is(err, device.ErrNothingToDo) {
		t.Fatalf("plan of the committed release: %v", err)
	}
	s, err = devicedir.OpenNewest(ctx, d, only1, "", releasetest.Now, nil)
	if err != nil || !bytes.Equal(s.Envelope, rel1) {
		t.Fatalf("a layout with one older release: %v", err)
	}
	if _, _, err := devicedir.Plan(ctx, d, s, nil, releasetest.Now, false, nil); !errors.Is(err, device.ErrRollback) {
		t.Fatalf("plan of release 1 after 2: %v", err)
	}
	if _, err := devicedir.OpenNewest(ctx, d, t.TempDir(), "", releasetest.Now, nil); err == nil {
		t.Fatal("an empty folder gave a source")
	}
}
