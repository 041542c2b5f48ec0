package manifest

import (
	"fmt"
	"strings"
	"time"
)

// timeLayout is the only timestamp form in upkit documents: RFC 3339, UTC,
// whole seconds.
const timeLayout = "2006-01-02T15:04:05Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// parseTime accepts exactly the form formatTime writes.
func parseTime(field, s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil || t.Format(timeLayout) != s {
		return time.Time{}, fmt.Errorf("%w: %s %q: want an RFC 3339 UTC time like 2026-01-02T15:04:05Z", ErrMalformed, field, s)
	}
	return t, nil
}

// checkTime checks that t can be written: not zero, whole seconds, years
// 1970 to 9999.
func checkTime(field string, t time.Time) error {
	if t.IsZero() || t.Year() < 1970 || t.Year() > 9999 {
		return fmt.Errorf("%w: %s must be set (years 1970 to 9999)", ErrMalformed, field)
	}
	if t.Nanosecond() != 0 {
		return fmt.Errorf("%w: %s %s has fractions of a second", ErrMalformed, field, t.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// expired reports whether a document expiring at expires is expired at now:
// now is strictly after expires.
func expired(expires, now time.Time) bool { return now.After(expires) }

// checkName checks product, component and type names: 1 to MaxNameLength
// bytes of [a-z0-9._-], starting with a letter or digit (the component rule
// of imagepkg).
func checkName(field, s string) error {
	if s == "" || len(s) > MaxNameLength {
		return fmt.Errorf("%w: %s must be 1 to %d bytes", ErrMalformed, field, MaxNameLength)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-') {
			continue
		}
		return fmt.Errorf("%w: %s %q: want [a-z0-9][a-z0-9._-]*", ErrMalformed, field, s)
	}
	return nil
}

// checkHardware checks a hardware name: 1 to MaxNameLength bytes of
// [A-Za-z0-9._:+-], starting with a letter or digit (imagepkg's rule).
func checkHardware(field, s string) error {
	if s == "" || len(s) > MaxNameLength {
		return fmt.Errorf("%w: %s must be 1 to %d bytes", ErrMalformed, field, MaxNameLength)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum || i > 0 && strings.IndexByte("._:+-", c) >= 0 {
			continue
		}
		return fmt.Errorf("%w: %s %q: want [A-Za-z0-9][A-Za-z0-9._:+-]*", ErrMalformed, field, s)
	}
	return nil
}

// checkDigest checks a "sha256:<64 lowercase hex>" digest.
func checkDigest(field, d string) error {
	const prefix = "sha256:"
	ok := len(d) == len(prefix)+64 && strings.HasPrefix(d, prefix)
	for i := len(prefix); ok && i < len(d); i++ {
		c := d[i]
		ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'f'
	}
	if !ok {
		return fmt.Errorf("%w: %s %.80q: want sha256:<64 lowercase hex digits>", ErrMalformed, field, d)
	}
	return nil
}

// isKeyID reports whether id has the form of an upkit key ID: 64 lowercase
// hex digits.
func isKeyID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// checkSemver checks a Semantic Versioning 2.0.0 version:
// MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], numeric identifiers without
// leading zeros, at most MaxVersionLength bytes.
func checkSemver(field, v string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: %s %.80q is not a semantic version (%s)", ErrMalformed, field, v, why)
	}
	if v == "" || len(v) > MaxVersionLength {
		return bad(fmt.Sprintf("must be 1 to %d bytes", MaxVersionLength))
	}
	rest := v
	if i := strings.IndexByte(rest, '+'); i >= 0 {
		if err := semverIdents(rest[i+1:], false); err != "" {
			return bad("build: " + err)
		}
		rest = rest[:i]
	}
	if i := strings.IndexByte(rest, '-'); i >= 0 {
		if err := semverIdents(rest[i+1:], true); err != "" {
			return bad("pre-release: " + err)
		}
		rest = rest[:i]
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return bad("want MAJOR.MINOR.PATCH")
	}
	for _, p := range parts {
		if p == "" || len(p) > 1 && p[0] == '0' || strings.Trim(p, "0123456789") != "" {
			return bad("MAJOR, MINOR and PATCH are numbers without leading zeros")
		}
	}
	return nil
}

// semverIdents checks dot-separated identifiers; it returns "" when valid.
func semverIdents(s string, noLeadingZero bool) string {
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return "empty identifier"
		}
		numeric := true
		for i := 0; i < len(id); i++ {
			c := id[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-':
				numeric = false
			default:
				return "only letters, digits and - in identifiers"
			}
		}
		if noLeadingZero && numeric && len(id) > 1 && id[0] == '0' {
			return "numeric identifier with a leading zero"
		}
	}
	return ""
}
