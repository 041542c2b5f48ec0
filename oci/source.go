package oci

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/upkit/upkit/spec"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Source opens a blob by digest at a byte offset. It is the fetch interface
// the device package declares; RegistrySource and LayoutSource implement it.
//
// When offset is 0 the returned reader verifies the blob while streaming:
// at the end it returns ErrDigestMismatch instead of io.EOF if the bytes do
// not hash to digest. From an offset > 0 it cannot (it has not seen the
// prefix): the caller must hash the prefix it already holds and check the
// whole blob, as FetchFile does.
type Source interface {
	Open(ctx context.Context, digest string, offset int64) (io.ReadCloser, error)
}

// rawOpener is implemented by this package's sources: Open without digest
// verification, for FetchFile, which hashes everything itself.
type rawOpener interface {
	openRaw(ctx context.Context, digest string, offset int64) (io.ReadCloser, error)
}

// RegistrySource reads blobs of one repository over the OCI distribution
// API, with credentials from Options.Keychain. A download interrupted by a
// connection reset, a truncated body or a retryable status (408, 429, 5xx)
// is resumed with an HTTP Range request from the last byte received, up to
// Options.Retries times per Open with exponential backoff.
type RegistrySource struct {
	t    Target
	opts Options

	mu     sync.Mutex
	client *http.Client
}

// NewRegistrySource returns a Source for the repository of ref
// ("host[:port]/repo", any tag or digest is ignored). No request is made
// until the first Open.
func NewRegistrySource(ref string, opts *Options) (*RegistrySource, error) {
	o := opts.orDefault()
	t, err := ParseTarget(ref, o.PlainHTTP)
	if err != nil {
		return nil, err
	}
	if t.IsLayout() {
		return nil, fmt.Errorf("%w: %q is a layout; use NewLayoutSource", ErrBadReference, ref)
	}
	return &RegistrySource{t: t, opts: o}, nil
}

// httpClient returns an authenticated client for pulls from the repository,
// created (token exchange included) on first use.
func (s *RegistrySource) httpClient(ctx context.Context) (*http.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client, nil
	}
	repo := s.t.Repo
	auth, err := authn.Resolve(ctx, s.opts.Keychain, repo)
	if err != nil {
		return nil, fmt.Errorf("oci: credentials for %s: %w", repo.RegistryStr(), err)
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, s.opts.Transport,
		[]string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, registryError(repo.RegistryStr(), "connecting to", err)
	}
	s.client = &http.Client{Transport: rt}
	return s.client, nil
}

// Open implements Source.
func (s *RegistrySource) Open(ctx context.Context, digest string, offset int64) (io.ReadCloser, error) {
	rc, err := s.openRaw(ctx, digest, offset)
	if err != nil || offset != 0 {
		return rc, err
	}
	r := rc.(*rangeReader)
	if r.total < 0 {
		return rc, nil // unreachable: every successful response has a size
	}
	return newVerifyReader(rc, digest, r.total, s.t.Repo.Name()+"@"+digest), nil
}

func (s *RegistrySource) openRaw(ctx context.Context, digest string, offset int64) (io.ReadCloser, error) {
	if err := CheckDigest(digest); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("oci: negative offset %d", offset)
	}
	r := &rangeReader{s: s, ctx: ctx, digest: digest, pos: offset, total: -1}
	if err := r.connect(); err != nil {
		return nil, err
	}
	return r, nil
}

// rangeReader reads one blob, reconnecting with Range from pos after a
// broken connection.
type rangeReader struct {
	s       *RegistrySource
	ctx     context.Context
	digest  string
	pos     int64 // next byte offset to return
	total   int64 // blob size, -1 until known
	body    io.ReadCloser
	retries int // retries used so far
}

// retryable reports whether a failed read or request is worth retrying.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || err == nil {
		return false
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch terr.StatusCode {
		case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return !errors.Is(err, ErrDigestMismatch) && !errors.Is(err, ErrSizeMismatch) &&
		!errors.Is(err, ErrNotFound) && !errors.Is(err, ErrUnauthorized) && !errors.Is(err, ErrPlainHTTP) &&
		!errors.Is(err, ErrRedirects) && !errors.Is(err, ErrTooLarge)
}

// backoff sleeps before retry number n (1-based), or returns ctx's error.
func backoff(ctx context.Context, base time.Duration, n int) error {
	d := base
	for i := 1; i < n && d < time.Minute; i++ {
		d *= 3
	}
	d += time.Duration(rand.Int64N(int64(d)/10 + 1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// connect issues GET (with Range from pos) until it gets a usable response
// or runs out of retries.
func (r *rangeReader) connect() error {
	for {
		err := r.get()
		if err == nil {
			return nil
		}
		if !retryable(r.ctx, err) || r.retries >= r.s.opts.Retries {
			return err
		}
		r.retries++
		if berr := backoff(r.ctx, r.s.opts.Backoff, r.retries); berr != nil {
			return berr
		}
	}
}

func (r *rangeReader) get() error {
	client, err := r.s.httpClient(r.ctx)
	if err != nil {
		return err
	}
	repo := r.s.t.Repo
	u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(),
		Path: fmt.Sprintf("/v2/%s/blobs/%s", repo.RepositoryStr(), r.digest)}
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if r.pos > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(r.pos, 10)+"-")
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("oci: GET %s: %w", u.Redacted(), err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if resp.ContentLength < 0 {
			resp.Body.Close()
			return fmt.Errorf("oci: GET %s: no Content-Length", u.Redacted())
		}
		r.total = resp.ContentLength
		if r.pos > 0 { // the server ignored Range: skip what we already have
			if r.pos > r.total {
				resp.Body.Close()
				return fmt.Errorf("%w: offset %d beyond the %d-byte blob %s", ErrSizeMismatch, r.pos, r.total, r.digest)
			}
			if _, err := io.CopyN(io.Discard, resp.Body, r.pos); err != nil {
				resp.Body.Close()
				return fmt.Errorf("oci: skipping to offset %d of %s: %w", r.pos, r.digest, err)
			}
		}
	case resp.StatusCode == http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != r.pos {
			resp.Body.Close()
			return fmt.Errorf("oci: GET %s: asked for bytes from %d, got Content-Range %q",
				u.Redacted(), r.pos, resp.Header.Get("Content-Range"))
		}
		r.total = total
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && r.total >= 0 && r.pos == r.total:
		resp.Body.Close()
		r.body = http.NoBody
		return nil
	default:
		err := transport.CheckError(resp, http.StatusOK, http.StatusPartialContent)
		resp.Body.Close()
		return registryError(repo.RegistryStr(), "fetching blob "+r.digest+" from", err)
	}
	r.body = resp.Body
	return nil
}

// parseContentRange parses "bytes START-END/TOTAL".
func parseContentRange(v string) (start, total int64, ok bool) {
	v, ok = strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, false
	}
	rng, tot, ok := strings.Cut(v, "/")
	if !ok {
		return 0, 0, false
	}
	s, e, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(s, 10, 64)
	end, err2 := strconv.ParseInt(e, 10, 64)
	total, err3 := strconv.ParseInt(tot, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || start < 0 || end < start || end >= total {
		return 0, 0, false
	}
	return start, total, true
}

func (r *rangeReader) Read(p []byte) (int, error) {
	for {
		if r.body == nil {
			if err := r.connect(); err != nil {
				return 0, err
			}
		}
		rem := r.total - r.pos
		if rem <= 0 {
			return 0, io.EOF
		}
		if len(p) == 0 {
			return 0, nil
		}
		if int64(len(p)) > rem {
			p = p[:rem]
		}
		n, err := r.body.Read(p)
		r.pos += int64(n)
		if err == nil || (err == io.EOF && r.pos == r.total) {
			if err == io.EOF && n > 0 {
				err = nil // report EOF on the next call
			}
			return n, err
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // connection closed before the blob's end
		}
		r.body.Close()
		r.body = nil
		if !retryable(r.ctx, err) || r.retries >= r.s.opts.Retries {
			return n, fmt.Errorf("oci: reading blob %s at byte %d: %w", r.digest, r.pos, err)
		}
		r.retries++
		if n > 0 {
			return n, nil // reconnect on the next call
		}
		if berr := backoff(r.ctx, r.s.opts.Backoff, r.retries); berr != nil {
			return 0, berr
		}
	}
}

func (r *rangeReader) Close() error {
	if r.body != nil {
		err := r.body.Close()
		r.body = nil
		return err
	}
	return nil
}

// LayoutSource reads blobs from an OCI image layout directory.
type LayoutSource struct {
	dir string
}

// NewLayoutSource returns a Source reading dir/blobs/sha256/<hex>. dir may
// be given with or without the "oci:" prefix.
func NewLayoutSource(dir string) *LayoutSource {
	return &LayoutSource{dir: strings.TrimPrefix(dir, LayoutPrefix)}
}

// Open implements Source.
func (s *LayoutSource) Open(ctx context.Context, digest string, offset int64) (io.ReadCloser, error) {
	f, err := s.open(digest, offset)
	if err != nil || offset != 0 {
		return f, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return newVerifyReader(f, digest, fi.Size(), filepath.Join(s.dir, "blobs", "sha256", digest[7:])), nil
}

func (s *LayoutSource) openRaw(_ context.Context, digest string, offset int64) (io.ReadCloser, error) {
	return s.open(digest, offset)
}

func (s *LayoutSource) open(digest string, offset int64) (*os.File, error) {
	if err := CheckDigest(digest); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("oci: negative offset %d", offset)
	}
	p := filepath.Join(s.dir, "blobs", "sha256", digest[7:])
	f, err := spec.OpenRegular(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: blob %s in layout %s", ErrNotFound, digest, s.dir)
	} else if err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("oci: %w", err)
	}
	return f, nil
}

// copyBufferSize is the buffer FetchFile copies through: large enough that
// per-call overhead (hashing, write syscalls) stays small next to the data.
const copyBufferSize = 1 << 20

// PartialSuffix ends the name of a download in progress: FetchFile keeps
// it as ".<hex of the digest>.partial" next to its target, and resumes
// from it. Named by digest, two blobs' partial files never collide, and no
// target name (a release's names end in .upk or .delta) can be one.
const PartialSuffix = ".partial"

// PartialPath is the partial download FetchFile keeps for the blob digest
// fetched to path.
func PartialPath(path, digest string) string {
	return filepath.Join(filepath.Dir(path), "."+strings.TrimPrefix(digest, spec.DigestPrefix)+PartialSuffix)
}

// FetchFile downloads the blob digest of exactly size bytes from src to
// path, a file that must not exist. It writes PartialPath(path, digest) in
// the same directory and resumes from it if it exists (from an earlier,
// interrupted call): the bytes already there are hashed first, so the
// whole blob is verified end to end. On success the file is fsynced and
// moved to path, unless path appeared meanwhile (ErrExists: it is never
// replaced). If the blob is longer or shorter than size (ErrSizeMismatch)
// or hashes to another digest (ErrDigestMismatch), the partial file is
// removed and path is not touched; after other errors (network, ctx) it is
// kept for the next call.
//
// progress, if not nil, is called with the number of bytes held so far.
// Retries of interrupted reads happen inside src (RegistrySource) and,
// for other sources, up to 3 re-opens from the current offset.
func FetchFile(ctx context.Context, src Source, digest string, size int64, path string, progress func(done int64)) (err error) {
	if err := CheckDigest(digest); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("%w: negative size %d", ErrSizeMismatch, size)
	}
	part := PartialPath(path, digest)
	f, h, have, err := openPartial(ctx, part, size)
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil && !keep {
			os.Remove(part)
		}
	}()
	if progress != nil {
		progress(have)
	}
	if keep, err = download(ctx, src, digest, size, have, f, h, progress); err != nil {
		return err
	}
	// Exactly size bytes; nothing more must follow, which download
	// already checked when the last copy ended cleanly.
	if got := spec.HashDigest(h).String(); got != digest {
		return fmt.Errorf("%w: downloaded blob hashes to %s, want %s", ErrDigestMismatch, got, digest)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	err = f.Close()
	if f = nil; err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	if err := renameNoReplace(part, path); err != nil {
		keep = errors.Is(err, ErrExists) // the download is good: keep it
		return err
	}
	return nil
}

// openPartial opens (or creates) the partial file of a download of size
// bytes and hashes what an earlier attempt left in it (a partial file
// longer than size is emptied; ctx stops the hashing). It returns the file
// positioned after those bytes, their hash and their count. A symlink or
// any other non-regular entry at the name is removed first and never
// followed or waited on (O_NOFOLLOW, O_NONBLOCK, then fstat).
func openPartial(ctx context.Context, part string, size int64) (*os.File, hash.Hash, int64, error) {
	if fi, err := os.Lstat(part); err == nil && !fi.Mode().IsRegular() {
		// Never write through a symlink (or into a device) left at our name.
		if err := os.Remove(part); err != nil {
			return nil, nil, 0, fmt.Errorf("oci: %s is not a regular file: %w", part, err)
		}
	}
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE|oNoFollow|oNonBlock, 0o644)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("oci: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, 0, fmt.Errorf("oci: %s is not a regular file", part)
	}
	h := sha256.New()
	have, err := io.Copy(h, ctxReader{ctx, f})
	if err == nil && have > size {
		h.Reset()
		have = 0
		if err = f.Truncate(0); err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
	}
	if err != nil {
		f.Close()
		os.Remove(part)
		return nil, nil, 0, fmt.Errorf("oci: reading %s: %w", part, err)
	}
	return f, h, have, nil
}

// download appends the blob from offset have to f, hashing into h, until
// size bytes are held. Retries of interrupted reads happen inside src
// (RegistrySource) and, for other sources, up to 3 re-opens from the
// current offset. On error, keep says whether the partial file is worth
// keeping for a later resume (network trouble, ctx) or not (the blob is
// not what was asked for).
func download(ctx context.Context, src Source, digest string, size, have int64, f *os.File, h hash.Hash, progress func(int64)) (keep bool, err error) {
	open := src.Open
	if ro, ok := src.(rawOpener); ok {
		open = ro.openRaw
	}
	const reopens = 3
	buf := make([]byte, copyBufferSize)
	for attempt := 0; have < size; attempt++ {
		rc, oerr := open(ctx, digest, have)
		if oerr != nil {
			return retryable(ctx, oerr) || ctx.Err() != nil, oerr
		}
		w := io.MultiWriter(f, h)
		if progress != nil {
			w = &progressWriter{w: w, n: have, fn: progress}
		}
		n, cerr := io.CopyBuffer(w, io.LimitReader(rc, size-have+1), buf)
		rc.Close()
		have += n
		if have > size {
			return false, fmt.Errorf("%w: blob %s is longer than %d bytes", ErrSizeMismatch, digest, size)
		}
		if cerr == nil && have < size {
			return false, fmt.Errorf("%w: blob %s has %d bytes, want %d", ErrSizeMismatch, digest, have, size)
		}
		if cerr != nil {
			if errors.Is(cerr, ErrDigestMismatch) || errors.Is(cerr, ErrSizeMismatch) {
				return false, cerr
			}
			var perr *os.PathError
			if errors.As(cerr, &perr) || !retryable(ctx, cerr) || attempt >= reopens {
				return ctx.Err() != nil || retryable(ctx, cerr), cerr
			}
		}
	}
	return false, nil
}

type progressWriter struct {
	w  io.Writer
	n  int64
	fn func(int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	p.fn(p.n)
	return n, err
}
