package oci_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/upkit/upkit/internal/testutil/registrytest"
	"github.com/upkit/upkit/oci"
)

// eachRegistry runs fn against a fresh real registry of every flavor.
func eachRegistry(t *testing.T, fn func(t *testing.T, flavor, addr string)) {
	for _, flavor := range registrytest.Flavors() {
		t.Run(flavor, func(t *testing.T) {
			t.Parallel()
			fn(t, flavor, registrytest.Start(t, flavor))
		})
	}
}

func TestPushPullRoundTrip(t *testing.T) {
	eachRegistry(t, func(t *testing.T, flavor, addr string) {
		ctx := context.Background()
		f := newFixture(t, 3<<20+17)
		opts := testOptions(nil)
		ref := addr + "/fleet/gateway:42"
		digest, err := oci.Push(ctx, ref, f.release, opts)
		if err != nil {
			t.Fatal(err)
		}
		if oci.CheckDigest(digest) != nil {
			t.Fatalf("Push returned %q", digest)
		}

		rel, err := oci.Pull(ctx, ref, opts)
		if err != nil {
			t.Fatal(err)
		}
		if rel.Digest != digest || rel.ArtifactType != oci.ArtifactTypeRelease {
			t.Fatalf("pulled %s (%s), pushed %s", rel.Digest, rel.ArtifactType, digest)
		}
		if string(rel.Envelope) != string(f.envelope) {
			t.Fatalf("envelope changed: %q", rel.Envelope)
		}
		if got := rel.Annotations[oci.AnnotationVersion]; got != "42" {
			t.Errorf("version annotation %q", got)
		}
		if got := rel.Annotations[oci.AnnotationCreated]; got != "2026-11-01T12:00:00Z" {
			t.Errorf("created annotation %q", got)
		}
		titles := []string{}
		for _, b := range rel.Layers {
			titles = append(titles, b.Title)
		}
		if want := []string{"release.json", "rootfs-2.0.0.upk", "rootfs-1.9.0-2.0.0.delta"}; !slices.Equal(titles, want) {
			t.Fatalf("titles %v, want %v", titles, want)
		}

		// Fetch every file back by digest.
		src, err := oci.NewSource(ref, opts)
		if err != nil {
			t.Fatal(err)
		}
		out := t.TempDir()
		for i, local := range []string{f.pkg, f.delta} {
			b := rel.Layers[i+1]
			dst := filepath.Join(out, b.Title)
			if err := oci.FetchFile(ctx, src, b.Digest, b.Size, dst, nil); err != nil {
				t.Fatal(err)
			}
			sameFile(t, dst, local)
		}

		// By digest too.
		a, err := oci.Resolve(ctx, addr+"/fleet/gateway@"+digest, opts)
		if err != nil || a.Digest != digest {
			t.Fatalf("resolve by digest: %v, %v", a, err)
		}

		// crane reads what upkit pushed: the manifest and each blob.
		raw, err := crane.Manifest(ref)
		if err != nil {
			t.Fatalf("crane manifest: %v", err)
		}
		var m v1.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		if m.ArtifactType != oci.ArtifactTypeRelease || m.Config.MediaType != oci.MediaTypeEmpty ||
			m.Config.Size != 2 || len(m.Layers) != 3 || m.Layers[1].MediaType != oci.MediaTypePackage {
			t.Fatalf("crane sees manifest %s", raw)
		}
		l, err := crane.PullLayer(addr + "/fleet/gateway@" + m.Layers[1].Digest.String())
		if err != nil {
			t.Fatalf("crane blob: %v", err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(got) != string(readFile(t, f.pkg)) {
			t.Fatalf("crane blob differs (%v)", err)
		}
		cfg, err := crane.Config(ref)
		if err != nil || string(cfg) != "{}" {
			t.Fatalf("crane config %q, %v", cfg, err)
		}

		tags, err := oci.Tags(ctx, addr+"/fleet/gateway", opts)
		if err != nil || !slices.Equal(tags, []string{"42"}) {
			t.Fatalf("tags %v, %v", tags, err)
		}
	})
}

func TestPushTwiceUploadsNothingNew(t *testing.T) {
	eachRegistry(t, func(t *testing.T, flavor, addr string) {
		ctx := context.Background()
		f := newFixture(t, 1<<20)
		ct := newCounting()
		opts := testOptions(ct)
		ref := addr + "/fleet/gateway:42"
		d1, err := oci.Push(ctx, ref, f.release, opts)
		if err != nil {
			t.Fatal(err)
		}
		// Envelope, package, delta and the empty config: 4 blob uploads.
		if got := ct.count("POST upload"); got != 4 {
			t.Fatalf("first push started %d uploads, want 4: %v", got, ct.requests())
		}
		ct.reset()
		d2, err := oci.Push(ctx, ref, f.release, opts)
		if err != nil {
			t.Fatal(err)
		}
		if d1 != d2 {
			t.Fatalf("digests differ: %s then %s", d1, d2)
		}
		for _, k := range []string{"POST upload", "PATCH upload", "PUT upload", "PUT manifest"} {
			if n := ct.count(k); n != 0 {
				t.Errorf("second push: %d × %s: %v", n, k, ct.requests())
			}
		}
		// The same release under another tag: still no blob upload.
		ct.reset()
		if _, err := oci.Push(ctx, addr+"/fleet/gateway:latest", f.release, opts); err != nil {
			t.Fatal(err)
		}
		if n := ct.count("POST upload"); n != 0 {
			t.Errorf("retag uploaded %d blobs", n)
		}
		if n := ct.count("PUT manifest"); n != 1 {
			t.Errorf("retag: %d manifest PUTs, want 1", n)
		}
	})
}

func TestAttachDeltasAsReferrers(t *testing.T) {
	eachRegistry(t, func(t *testing.T, flavor, addr string) {
		ctx := context.Background()
		f := newFixture(t, 256<<10)
		opts := testOptions(nil)
		ref := addr + "/fleet/gateway:42"
		relDigest, err := oci.Push(ctx, ref, f.release, opts)
		if err != nil {
			t.Fatal(err)
		}
		late := []oci.File{{Path: f.late, MediaType: oci.MediaTypeDelta,
			Annotations: map[string]string{oci.AnnotationComponent: "rootfs", oci.AnnotationDeltaFrom: "sha256:" + strings.Repeat("ab", 32)}}}
		refDigest, err := oci.Attach(ctx, ref, late, opts)
		if err != nil {
			t.Fatal(err)
		}
		// Attaching the same file again changes nothing.
		if again, err := oci.Attach(ctx, ref, late, opts); err != nil || again != refDigest {
			t.Fatalf("attach again: %s, %v", again, err)
		}
		// The signed release is unchanged.
		if a, err := oci.Resolve(ctx, ref, opts); err != nil || a.Digest != relDigest {
			t.Fatalf("release moved: %v %v", a, err)
		}

		refs, err := oci.Referrers(ctx, ref, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) != 1 || refs[0].Digest != refDigest || refs[0].Subject != relDigest ||
			len(refs[0].Layers) != 1 || refs[0].Layers[0].Title != filepath.Base(f.late) {
			t.Fatalf("referrers: %+v", refs)
		}
		src, _ := oci.NewSource(ref, opts)
		dst := filepath.Join(t.TempDir(), "d")
		if err := oci.FetchFile(ctx, src, refs[0].Layers[0].Digest, refs[0].Layers[0].Size, dst, nil); err != nil {
			t.Fatal(err)
		}
		sameFile(t, dst, f.late)

		// How the registry stored it: the referrers API on olareg, the
		// "sha256-<hex>" fallback tag on distribution.
		fallback := strings.Replace(relDigest, ":", "-", 1)
		tags, err := crane.ListTags(addr + "/fleet/gateway")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + addr + "/v2/fleet/gateway/referrers/" + relDigest)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch flavor {
		case registrytest.OLAReg:
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), refDigest) {
				t.Fatalf("olareg referrers API: %s %s", resp.Status, body)
			}
			if slices.Contains(tags, fallback) {
				t.Errorf("fallback tag written although the registry has the referrers API")
			}
		case registrytest.Distribution:
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("distribution answered the referrers API: %s", resp.Status)
			}
			if !slices.Contains(tags, fallback) {
				t.Fatalf("no fallback tag %s in %v", fallback, tags)
			}
			idx, err := crane.Manifest(addr + "/fleet/gateway:" + fallback)
			if err != nil || !strings.Contains(string(idx), refDigest) {
				t.Fatalf("fallback index %s, %v", idx, err)
			}
		}
		// Neither helper tag is listed as a release.
		if tags, err := oci.Tags(ctx, addr+"/fleet/gateway", opts); err != nil || !slices.Equal(tags, []string{"42"}) {
			t.Fatalf("Tags: %v, %v", tags, err)
		}
	})
}

func TestResumeAfterConnectionCut(t *testing.T) {
	eachRegistry(t, func(t *testing.T, flavor, addr string) {
		ctx := context.Background()
		f := newFixture(t, 2<<20)
		opts := testOptions(nil)
		ref := addr + "/fleet/gateway:42"
		if _, err := oci.Push(ctx, ref, f.release, opts); err != nil {
			t.Fatal(err)
		}
		want := digestOf(t, f.pkg)

		p := newFaultProxy(t, addr)
		p.cutAfter = 700_000
		src, err := oci.NewRegistrySource(p.addr+"/fleet/gateway", opts)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(t.TempDir(), "pkg.upk")
		if err := oci.FetchFile(ctx, src, want, 2<<20, dst, nil); err != nil {
			t.Fatal(err)
		}
		sameFile(t, dst, f.pkg)
		if got := p.rangeHeaders(); !slices.Equal(got, []string{"", "bytes=700000-"}) {
			t.Fatalf("Range headers %q, want a resume from byte 700000", got)
		}

		// A registry (or CDN) that ignores Range: the reader skips ahead.
		p.cut.Store(false)
		p.ignoreRng.Store(true)
		dst2 := filepath.Join(t.TempDir(), "pkg.upk")
		if err := oci.FetchFile(ctx, src, want, 2<<20, dst2, nil); err != nil {
			t.Fatal(err)
		}
		sameFile(t, dst2, f.pkg)
		p.ignoreRng.Store(false)

		// A partial file from an earlier run: resumed with Range from its end.
		dst3 := filepath.Join(t.TempDir(), "pkg.upk")
		if err := os.WriteFile(oci.PartialPath(dst3, want), readFile(t, f.pkg)[:1000000], 0o644); err != nil {
			t.Fatal(err)
		}
		before := len(p.rangeHeaders())
		if err := oci.FetchFile(ctx, src, want, 2<<20, dst3, nil); err != nil {
			t.Fatal(err)
		}
		sameFile(t, dst3, f.pkg)
		if got := p.rangeHeaders()[before:]; !slices.Equal(got, []string{"bytes=1000000-"}) {
			t.Fatalf("resuming a partial file sent Range %q", got)
		}

		// Open from offset 0 verifies too, across the cut.
		p.cut.Store(false)
		rc, err := src.Open(ctx, want, 0)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(b) != string(readFile(t, f.pkg)) {
			t.Fatalf("Open across a cut: %d bytes, %v", len(b), err)
		}
	})
}

func TestRetryOn5xx(t *testing.T) {
	addr := registrytest.Start(t, registrytest.Distribution)
	ctx := context.Background()
	f := newFixture(t, 100<<10)
	opts := testOptions(nil)
	if _, err := oci.Push(ctx, addr+"/r:1", f.release, opts); err != nil {
		t.Fatal(err)
	}
	p := newFaultProxy(t, addr)
	p.fail5xx = 2
	src, _ := oci.NewRegistrySource(p.addr+"/r", opts)
	dst := filepath.Join(t.TempDir(), "x")
	if err := oci.FetchFile(ctx, src, digestOf(t, f.pkg), 100<<10, dst, nil); err != nil {
		t.Fatal(err)
	}
	sameFile(t, dst, f.pkg)

	// More failures than retries: an error, no file.
	p.fail5xx = 10
	dst2 := filepath.Join(t.TempDir(), "y")
	err := oci.FetchFile(ctx, src, digestOf(t, f.pkg), 100<<10, dst2, nil)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("after 10 × 503: %v", err)
	}
	if _, err := os.Stat(dst2); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("target written after failure: %v", err)
	}
}

func TestWrongBytesFromRegistry(t *testing.T) {
	eachRegistry(t, func(t *testing.T, flavor, addr string) {
		ctx := context.Background()
		f := newFixture(t, 300<<10)
		opts := testOptions(nil)
		if _, err := oci.Push(ctx, addr+"/fleet/gateway:42", f.release, opts); err != nil {
			t.Fatal(err)
		}
		p := newFaultProxy(t, addr)
		p.corrupt = true
		src, _ := oci.NewRegistrySource(p.addr+"/fleet/gateway", opts)
		want := digestOf(t, f.pkg)
		dst := filepath.Join(t.TempDir(), "pkg.upk")
		err := oci.FetchFile(ctx, src, want, 300<<10, dst, nil)
		if !errors.Is(err, oci.ErrDigestMismatch) {
			t.Fatalf("FetchFile of corrupted bytes: %v", err)
		}
		for _, p := range []string{dst, oci.PartialPath(dst, want)} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s exists after a digest mismatch", p)
			}
		}
		rc, err := src.Open(ctx, want, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(rc)
		rc.Close()
		if !errors.Is(err, oci.ErrDigestMismatch) {
			t.Fatalf("Open+ReadAll of corrupted bytes: %v", err)
		}
		// Pull checks the envelope's digest as well.
		if _, err := oci.Pull(ctx, p.addr+"/fleet/gateway:42", opts); !errors.Is(err, oci.ErrDigestMismatch) {
			t.Fatalf("Pull with a corrupted envelope: %v", err)
		}
	})
}

func TestUnauthorizedNamesRegistryAndFix(t *testing.T) {
	addr := registrytest.Start(t, registrytest.Distribution)
	ctx := context.Background()
	f := newFixture(t, 1024)
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		p := newFaultProxy(t, addr)
		p.denyAll = status
		opts := testOptions(nil)
		_, perr := oci.Push(ctx, p.addr+"/fleet/gateway:42", f.release, opts)
		_, gerr := oci.Pull(ctx, p.addr+"/fleet/gateway:42", opts)
		src, _ := oci.NewRegistrySource(p.addr+"/fleet/gateway", opts)
		ferr := oci.FetchFile(ctx, src, digestOf(t, f.pkg), 1024, filepath.Join(t.TempDir(), "x"), nil)
		for _, err := range []error{perr, gerr, ferr} {
			if !errors.Is(err, oci.ErrUnauthorized) {
				t.Fatalf("HTTP %d: %v", status, err)
			}
			for _, want := range []string{p.addr, "docker login " + p.addr, "config.json"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("HTTP %d: error %q does not mention %q", status, err, want)
				}
			}
		}
	}
}

func TestTagOfSomethingElse(t *testing.T) {
	eachRegistry(t, func(t *testing.T, flavor, addr string) {
		ctx := context.Background()
		img, err := random.Image(512, 2)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(addr + "/fleet/gateway:container")
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		opts := testOptions(nil)
		_, err = oci.Pull(ctx, ref.String(), opts)
		if !errors.Is(err, oci.ErrNotRelease) || !strings.Contains(err.Error(), "artifactType "+oci.ArtifactTypeRelease) {
			t.Fatalf("pulling a container image: %v", err)
		}
		_, err = oci.Resolve(ctx, addr+"/fleet/gateway:missing", opts)
		if !errors.Is(err, oci.ErrNotFound) {
			t.Fatalf("missing tag: %v", err)
		}
	})
}

func TestCopyMountsAcrossRepositories(t *testing.T) {
	addr := registrytest.Start(t, registrytest.Distribution)
	ctx := context.Background()
	f := newFixture(t, 512<<10)
	ct := newCounting()
	opts := testOptions(ct)
	d, err := oci.Push(ctx, addr+"/staging/gateway:42", f.release, opts)
	if err != nil {
		t.Fatal(err)
	}
	ct.reset()
	d2, err := oci.Copy(ctx, addr+"/staging/gateway:42", addr+"/prod/gateway:42", opts)
	if err != nil {
		t.Fatal(err)
	}
	if d2 != d {
		t.Fatalf("copy changed the digest: %s -> %s", d, d2)
	}
	mounts := 0
	for _, r := range ct.requests() {
		if strings.HasPrefix(r, "POST ") && strings.Contains(r, "mount=") && strings.Contains(r, "from=staging") {
			mounts++
		}
	}
	if mounts != 4 || ct.count("PATCH upload") != 0 || ct.count("PUT upload") != 0 {
		t.Fatalf("want 4 mounts and no uploads, got %d mounts: %v", mounts, ct.requests())
	}
	if _, err := oci.Pull(ctx, addr+"/prod/gateway:42", opts); err != nil {
		t.Fatal(err)
	}
}

// refusingTransport records the URLs it is asked for and fails them all.
type refusingTransport struct{ seen []string }

func (r *refusingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.seen = append(r.seen, req.URL.Scheme+"://"+req.URL.Host)
	return nil, errors.New("refusingTransport")
}

func TestPlainHTTPOnlyOnLoopbackOrWhenAsked(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		ref       string
		plainHTTP bool
		wantHTTP  bool
	}{
		{"10.1.2.3:5000/fleet/gw:1", false, false}, // RFC 1918: ggcr would try http; upkit refuses
		{"10.1.2.3:5000/fleet/gw:1", true, true},
		{"registry.example:5000/fleet/gw:1", true, true},
		{"127.0.0.1:5000/fleet/gw:1", false, true},
		{"localhost:5000/fleet/gw:1", false, true},
	} {
		rt := &refusingTransport{}
		opts := &oci.Options{Keychain: anonymous{}, Transport: rt, Retries: -1, PlainHTTP: tc.plainHTTP}
		_, err := oci.Resolve(ctx, tc.ref, opts)
		if err == nil {
			t.Fatalf("%s: no error", tc.ref)
		}
		sawHTTP := slices.ContainsFunc(rt.seen, func(u string) bool { return strings.HasPrefix(u, "http://") })
		if sawHTTP != tc.wantHTTP {
			t.Errorf("%s plainHTTP=%v: requests %v (err %v)", tc.ref, tc.plainHTTP, rt.seen, err)
		}
	}
	for _, h := range []string{"127.0.0.1", "localhost", "::1", "[::1]", "127.5.6.7"} {
		if !oci.IsLoopback(h) {
			t.Errorf("%s not loopback", h)
		}
	}
	for _, h := range []string{"10.0.0.1", "192.168.1.1", "example.com", "localhost.example.com", ""} {
		if oci.IsLoopback(h) {
			t.Errorf("%s loopback", h)
		}
	}
}

// A local file that does not match the digest the release lists: the
// registry refuses the upload and the push fails with ErrDigestMismatch;
// nothing is tagged.
func TestPushWrongFileRefusedByRegistry(t *testing.T) {
	eachRegistry(t, func(t *testing.T, flavor, addr string) {
		ctx := context.Background()
		f := newFixture(t, 100<<10)
		r := f.release
		r.Files = slices.Clone(r.Files)
		r.Files[0].Digest = "sha256:" + strings.Repeat("5a", 32)
		_, err := oci.Push(ctx, addr+"/fleet/gateway:42", r, testOptions(nil))
		if !errors.Is(err, oci.ErrDigestMismatch) {
			t.Fatalf("push of a mismatching file: %v", err)
		}
		if _, err := oci.Resolve(ctx, addr+"/fleet/gateway:42", testOptions(nil)); !errors.Is(err, oci.ErrNotFound) {
			t.Fatalf("tag exists after a failed push: %v", err)
		}
	})
}

// TestCredentialsFromDockerConfig runs against a distribution registry with
// htpasswd authentication: without credentials every operation fails with
// ErrUnauthorized naming the registry and `docker login`; with the
// credentials in $DOCKER_CONFIG/config.json (what `docker login` writes),
// the default keychain finds them and push, pull and blob fetches work.
func TestCredentialsFromDockerConfig(t *testing.T) {
	addr := registrytest.StartWithAuth(t, registrytest.Distribution, "ci", "s3cret")
	ctx := context.Background()
	f := newFixture(t, 64<<10)
	ref := addr + "/fleet/gateway:42"
	opts := &oci.Options{Backoff: 5 * time.Millisecond} // default keychain

	cfg := t.TempDir()
	t.Setenv("DOCKER_CONFIG", cfg)
	_, err := oci.Push(ctx, ref, f.release, opts)
	if !errors.Is(err, oci.ErrUnauthorized) || !strings.Contains(err.Error(), "docker login "+addr) {
		t.Fatalf("push without credentials: %v", err)
	}

	auth := base64.StdEncoding.EncodeToString([]byte("ci:s3cret"))
	if err := os.WriteFile(filepath.Join(cfg, "config.json"),
		[]byte(`{"auths":{"`+addr+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	digest, err := oci.Push(ctx, ref, f.release, opts)
	if err != nil {
		t.Fatalf("push with credentials: %v", err)
	}
	rel, err := oci.Pull(ctx, ref, opts)
	if err != nil || rel.Digest != digest {
		t.Fatalf("pull with credentials: %v", err)
	}
	dst := filepath.Join(t.TempDir(), "pkg")
	if err := oci.FetchFile(ctx, rel.Source, rel.Layers[1].Digest, rel.Layers[1].Size, dst, nil); err != nil {
		t.Fatal(err)
	}
	sameFile(t, dst, f.pkg)

	// Wrong password: refused, and said so.
	bad := base64.StdEncoding.EncodeToString([]byte("ci:wrong"))
	if err := os.WriteFile(filepath.Join(cfg, "config.json"),
		[]byte(`{"auths":{"`+addr+`":{"auth":"`+bad+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := oci.Pull(ctx, ref, opts); !errors.Is(err, oci.ErrUnauthorized) {
		t.Fatalf("pull with a wrong password: %v", err)
	}
}
