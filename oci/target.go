package oci

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// LayoutPrefix marks a target that is an OCI image layout directory.
const LayoutPrefix = "oci:"

// Target is a parsed reference: a registry repository or an OCI image layout
// directory, optionally with a tag or a digest (never both).
type Target struct {
	// Layout is the OCI image layout directory; empty for a registry target.
	Layout string
	// Repo is the registry repository; unset for a layout target.
	Repo name.Repository
	// Tag is the tag, or "".
	Tag string
	// Digest is "sha256:<hex>", or "".
	Digest string
}

// IsLayout reports whether t is an OCI image layout directory.
func (t Target) IsLayout() bool { return t.Layout != "" }

// String returns t in the syntax ParseTarget accepts.
func (t Target) String() string {
	s := LayoutPrefix + t.Layout
	if !t.IsLayout() {
		s = t.Repo.Name()
	}
	switch {
	case t.Digest != "":
		return s + "@" + t.Digest
	case t.Tag != "":
		return s + ":" + t.Tag
	}
	return s
}

// WithDigest returns t pointing at digest instead of its tag.
func (t Target) WithDigest(digest string) Target {
	t.Tag, t.Digest = "", digest
	return t
}

// WithTag returns t pointing at tag instead of its digest.
func (t Target) WithTag(tag string) Target {
	t.Tag, t.Digest = tag, ""
	return t
}

// Registry returns the registry host[:port], or "" for a layout.
func (t Target) Registry() string {
	if t.IsLayout() {
		return ""
	}
	return t.Repo.RegistryStr()
}

// ParseTarget parses "host[:port]/repo[:tag|@digest]" or
// "oci:DIR[:tag|@digest]". A registry reference without a host means Docker
// Hub, as with docker and crane. plainHTTP marks the registry as reachable
// over plain HTTP (name.Insecure); see Options.PlainHTTP for the rule that
// is actually enforced on requests.
func ParseTarget(s string, plainHTTP bool) (Target, error) {
	if s == "" {
		return Target{}, fmt.Errorf("%w: empty reference", ErrBadReference)
	}
	rest, digest, hasDigest := strings.Cut(s, "@")
	if hasDigest {
		if err := CheckDigest(digest); err != nil {
			return Target{}, fmt.Errorf("%w (in %q)", err, s)
		}
	}
	// The tag is what follows the last ':' after the last '/' (the ':' of
	// "oci:" itself excluded), as docker and crane read references.
	tag := ""
	layout := strings.HasPrefix(rest, LayoutPrefix)
	if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') &&
		(!layout || i >= len(LayoutPrefix)) {
		tag, rest = rest[i+1:], rest[:i]
		if !validTag(tag) {
			return Target{}, fmt.Errorf("%w: tag %q in %q: want [A-Za-z0-9_][A-Za-z0-9._-]{0,127}", ErrBadReference, tag, s)
		}
	}
	if tag != "" && hasDigest {
		return Target{}, fmt.Errorf("%w: %q has both a tag and a digest", ErrBadReference, s)
	}
	if dir, ok := strings.CutPrefix(rest, LayoutPrefix); ok {
		if dir == "" {
			return Target{}, fmt.Errorf("%w: %q names no directory", ErrBadReference, s)
		}
		return Target{Layout: dir, Tag: tag, Digest: digest}, nil
	}
	var nopts []name.Option
	if plainHTTP {
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(rest, nopts...)
	if err != nil {
		return Target{}, fmt.Errorf("%w: %q: %v", ErrBadReference, s, err)
	}
	// go-containerregistry checks the length before it adds Docker Hub's
	// "library/" prefix; the full name must parse too, or a target would
	// print as a reference that no one can use.
	if _, err := name.NewRepository(repo.Name(), nopts...); err != nil {
		return Target{}, fmt.Errorf("%w: %q: as %q: %v", ErrBadReference, s, repo.Name(), err)
	}
	return Target{Repo: repo, Tag: tag, Digest: digest}, nil
}

// validTag follows the distribution spec: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func validTag(t string) bool {
	if len(t) == 0 || len(t) > 128 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}
