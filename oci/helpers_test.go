package oci_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/upkit/upkit/oci"
)

// fixture is a release on disk: an envelope and two files.
type fixture struct {
	dir      string
	envelope []byte
	pkg      string // path of the package
	delta    string // path of a delta listed in the release
	late     string // path of a delta attached later
	release  oci.Release
}

// randomFile writes n deterministic pseudo-random bytes.
func randomFile(t testing.TB, path string, n int, seed uint64) string {
	t.Helper()
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 'u', 'p', 'k'})
	_, _ = r.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func newFixture(t testing.TB, pkgSize int) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir}
	f.envelope = []byte(`{"payloadType":"application/vnd.upkit.release.v1+json","payload":"eyJ4IjoxfQ==","signatures":[{"keyid":"k","sig":"c2ln"}]}`)
	f.pkg = randomFile(t, filepath.Join(dir, "rootfs-2.0.0.upk"), pkgSize, 1)
	f.delta = randomFile(t, filepath.Join(dir, "rootfs-1.9.0-2.0.0.delta"), 64<<10, 2)
	f.late = randomFile(t, filepath.Join(dir, "rootfs-1.8.0-2.0.0.delta"), 32<<10, 3)
	f.release = oci.Release{
		Envelope: f.envelope,
		Product:  "gateway",
		Version:  42,
		Created:  time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC),
		Files: []oci.File{
			{Path: f.pkg, MediaType: oci.MediaTypePackage, Annotations: map[string]string{oci.AnnotationComponent: "rootfs"}},
			{Path: f.delta, MediaType: oci.MediaTypeDelta, Annotations: map[string]string{oci.AnnotationComponent: "rootfs"}},
		},
	}
	return f
}

func digestOf(t testing.TB, path string) string {
	t.Helper()
	d, _, err := oci.HashFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// countingTransport counts requests by "METHOD kind" where kind is
// "upload" (POST/PATCH/PUT under /blobs/uploads/), "blob", "manifest",
// "referrers" or "other".
type countingTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
	urls []string
}

func newCounting() *countingTransport {
	return &countingTransport{base: http.DefaultTransport, n: map[string]int{}}
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	kind := "other"
	switch p := r.URL.Path; {
	case strings.Contains(p, "/blobs/uploads/"):
		kind = "upload"
	case strings.Contains(p, "/blobs/"):
		kind = "blob"
	case strings.Contains(p, "/manifests/"):
		kind = "manifest"
	case strings.Contains(p, "/referrers/"):
		kind = "referrers"
	}
	c.mu.Lock()
	c.n[r.Method+" "+kind]++
	c.urls = append(c.urls, r.Method+" "+r.URL.RequestURI())
	c.mu.Unlock()
	return c.base.RoundTrip(r)
}

func (c *countingTransport) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

func (c *countingTransport) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n = map[string]int{}
	c.urls = nil
}

func (c *countingTransport) requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.urls...)
}

// faultProxy is a loopback HTTP proxy in front of a real registry that
// injects faults into blob downloads (GET /v2/.../blobs/sha256:...).
type faultProxy struct {
	upstream string
	addr     string

	// Faults, set before use.
	cutAfter  int64       // cut the first blob GET after this many body bytes (0: never)
	corrupt   bool        // flip one byte in every blob GET body
	fail5xx   int32       // answer the first n blob GETs with 503
	denyAll   int         // answer every request with this status (401/403)
	ignoreRng atomic.Bool // answer Range requests with the full blob (200)

	cut     atomic.Bool
	mu      sync.Mutex
	ranges  []string
	blobGet int
}

func newFaultProxy(t testing.TB, upstream string) *faultProxy {
	t.Helper()
	p := &faultProxy{upstream: upstream}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	p.addr = l.Addr().String()
	return p
}

func isBlobGet(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:")
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.denyAll != 0 {
		w.Header().Set("WWW-Authenticate", `Basic realm="upkit-test"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(p.denyAll)
		_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return
	}
	blob := isBlobGet(r)
	if blob {
		p.mu.Lock()
		p.blobGet++
		p.ranges = append(p.ranges, r.Header.Get("Range"))
		p.mu.Unlock()
		if atomic.AddInt32(&p.fail5xx, -1) >= 0 {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.upstream+r.URL.RequestURI(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	if blob && p.ignoreRng.Load() {
		out.Header.Del("Range")
	}
	out.ContentLength = r.ContentLength
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		if strings.EqualFold(k, "Location") {
			v = []string{strings.Replace(v[0], p.upstream, p.addr, 1)}
		}
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if !blob || resp.StatusCode >= 300 {
		_, _ = io.Copy(w, resp.Body)
		return
	}
	body := io.Reader(resp.Body)
	if p.corrupt {
		body = &flipReader{r: resp.Body}
	}
	if p.cutAfter > 0 && p.cut.CompareAndSwap(false, true) {
		_, _ = io.CopyN(w, body, p.cutAfter)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	_, _ = io.Copy(w, body)
}

func (p *faultProxy) rangeHeaders() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.ranges...)
}

// flipReader flips the 100th byte of the stream.
type flipReader struct {
	r io.Reader
	n int64
}

func (f *flipReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if f.n <= 100 && f.n+int64(n) > 100 {
		b[100-f.n] ^= 0xff
	}
	f.n += int64(n)
	return n, err
}

// anonymous is a keychain with no credentials, so tests never read the
// developer's docker config.
type anonymous struct{}

func (anonymous) Resolve(authn.Resource) (authn.Authenticator, error) { return authn.Anonymous, nil }

func testOptions(tr http.RoundTripper) *oci.Options {
	return &oci.Options{Keychain: anonymous{}, Transport: tr, Backoff: 5 * time.Millisecond}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sameFile(t testing.TB, got, want string) {
	t.Helper()
	if !bytes.Equal(readFile(t, got), readFile(t, want)) {
		t.Fatalf("%s differs from %s", got, want)
	}
}
