package spec

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The checks below return errors that say what is wrong without naming a
// field: callers wrap them with their own sentinel and the field's name
// (imagepkg.ErrMetadata, manifest.ErrMalformed, ...).

// CheckName checks a product, component or image type name: 1 to
// MaxNameLength bytes of [a-z0-9._-], starting with a letter or digit,
// without "..". Names are safe as file names: a device keeps component
// slots in files, and the release tools refuse exactly what it refuses.
func CheckName(s string) error {
	if err := checkLength(s, MaxNameLength); err != nil {
		return err
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-') {
			continue
		}
		return fmt.Errorf("%.80q: want [a-z0-9][a-z0-9._-]{0,63}", s)
	}
	if strings.Contains(s, "..") {
		return fmt.Errorf("%.80q: \"..\" is not allowed in a name", s)
	}
	return nil
}

// CheckHardware checks a hardware name: 1 to MaxNameLength bytes of
// [A-Za-z0-9._:+-], starting with a letter or digit.
func CheckHardware(s string) error {
	if err := checkLength(s, MaxNameLength); err != nil {
		return err
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum || i > 0 && strings.IndexByte("._:+-", c) >= 0 {
			continue
		}
		return fmt.Errorf("%.80q: want a letter or digit, then letters, digits or ._:+-", s)
	}
	return nil
}

func checkLength(s string, max int) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > max {
		return fmt.Errorf("%d bytes, limit %d", len(s), max)
	}
	return nil
}

// CheckSemver checks a Semantic Versioning 2.0.0 version of at most
// MaxVersionLength bytes: MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], numeric
// identifiers without leading zeros, MAJOR, MINOR and PATCH below 2^64,
// no "v" prefix.
func CheckSemver(s string) error {
	if err := checkLength(s, MaxVersionLength); err != nil {
		return err
	}
	bad := func(why string) error {
		return fmt.Errorf("%.80q is not a semantic version MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] (%s)", s, why)
	}
	rest, build, hasBuild := strings.Cut(s, "+")
	core, pre, hasPre := strings.Cut(rest, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return bad("want MAJOR.MINOR.PATCH")
	}
	for _, p := range parts {
		if !isNumericID(p) {
			return bad("MAJOR, MINOR and PATCH are numbers without leading zeros")
		}
		if _, err := strconv.ParseUint(p, 10, 64); err != nil {
			return bad("MAJOR, MINOR and PATCH must be below 2^64")
		}
	}
	if hasPre {
		if why := semverIdents(pre, true); why != "" {
			return bad("pre-release: " + why)
		}
	}
	if hasBuild {
		if why := semverIdents(build, false); why != "" {
			return bad("build: " + why)
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
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return "only letters, digits and - in identifiers"
			}
		}
		if noLeadingZero && isDigits(id) && !isNumericID(id) {
			return "numeric identifier with a leading zero"
		}
	}
	return ""
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// isNumericID: digits without a leading zero ("0" itself is fine).
func isNumericID(s string) bool {
	return isDigits(s) && (s == "0" || s[0] != '0')
}

// TimeLayout is the only timestamp form in upkit documents: RFC 3339, UTC,
// whole seconds ("2026-01-02T15:04:05Z").
const TimeLayout = "2006-01-02T15:04:05Z"

// FormatTime writes t in UTC as TimeLayout.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// ParseTime accepts exactly the form FormatTime writes; the time is in UTC.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(TimeLayout, s)
	if err != nil || t.Format(TimeLayout) != s {
		return time.Time{}, fmt.Errorf("%.80q: want an RFC 3339 UTC time like 2026-01-02T15:04:05Z", s)
	}
	return t, nil
}

// CheckTime checks that t can be written in a document: set, whole
// seconds, years 1970 to 9999.
func CheckTime(t time.Time) error {
	if t.IsZero() {
		return errors.New("not set")
	}
	if y := t.UTC().Year(); y < 1970 || y > 9999 {
		return fmt.Errorf("year %d outside 1970..9999", y)
	}
	if t.Nanosecond() != 0 {
		return fmt.Errorf("%s is not a whole second", t.UTC().Format(time.RFC3339Nano))
	}
	return nil
}
