// Package releasetest is a small release server for the tests of device's
// backends and the agent: a trust root signed by one test key, and releases
// of image packages (and deltas) stored as blobs in a directory (an OCI
// image layout's blobs/), which device.NewDirSource serves and Publish
// pushes to a registry or an OCI image layout.
package releasetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/upkit/upkit/delta"
	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/oci"
)

// Hardware and Product are what the releases are for.
const (
	Hardware = "acme-gw-100"
	Product  = "acme-gw"
)

// Now is the clock of the tests: releases are created before it and expire
// after it.
var Now = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// Image is one component of a release.
type Image struct {
	Component       string
	Version         string
	SecurityVersion uint64
	Payload         []byte
	// DeltaFrom, if set, are payloads the release lists a delta from.
	DeltaFrom [][]byte
}

// Server is a release server.
type Server struct {
	t    testing.TB
	dir  string
	key  *testkeys.Signer
	root []byte
	now  time.Time
}

// New returns a server with its trust root, blobs in a temporary directory,
// at the clock Now.
func New(t testing.TB) *Server { return NewAt(t, Now) }

// NewAt returns a server whose releases are created shortly before now and
// expire a month after it; its trust root expires five years after now.
func NewAt(t testing.TB, now time.Time) *Server {
	now = now.UTC().Truncate(time.Second)
	t.Helper()
	k := testkeys.Ed25519(1)
	id, pub := manifest.KeyOf(k.Public())
	env, err := manifest.NewRootEnvelope(&manifest.Root{
		Version: 1, Expires: now.AddDate(5, 0, 0), Keys: map[string]manifest.Key{id: pub},
		Roles: manifest.Roles{Root: manifest.Role{KeyIDs: []string{id}, Threshold: 1}, Release: manifest.Role{KeyIDs: []string{id}, Threshold: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := manifest.Sign(context.Background(), env, k); err != nil {
		t.Fatal(err)
	}
	root, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return &Server{t: t, dir: t.TempDir(), key: k, root: root, now: now}
}

// Dir returns the directory of the blobs (an OCI image layout's blobs/
// folder is in it).
func (s *Server) Dir() string { return s.dir }

// Root returns the trust root envelope to provision devices with.
func (s *Server) Root() []byte { return s.root }

// Source returns the blobs as a device.Source.
func (s *Server) Source() device.Source { return device.NewDirSource(s.dir) }

func (s *Server) put(b []byte) string {
	sum := sha256.Sum256(b)
	d := "sha256:" + hex.EncodeToString(sum[:])
	p := filepath.Join(s.dir, "blobs", "sha256", d[7:])
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		s.t.Fatal(err)
	}
	return d
}

// Release packs the images (zstd), stores them and returns the signed
// release envelope of version (created version hours before Now).
func (s *Server) Release(version uint64, images ...Image) []byte {
	s.t.Helper()
	ctx := context.Background()
	rel := &manifest.Release{
		Product: Product, Version: version,
		Created: s.now.Add(-time.Duration(1000-version) * time.Hour), Expires: s.now.AddDate(0, 1, 0),
	}
	for _, im := range images {
		var pkg bytes.Buffer
		meta, err := imagepkg.Pack(ctx, &pkg, bytes.NewReader(im.Payload), imagepkg.PackOptions{
			Component: im.Component, Type: imagepkg.TypeOS, Version: im.Version, SecurityVersion: im.SecurityVersion,
			Hardware: []string{Hardware}, Compression: imagepkg.CompressionZstd, Concurrency: 1, TempDir: s.t.TempDir(),
		}, s.key)
		if err != nil {
			s.t.Fatal(err)
		}
		img := manifest.Image{
			Component: im.Component, Type: "os", Version: im.Version, SecurityVersion: im.SecurityVersion,
			Hardware: []string{Hardware},
			Package:  manifest.Blob{Digest: s.put(pkg.Bytes()), Size: int64(pkg.Len())},
			Payload:  manifest.Blob{Digest: meta.Payload.SHA256, Size: meta.Payload.Size},
		}
		for _, old := range im.DeltaFrom {
			var patch bytes.Buffer
			if _, err := delta.Create(ctx, old, im.Payload, &patch, nil); err != nil {
				s.t.Fatal(err)
			}
			sum := sha256.Sum256(old)
			img.Deltas = append(img.Deltas, manifest.Delta{FromPayloadDigest: "sha256:" + hex.EncodeToString(sum[:]),
				Digest: s.put(patch.Bytes()), Size: int64(patch.Len())})
		}
		rel.Images = append(rel.Images, img)
	}
	env, err := manifest.NewReleaseEnvelope(rel)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := manifest.Sign(ctx, env, s.key); err != nil {
		s.t.Fatal(err)
	}
	out, err := env.Marshal()
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// Publish pushes the release envelope env, made by Release, with its
// packages and deltas to target: a registry reference or oci:DIR:tag (an
// OCI image layout, created if missing).
func (s *Server) Publish(target string, env []byte) {
	s.t.Helper()
	_, rel, err := manifest.ParseReleaseEnvelope(env)
	if err != nil {
		s.t.Fatal(err)
	}
	files := oci.ReleaseFiles(rel)
	for i := range files {
		files[i].Path = filepath.Join(s.dir, "blobs", "sha256", files[i].Digest[7:])
		files[i].Title = files[i].Digest[7:19] + map[string]string{oci.MediaTypePackage: ".upk", oci.MediaTypeDelta: ".delta"}[files[i].MediaType]
	}
	r := oci.Release{Envelope: env, Product: rel.Product, Version: rel.Version, Created: rel.Created, Files: files}
	if _, err := oci.Push(context.Background(), target, r, nil); err != nil {
		s.t.Fatalf("publishing release %d to %s: %v", rel.Version, target, err)
	}
}
