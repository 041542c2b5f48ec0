// Package hostileregistry serves a real OCI registry (go-containerregistry's
// in-process one) on loopback, in front of which a test makes chosen
// requests hostile: redirect loops, endless or huge bodies, stalls. It is
// the registry of the attack tests of the oci package and the CLI.
package hostileregistry

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Attack answers a request instead of the registry when it returns true.
type Attack func(w http.ResponseWriter, r *http.Request) bool

// Server is the registry and its attack.
type Server struct {
	// Addr is host:port on loopback (plain HTTP).
	Addr string

	upstream http.Handler
	mu       sync.Mutex
	attack   Attack
	requests atomic.Int64
	attacked atomic.Int64
	served   atomic.Int64
}

// Start serves a new, empty registry until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{upstream: registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true))}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	s.Addr = l.Addr().String()
	return s
}

// SetAttack makes a hostile (nil: none) and resets the counters.
func (s *Server) SetAttack(a Attack) {
	s.mu.Lock()
	s.attack = a
	s.mu.Unlock()
	s.requests.Store(0)
	s.attacked.Store(0)
	s.served.Store(0)
}

// Requests is the number of requests since SetAttack; Attacked of those
// the attack answered; Served the body bytes the attacks wrote.
func (s *Server) Requests() int64 { return s.requests.Load() }
func (s *Server) Attacked() int64 { return s.attacked.Load() }
func (s *Server) Served() int64   { return s.served.Load() }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	a := s.attack
	s.mu.Unlock()
	if a != nil {
		cw := &countingWriter{ResponseWriter: w, n: &s.served}
		if a(cw, r) {
			s.attacked.Add(1)
			return
		}
	}
	s.upstream.ServeHTTP(w, r)
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Request matchers.
var (
	ManifestGet = func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/")
	}
	ReferrersGet = func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/referrers/")
	}
	TagsList = func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/tags/list") }
	BlobGet  = func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:")
	}
	// BlobHead is what a push asks first for every blob.
	BlobHead = func(r *http.Request) bool {
		return r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/sha256:")
	}
	// NotPing is every request but GET /v2/.
	NotPing = func(r *http.Request) bool { return r.URL.Path != "/v2/" }
)

// RedirectLoop answers matching requests with a redirect to themselves.
func RedirectLoop(match func(*http.Request) bool) Attack {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !match(r) {
			return false
		}
		w.Header().Set("Location", r.URL.RequestURI())
		w.WriteHeader(http.StatusTemporaryRedirect)
		return true
	}
}

// Huge answers matching requests with 200 and size bytes of JSON-looking
// data (an array of objects after prefix), with a Content-Length when
// withLength, else chunked.
func Huge(match func(*http.Request) bool, contentType, prefix string, size int64, withLength bool) Attack {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !match(r) {
			return false
		}
		w.Header().Set("Content-Type", contentType)
		if withLength {
			w.Header().Set("Content-Length", fmt.Sprint(size))
		}
		w.WriteHeader(http.StatusOK)
		chunk := bytes.Repeat([]byte(`{"mediaType":"x","size":1},`), 2500)
		written, _ := w.Write([]byte(prefix))
		for n := int64(written); n < size; {
			c := chunk
			if rest := size - n; rest < int64(len(c)) {
				c = c[:rest]
			}
			k, err := w.Write(c)
			n += int64(k)
			if err != nil {
				return true
			}
		}
		return true
	}
}

// Trickle answers matching requests with 200 and then one byte every
// every, until the client goes away.
func Trickle(match func(*http.Request) bool, every time.Duration) Attack {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !match(r) {
			return false
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.WriteHeader(http.StatusOK)
		for {
			if _, err := w.Write([]byte(" ")); err != nil {
				return true
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return true
			case <-time.After(every):
			}
		}
	}
}

// Silent never answers matching requests (until the client goes away).
func Silent(match func(*http.Request) bool) Attack {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !match(r) {
			return false
		}
		<-r.Context().Done()
		return true
	}
}

// Paced serves matching requests from the registry, but writes the body in
// chunks of chunk bytes, every apart; after holdAfter bytes (when hold is
// not nil) it waits until hold is closed, or the client goes away, before
// going on. A hold that never closes is a stall.
func (s *Server) Paced(match func(*http.Request) bool, chunk int, every time.Duration, holdAfter int64, hold <-chan struct{}) Attack {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !match(r) {
			return false
		}
		rec := &recorder{header: http.Header{}, code: http.StatusOK}
		s.upstream.ServeHTTP(rec, r)
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.code)
		body := rec.body.Bytes()
		held := hold == nil
		for off := 0; off < len(body); {
			if !held && int64(off) >= holdAfter {
				held = true
				w.(http.Flusher).Flush()
				select {
				case <-hold:
				case <-r.Context().Done():
					return true
				}
			}
			end := min(off+chunk, len(body))
			if !held && int64(end) > holdAfter {
				end = int(holdAfter)
			}
			if _, err := w.Write(body[off:end]); err != nil {
				return true
			}
			w.(http.Flusher).Flush()
			off = end
			if every > 0 && off < len(body) {
				select {
				case <-time.After(every):
				case <-r.Context().Done():
					return true
				}
			}
		}
		return true
	}
}

// recorder captures the registry's answer.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }
