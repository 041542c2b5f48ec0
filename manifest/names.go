package manifest

import (
	"fmt"
	"time"

	"github.com/upkit/upkit/spec"
)

// The field rules are spec's, shared with imagepkg and the device; these
// wrap their errors with ErrMalformed and the field they are about.

func checkName(field, s string) error     { return malformed(field, spec.CheckName(s)) }
func checkHardware(field, s string) error { return malformed(field, spec.CheckHardware(s)) }
func checkDigest(field, d string) error   { return malformed(field, spec.CheckDigest(d)) }
func checkSemver(field, v string) error   { return malformed(field, spec.CheckSemver(v)) }
func checkTime(field string, t time.Time) error {
	return malformed(field, spec.CheckTime(t))
}

// parseTime accepts exactly the form spec.FormatTime writes.
func parseTime(field, s string) (time.Time, error) {
	t, err := spec.ParseTime(s)
	return t, malformed(field, err)
}

func formatTime(t time.Time) string { return spec.FormatTime(t) }

func malformed(field string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %s: %v", ErrMalformed, field, err)
}

// checkExpiry returns ErrExpired if a document (what) expiring at expires
// is expired at now: now is strictly after expires.
func checkExpiry(what string, expires, now time.Time) error {
	if !now.After(expires) {
		return nil
	}
	return fmt.Errorf("%w: %s expired at %s (reference time %s)", ErrExpired, what, formatTime(expires), now.UTC().Format(time.RFC3339))
}
