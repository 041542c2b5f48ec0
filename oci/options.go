package oci

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Options configure registry access. The zero value (or a nil *Options) is
// ready to use: the user's docker credentials, HTTPS except on loopback, 4
// concurrent uploads, 3 retries, DefaultTimeout per request.
type Options struct {
	// Keychain resolves credentials per registry. Nil means
	// authn.DefaultKeychain: $DOCKER_CONFIG/config.json (default
	// ~/.docker/config.json), its "auths" and its credential helpers.
	Keychain authn.Keychain
	// Transport is the base HTTP transport. Nil means remote.DefaultTransport.
	// Tests wrap it to count or break requests.
	Transport http.RoundTripper
	// PlainHTTP allows plain HTTP to registries that are not on loopback
	// (127.0.0.0/8, ::1, localhost). Loopback registries may always use
	// plain HTTP; any other plain-HTTP request fails with ErrPlainHTTP
	// unless this is set.
	PlainHTTP bool
	// Jobs is the number of concurrent blob uploads (default 4).
	Jobs int
	// Retries is how many times a failed request or an interrupted blob
	// download is retried (default 3; negative means none). Retries back
	// off exponentially from Backoff.
	Retries int
	// Backoff is the delay before the first retry (default 500ms), tripled
	// for each further retry.
	Backoff time.Duration
	// Timeout bounds each request to a registry, manifests, referrers,
	// tags, tokens, pushes and blobs alike: from sending it, through its
	// redirects (at most MaxRedirects), to the last byte of the answer
	// (default DefaultTimeout; negative means none). While blob bytes flow
	// (a download's body, an upload's body) it bounds the time without
	// progress instead, so that a large blob on a slow link is not cut;
	// an interrupted blob download resumes (Retries). A request over its
	// time fails with ErrTimeout. The caller's ctx still bounds the whole.
	Timeout time.Duration
	// Progress, if set, is called from one goroutine as a push advances,
	// with bytes done and total bytes.
	Progress func(done, total int64)
}

const (
	defaultJobs    = 4
	defaultRetries = 3
	defaultBackoff = 500 * time.Millisecond
	userAgent      = "upkit"
)

// DefaultTimeout is Options.Timeout's default.
const DefaultTimeout = 5 * time.Minute

// MaxRedirects is the most redirects one registry request follows (a blob
// redirected to a CDN takes one or two); the next is ErrRedirects.
const MaxRedirects = 5

func (o *Options) orDefault() Options {
	var c Options
	if o != nil {
		c = *o
	}
	if c.Keychain == nil {
		c.Keychain = authn.DefaultKeychain
	}
	if c.Transport == nil {
		c.Transport = remote.DefaultTransport
	}
	if c.Jobs <= 0 {
		c.Jobs = defaultJobs
	}
	if c.Retries == 0 {
		c.Retries = defaultRetries
	} else if c.Retries < 0 {
		c.Retries = 0
	}
	if c.Backoff <= 0 {
		c.Backoff = defaultBackoff
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if _, ok := c.Transport.(*guard); !ok {
		c.Transport = &guard{base: c.Transport, allow: c.PlainHTTP, timeout: c.Timeout}
	}
	return c
}

// remoteOptions maps Options to go-containerregistry's remote options.
func (o Options) remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(o.Keychain),
		remote.WithTransport(o.Transport),
		remote.WithJobs(o.Jobs),
		remote.WithUserAgent(userAgent),
		remote.WithRetryBackoff(remote.Backoff{
			Duration: o.Backoff, Factor: 3, Jitter: 0.1, Steps: o.Retries + 1,
		}),
	}
}

// writeOptions are remoteOptions plus progress reporting, for remote.Write
// (which closes the progress channel when it returns). The returned wait
// must be called after remote.Write returns.
func (o Options) writeOptions(ctx context.Context) ([]remote.Option, func()) {
	ropts := o.remoteOptions(ctx)
	if o.Progress == nil {
		return ropts, func() {}
	}
	ch := make(chan v1.Update, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for u := range ch {
			if u.Error == nil {
				o.Progress(u.Complete, u.Total)
			}
		}
	}()
	// remote closes ch when the operation ends.
	return append(ropts, remote.WithProgress(ch)), func() { <-done }
}

// IsLoopback reports whether host (no port) is "localhost" or a loopback IP.
func IsLoopback(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// registryError maps go-containerregistry errors to this package's sentinels
// with a message naming the registry and what to do.
func registryError(registry, doing string, err error) error {
	if err == nil {
		return nil
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch terr.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w: %s %s: HTTP %d: log in with `docker login %s` (credentials in $DOCKER_CONFIG/config.json, default ~/.docker/config.json, or a credential helper) and check that the account may push/pull this repository: %v",
				ErrUnauthorized, doing, registry, terr.StatusCode, registry, err)
		case http.StatusNotFound:
			return fmt.Errorf("%w: %s %s: %v", ErrNotFound, doing, registry, err)
		}
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return fmt.Errorf("%w: %s %s: log in with `docker login %s` or configure a credential helper in $DOCKER_CONFIG/config.json: %v",
					ErrUnauthorized, doing, registry, registry, err)
			case transport.ManifestUnknownErrorCode, transport.BlobUnknownErrorCode, transport.NameUnknownErrorCode:
				return fmt.Errorf("%w: %s %s: %v", ErrNotFound, doing, registry, err)
			case transport.DigestInvalidErrorCode:
				return fmt.Errorf("%w: %s %s: the registry computed another digest for the uploaded bytes (a local file does not match the digest the release lists): %v",
					ErrDigestMismatch, doing, registry, err)
			}
		}
	}
	return fmt.Errorf("oci: %s %s: %w", doing, registry, err)
}
