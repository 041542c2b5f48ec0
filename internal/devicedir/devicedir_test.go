package devicedir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/manifest"
)

func rootEnvelope(t *testing.T) []byte {
	t.Helper()
	k := testkeys.Ed25519(1)
	r := &manifest.Root{Version: 1, Expires: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), Keys: map[string]manifest.Key{},
		Roles: manifest.Roles{Root: manifest.Role{Threshold: 1}, Release: manifest.Role{Threshold: 1}}}
	if err := r.AddKey(manifest.RoleRoot, k.Public()); err != nil {
		t.Fatal(err)
	}
	if err := r.AddKey(manifest.RoleRelease, k.Public()); err != nil {
		t.Fatal(err)
	}
	env, err := manifest.NewRootEnvelope(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := manifest.Sign(context.Background(), env, k); err != nil {
		t.Fatal(err)
	}
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInitOpen(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "dev")
	if _, _, err := Open(dir, nil); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("Open before Init: %v", err)
	}
	root := rootEnvelope(t)
	_, cfg, err := Init(ctx, dir, Config{Hardware: "hw-1"}, root, time.Now())
	if err != nil || cfg.Slots != filepath.Join(dir, "slots") {
		t.Fatalf("Init: %+v, %v", cfg, err)
	}
	if _, _, err := Init(ctx, dir, Config{Hardware: "hw-1"}, root, time.Now()); !errors.Is(err, ErrExists) {
		t.Fatalf("Init twice: %v", err)
	}
	d, got, err := Open(dir, nil)
	if err != nil || got.Hardware != "hw-1" {
		t.Fatalf("Open: %+v, %v", got, err)
	}
	if st, err := d.Status(ctx); err != nil || st.RootVersion != 1 || st.Hardware != "hw-1" {
		t.Fatalf("status: %+v, %v", st, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"hardware":"x","slots":"/s","extra":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(dir, nil); err == nil || errors.Is(err, ErrNoDevice) {
		t.Fatalf("unknown member in %s: %v", ConfigFile, err)
	}
}

func TestOpenSourceDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "release.json"), []byte(`{"x":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := OpenSource(context.Background(), dir, "", nil)
	if err != nil || string(src.Envelope) != `{"x":1}` || src.Target != "" || src.Blobs == nil {
		t.Fatalf("release directory: %+v, %v", src, err)
	}
	if _, err := OpenSource(context.Background(), t.TempDir(), "", nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory without release.json: %v", err)
	}
}
