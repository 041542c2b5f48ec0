package oci_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/upkit/upkit/internal/testutil/hostileregistry"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/oci"
	"github.com/upkit/upkit/spec"
)

// hostileRelease pushes the fixture to a fresh hostile registry (no attack
// yet) and attaches the late delta; it returns the registry, the reference
// and the fixture.
func hostileRelease(t *testing.T) (*hostileregistry.Server, string, *fixture) {
	t.Helper()
	s := hostileregistry.Start(t)
	f := newFixture(t, 256<<10)
	ref := s.Addr + "/fleet/gateway:42"
	if _, err := oci.Push(context.Background(), ref, f.release, testOptions(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := oci.Attach(context.Background(), ref, []oci.File{{Path: f.late, MediaType: oci.MediaTypeDelta}}, testOptions(nil)); err != nil {
		t.Fatal(err)
	}
	return s, ref, f
}

// remoteCalls are every kind of registry call upkit makes, each run with
// opts against ref.
func remoteCalls(f *fixture) map[string]func(ctx context.Context, ref string, opts *oci.Options) error {
	return map[string]func(ctx context.Context, ref string, opts *oci.Options) error{
		"manifest": func(ctx context.Context, ref string, opts *oci.Options) error {
			_, err := oci.Resolve(ctx, ref, opts)
			return err
		},
		"referrers": func(ctx context.Context, ref string, opts *oci.Options) error {
			_, err := oci.Referrers(ctx, ref, opts)
			return err
		},
		"tags": func(ctx context.Context, ref string, opts *oci.Options) error {
			_, err := oci.Tags(ctx, ref, opts)
			return err
		},
		"blob": func(ctx context.Context, ref string, opts *oci.Options) error {
			src, err := oci.NewRegistrySource(ref, opts)
			if err != nil {
				return err
			}
			d, _, err := oci.HashFile(ctx, f.pkg)
			if err != nil {
				return err
			}
			rc, err := src.Open(ctx, d, 0)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(io.Discard, rc)
			return err
		},
		"push": func(ctx context.Context, ref string, opts *oci.Options) error {
			_, err := oci.Push(ctx, strings.Replace(ref, "/fleet/gateway:42", "/fleet/other:1", 1), f.release, opts)
			return err
		},
	}
}

// TestAttackRedirectLoop: a registry answering a request with a redirect to
// itself made go-containerregistry (which lifts net/http's 10-redirect
// limit for same-host redirects) send requests forever while its memory
// grew. Every kind of call now stops after MaxRedirects with ErrRedirects,
// having sent a handful of requests.
func TestAttackRedirectLoop(t *testing.T) {
	s, ref, f := hostileRelease(t)
	match := map[string]func(r *http.Request) bool{
		"manifest":  hostileregistry.ManifestGet,
		"referrers": hostileregistry.ReferrersGet,
		"tags":      hostileregistry.TagsList,
		"blob":      hostileregistry.BlobGet,
		"push":      hostileregistry.BlobHead,
	}
	for name, call := range remoteCalls(f) {
		t.Run(name, func(t *testing.T) {
			s.SetAttack(hostileregistry.RedirectLoop(match[name]))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			opts := testOptions(nil)
			opts.Retries = -1
			err := call(ctx, ref, opts)
			if !errors.Is(err, oci.ErrRedirects) {
				t.Fatalf("got %v, want ErrRedirects", err)
			}
			// One request and MaxRedirects redirects per attacked call
			// (a push asks for two blobs at once, plus the config).
			if n := s.Attacked(); n < oci.MaxRedirects+1 || n > 4*(oci.MaxRedirects+1) {
				t.Fatalf("%d redirects answered (%d requests in all)", n, s.Requests())
			}
		})
	}
}

// TestAttackHugeManifest: manifests, referrer indexes and tag lists used to
// be read whole (up to go-containerregistry's 100 MiB) before upkit's 4 MiB
// limit applied: a 95 MiB manifest cost about 455 MB of memory. The limit
// now applies while reading: ErrTooLarge after MaxManifestSize bytes (at
// once when the Content-Length says so), and the memory allocated for the
// call stays a small multiple of the limit.
func TestAttackHugeManifest(t *testing.T) {
	s, ref, f := hostileRelease(t)
	calls := remoteCalls(f)
	const size = 95 << 20
	cases := []struct {
		name, call  string
		match       func(r *http.Request) bool
		contentType string
		prefix      string
	}{
		{"manifest", "manifest", hostileregistry.ManifestGet, "application/vnd.oci.image.manifest.v1+json", `{"schemaVersion":2,"layers":[`},
		{"referrers index", "referrers", hostileregistry.ReferrersGet, "application/vnd.oci.image.index.v1+json", `{"schemaVersion":2,"manifests":[`},
		{"tag list", "tags", hostileregistry.TagsList, "application/json", `{"name":"fleet/gateway","tags":[`},
	}
	for _, c := range cases {
		for _, withLength := range []bool{false, true} {
			name := c.name + " chunked"
			if withLength {
				name = c.name + " with Content-Length"
			}
			t.Run(name, func(t *testing.T) {
				s.SetAttack(hostileregistry.Huge(c.match, c.contentType, c.prefix, size, withLength))
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				err := calls[c.call](context.Background(), ref, testOptions(nil))
				runtime.ReadMemStats(&after)
				if !errors.Is(err, oci.ErrTooLarge) {
					t.Fatalf("got %v, want ErrTooLarge", err)
				}
				alloc := after.TotalAlloc - before.TotalAlloc
				t.Logf("allocated %.1f MiB, registry wrote %.1f MiB", float64(alloc)/(1<<20), float64(s.Served())/(1<<20))
				if alloc > 8*oci.MaxManifestSize {
					t.Fatalf("allocated %d bytes for a refused %d-byte document", alloc, size)
				}
				if s.Served() > 4*oci.MaxManifestSize {
					t.Fatalf("read %d bytes of a %d-byte document", s.Served(), size)
				}
			})
		}
	}
}

// TestAttackSlowRegistry: Options.Timeout bounds every request, redirects
// and body included: a registry that never answers, or trickles a manifest
// a byte at a time, or stalls in the middle of a blob, fails the call with
// ErrTimeout soon after the timeout. A blob that keeps coming, however
// slowly, is not cut: the clock restarts with each chunk.
func TestAttackSlowRegistry(t *testing.T) {
	s, ref, f := hostileRelease(t)
	calls := remoteCalls(f)
	const timeout = 700 * time.Millisecond
	cases := []struct {
		name, call string
		attack     hostileregistry.Attack
	}{
		{"manifest never answered", "manifest", hostileregistry.Silent(hostileregistry.ManifestGet)},
		{"manifest trickled", "manifest", hostileregistry.Trickle(hostileregistry.ManifestGet, 50*time.Millisecond)},
		{"referrers never answered", "referrers", hostileregistry.Silent(hostileregistry.ReferrersGet)},
		{"tags trickled", "tags", hostileregistry.Trickle(hostileregistry.TagsList, 50*time.Millisecond)},
		{"blob stalled midway", "blob", s.Paced(hostileregistry.BlobGet, 16<<10, 0, 100<<10, make(chan struct{}))},
		{"push never answered", "push", hostileregistry.Silent(hostileregistry.BlobHead)},
		{"redirects each just in time", "manifest", func(w http.ResponseWriter, r *http.Request) bool {
			if !hostileregistry.ManifestGet(r) {
				return false
			}
			time.Sleep(timeout / 3)
			w.Header().Set("Location", r.URL.Path+"x")
			w.WriteHeader(http.StatusFound)
			return true
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.SetAttack(c.attack)
			opts := testOptions(nil)
			opts.Retries = -1
			opts.Timeout = timeout
			start := time.Now()
			err := calls[c.call](context.Background(), ref, opts)
			took := time.Since(start)
			if !errors.Is(err, oci.ErrTimeout) {
				t.Fatalf("got %v after %v, want ErrTimeout", err, took)
			}
			if took > timeout+2*time.Second {
				t.Fatalf("took %v with a %v timeout", took, timeout)
			}
		})
	}
	t.Run("slow but steady blob", func(t *testing.T) {
		s.SetAttack(s.Paced(hostileregistry.BlobGet, 32<<10, timeout/3, 0, nil)) // 8 chunks, about 1.6 s in all
		opts := testOptions(nil)
		opts.Retries = -1
		opts.Timeout = timeout
		start := time.Now()
		if err := calls["blob"](context.Background(), ref, opts); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < 2*timeout {
			t.Fatalf("took %v: the blob was not paced", took)
		}
	})
}

// TestAttackFIFOInLayout: a FIFO in an OCI layout (on a USB stick, say) in
// place of index.json, a manifest or a blob used to block open(2) forever.
// Every reader of a layout now refuses it at once.
func TestAttackFIFOInLayout(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 64<<10)
	dir := filepath.Join(t.TempDir(), "layout")
	digest, err := oci.Push(ctx, oci.LayoutPrefix+dir+":42", f.release, nil)
	if err != nil {
		t.Fatal(err)
	}
	blob := func(d string) string { return filepath.Join(dir, "blobs", "sha256", d[7:]) }
	fifo := func(t *testing.T, p string) {
		t.Helper()
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(p)
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if w, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				w.Close() // release a reader a failing run left blocked
			}
			os.Remove(p)
			os.WriteFile(p, data, 0o644)
		})
	}
	within := func(t *testing.T, what string, fn func() error) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- fn() }()
		select {
		case err := <-done:
			if !errors.Is(err, spec.ErrNotRegular) {
				t.Fatalf("%s: got %v, want a not-a-regular-file error", what, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s blocked on a FIFO", what)
		}
	}
	t.Run("index.json", func(t *testing.T) {
		fifo(t, filepath.Join(dir, "index.json"))
		within(t, "Resolve", func() error { _, err := oci.Resolve(ctx, oci.LayoutPrefix+dir+":42", nil); return err })
	})
	t.Run("manifest", func(t *testing.T) {
		fifo(t, blob(digest))
		within(t, "Pull", func() error { _, err := oci.Pull(ctx, oci.LayoutPrefix+dir+":42", nil); return err })
	})
	t.Run("package", func(t *testing.T) {
		pkg := digestOf(t, f.pkg)
		fifo(t, blob(pkg))
		within(t, "Open", func() error { _, err := oci.NewLayoutSource(dir).Open(ctx, pkg, 0); return err })
		within(t, "FetchFile", func() error {
			return oci.FetchFile(ctx, oci.NewLayoutSource(dir), pkg, 64<<10, filepath.Join(t.TempDir(), "out"), nil)
		})
		within(t, "Copy", func() error {
			_, err := oci.Copy(ctx, oci.LayoutPrefix+dir+":42", oci.LayoutPrefix+filepath.Join(t.TempDir(), "copy")+":42", nil)
			return err
		})
	})
}

// rawManifest is a manifest to put as is.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// TestAttackCosignHugeConfig: `push --sign` appends to the existing cosign
// signature image, which makes go-containerregistry read its config blob
// whole, up to the size the registry's manifest declares. A signature
// image declaring a 64 GiB config (and serving an endless one) is now
// refused before that read.
func TestAttackCosignHugeConfig(t *testing.T) {
	s, ref, _ := hostileRelease(t)
	a, err := oci.Resolve(context.Background(), ref, testOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	configDigest := "sha256:" + strings.Repeat("c", 64)
	raw := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":68719476736,"digest":"` + configDigest + `"},"layers":[]}`)
	sigTag, err := name.NewTag(s.Addr + "/fleet/gateway:" + oci.CosignSignatureTag(a.Digest))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(sigTag, rawManifest{raw, types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
	s.SetAttack(hostileregistry.Huge(func(r *http.Request) bool {
		return hostileregistry.BlobGet(r) && strings.HasSuffix(r.URL.Path, configDigest)
	}, "application/octet-stream", "", 512<<20, false))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = oci.SignCosign(context.Background(), ref, a.Digest, testkeys.ECDSA(), testOptions(nil))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, oci.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 || s.Served() > 0 {
		t.Fatalf("allocated %d bytes, %d served from the config", alloc, s.Served())
	}
}

// TestAttackCopyHugeConfig: copying a release between registries (push
// --from) reads the artifact's config blob whole, up to the size its
// manifest declares. An artifact declaring a 64 GiB config is refused when
// resolved, before that read.
func TestAttackCopyHugeConfig(t *testing.T) {
	s, _, _ := hostileRelease(t)
	configDigest := "sha256:" + strings.Repeat("c", 64)
	raw := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"` + oci.ArtifactTypeRelease + `",` +
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","size":68719476736,"digest":"` + configDigest + `"},` +
		`"layers":[{"mediaType":"` + oci.MediaTypeRelease + `","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}]}`)
	tag, err := name.NewTag(s.Addr + "/fleet/evil:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(tag, rawManifest{raw, types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
	s.SetAttack(hostileregistry.Huge(func(r *http.Request) bool {
		return hostileregistry.BlobGet(r) && strings.HasSuffix(r.URL.Path, configDigest)
	}, "application/octet-stream", "", 512<<20, false))
	_, err = oci.Copy(context.Background(), tag.String(), s.Addr+"/fleet/copy:1", testOptions(nil))
	if !errors.Is(err, oci.ErrTooLarge) || s.Served() > 0 {
		t.Fatalf("got %v (%d bytes of config served), want ErrTooLarge", err, s.Served())
	}
}
