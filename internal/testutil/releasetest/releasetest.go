// Package releasetest is a small release server for the tests of device's
// backends: a trust root signed by one test key, and releases of image
// packages stored as blobs in a directory (an OCI image layout's blobs/),
// which device.NewDirSource serves.
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

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/manifest"
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
}

// Server is a release server.
type Server struct {
	t    testing.TB
	dir  string
	key  *testkeys.Signer
	root []byte
}

// New returns a server with its trust root, blobs in a temporary directory.
func New(t testing.TB) *Server {
	t.Helper()
	k := testkeys.Ed25519(1)
	id, pub := manifest.KeyOf(k.Public())
	env, err := manifest.NewRootEnvelope(&manifest.Root{
		Version: 1, Expires: Now.AddDate(5, 0, 0), Keys: map[string]manifest.Key{id: pub},
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
	return &Server{t: t, dir: t.TempDir(), key: k, root: root}
}

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
		Created: Now.Add(-time.Duration(1000-version) * time.Hour), Expires: Now.AddDate(0, 1, 0),
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
		rel.Images = append(rel.Images, manifest.Image{
			Component: im.Component, Type: "os", Version: im.Version, SecurityVersion: im.SecurityVersion,
			Hardware: []string{Hardware},
			Package:  manifest.Blob{Digest: s.put(pkg.Bytes()), Size: int64(pkg.Len())},
			Payload:  manifest.Blob{Digest: meta.Payload.SHA256, Size: meta.Payload.Size},
		})
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
