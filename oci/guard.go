package oci

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// guard is the innermost HTTP transport of every registry request this
// package makes (go-containerregistry's and its own): the requests of
// manifests, referrers, tags, tokens, pushes and blobs all pass here. It
//
//   - refuses plain HTTP to hosts that are not loopback unless allowed;
//   - refuses to follow more than MaxRedirects redirects of one request
//     (go-containerregistry lifts net/http's limit for same-host
//     redirects, so a registry redirecting to itself looped forever);
//   - bounds each exchange in time (Options.Timeout): from the request,
//     through its redirects, to the last byte of the response body. While
//     blob bytes flow (a blob download's body, a blob upload's request
//     body) the clock restarts with each chunk, so that large blobs on slow
//     links are limited by stalls, not by their size;
//   - stops reading a manifest, referrers index or tag list after
//     MaxManifestSize bytes (ErrTooLarge), whatever go-containerregistry's
//     own, larger limit, so that peak memory stays near the device's.
type guard struct {
	base    http.RoundTripper
	allow   bool          // plain HTTP to any host
	timeout time.Duration // <= 0: none
}

// exchangeKey keys the *exchange of a request's context.
type exchangeKey struct{}

// exchange is one request and the redirects that followed it.
type exchange struct {
	timeout time.Duration
	blob    bool  // the exchange carries blob data: its clock restarts as it flows
	limit   int64 // > 0: at most this many response body bytes
	what    string

	mu      sync.Mutex
	timer   *time.Timer
	cancel  context.CancelFunc // the current hop's
	expired bool
}

func (e *exchange) fire() {
	e.mu.Lock()
	e.expired = true
	cancel := e.cancel
	e.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// hop makes cancel the one to call when the exchange's time runs out.
func (e *exchange) hop(cancel context.CancelFunc) {
	e.mu.Lock()
	e.cancel = cancel
	expired := e.expired
	e.mu.Unlock()
	if expired {
		cancel()
	}
}

// progress restarts the clock of a blob exchange.
func (e *exchange) progress() {
	if e.blob && e.timer != nil {
		e.mu.Lock()
		if !e.expired {
			e.timer.Reset(e.timeout)
		}
		e.mu.Unlock()
	}
}

func (e *exchange) done() {
	if e.timer != nil {
		e.timer.Stop()
	}
}

func (e *exchange) timedOut() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.expired
}

func (e *exchange) timeoutError() error {
	return fmt.Errorf("%w: %s: no complete answer within %v", ErrTimeout, e.what, e.timeout)
}

// classify tells what the first request of an exchange is: whether it
// carries blob data, and the body limit of what it reads into memory.
func classify(r *http.Request) (blob bool, limit int64) {
	p := r.URL.Path
	switch {
	case !strings.HasPrefix(p, "/v2/"):
	case strings.Contains(p, "/blobs/uploads/"):
		return r.Method == http.MethodPatch || r.Method == http.MethodPut, 0
	case strings.Contains(p, "/blobs/"):
		return r.Method == http.MethodGet, 0
	case r.Method == http.MethodGet &&
		(strings.Contains(p, "/manifests/") || strings.Contains(p, "/referrers/") || strings.HasSuffix(p, "/tags/list")):
		return false, MaxManifestSize
	}
	return false, 0
}

func (g *guard) RoundTrip(r *http.Request) (*http.Response, error) {
	fail := func(err error) (*http.Response, error) {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	if r.URL.Scheme == "http" && !g.allow && !IsLoopback(r.URL.Hostname()) {
		return fail(fmt.Errorf("%w to %s: use HTTPS, or allow plain HTTP explicitly (--plain-http)", ErrPlainHTTP, r.URL.Host))
	}
	// net/http calls RoundTrip once per hop; a redirected request carries
	// the response that redirected it, whose request carries the one
	// before, and so on to the first, which holds the exchange.
	hops := 0
	var ex *exchange
	for prev := r.Response; prev != nil && prev.Request != nil; prev = prev.Request.Response {
		hops++
		if e, ok := prev.Request.Context().Value(exchangeKey{}).(*exchange); ok && ex == nil {
			ex = e
		}
	}
	if hops > MaxRedirects {
		return fail(fmt.Errorf("%w: %s %s: more than %d redirects", ErrRedirects, r.Method, r.URL.Redacted(), MaxRedirects))
	}
	if ex == nil {
		blob, limit := classify(r)
		ex = &exchange{timeout: g.timeout, blob: blob, limit: limit, what: r.Method + " " + r.URL.Redacted()}
		if g.timeout > 0 {
			ex.timer = time.AfterFunc(g.timeout, ex.fire)
		}
	}
	ctx, cancel := context.WithCancel(context.WithValue(r.Context(), exchangeKey{}, ex))
	ex.hop(cancel)
	r2 := r.WithContext(ctx)
	if ex.blob && r.Body != nil && r.Body != http.NoBody {
		r2.Body = &progressReader{rc: r.Body, ex: ex}
	}
	resp, err := g.base.RoundTrip(r2)
	if err != nil {
		cancel()
		ex.done()
		if ex.timedOut() {
			return nil, ex.timeoutError()
		}
		return nil, err
	}
	if ex.limit > 0 && resp.ContentLength > ex.limit && resp.StatusCode == http.StatusOK {
		resp.Body.Close()
		cancel()
		ex.done()
		return nil, fmt.Errorf("%w: %s: a body of %d bytes, at most %d read", ErrTooLarge, ex.what, resp.ContentLength, ex.limit)
	}
	redirect := resp.StatusCode >= 300 && resp.StatusCode < 400 && resp.Header.Get("Location") != ""
	resp.Body = &guardedBody{rc: resp.Body, ex: ex, cancel: cancel, redirect: redirect}
	return resp, nil
}

// progressReader is a blob upload's request body: each chunk read restarts
// the exchange's clock.
type progressReader struct {
	rc io.ReadCloser
	ex *exchange
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.rc.Read(b)
	if n > 0 {
		p.ex.progress()
	}
	return n, err
}

func (p *progressReader) Close() error { return p.rc.Close() }

// guardedBody is a response body under the exchange's clock and limit.
type guardedBody struct {
	rc       io.ReadCloser
	ex       *exchange
	cancel   context.CancelFunc
	redirect bool // the client follows it: closing it does not end the exchange
	n        int64
	once     sync.Once
}

func (b *guardedBody) Read(p []byte) (int, error) {
	limit := b.ex.limit
	if limit > 0 && b.n > limit {
		return 0, b.tooLarge()
	}
	if limit > 0 && int64(len(p)) > limit-b.n+1 {
		p = p[:limit-b.n+1]
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if n > 0 {
		b.ex.progress()
	}
	if limit > 0 && b.n > limit {
		return n, b.tooLarge()
	}
	if err != nil && err != io.EOF && b.ex.timedOut() {
		err = b.ex.timeoutError()
	}
	return n, err
}

func (b *guardedBody) tooLarge() error {
	return fmt.Errorf("%w: %s: more than %d bytes", ErrTooLarge, b.ex.what, b.ex.limit)
}

func (b *guardedBody) Close() error {
	err := b.rc.Close()
	b.once.Do(func() {
		b.cancel()
		if !b.redirect {
			b.ex.done()
		}
	})
	return err
}
