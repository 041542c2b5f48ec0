package spec_test

import (
	"strings"
	"testing"
	"time"

	"github.com/upkit/upkit/spec"
)

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		s          string
		name, hard bool
	}{
		{"rootfs", true, true},
		{"a", true, true},
		{"0", true, true},
		{"app-2.x_y", true, true},
		{strings.Repeat("a", 64), true, true},
		{strings.Repeat("a", 65), false, false},
		{"", false, false},
		{"RootFS", false, true},
		{"-rootfs", false, false},
		{".hidden", false, false},
		{"rpi4:rev+2", false, true},
		{"a/b", false, false},
		{"a b", false, false},
		{"é", false, false},
		{"a..b", false, true}, // no slot file name may hold ".." (hardware names are no file names)
		{"a.b.c", true, true},
	} {
		if err := spec.CheckName(tc.s); (err == nil) != tc.name {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tc.s, err, tc.name)
		}
		if err := spec.CheckHardware(tc.s); (err == nil) != tc.hard {
			t.Errorf("CheckHardware(%q) = %v, want ok=%v", tc.s, err, tc.hard)
		}
	}
}

func TestSemver(t *testing.T) {
	good := []string{"0.0.0", "1.2.3", "10.20.30", "1.0.0-rc.1", "1.0.0-0.3.7", "1.0.0-x-y.z", "1.0.0+build.01", "1.0.0-alpha+001"}
	bad := []string{"", "v1.2.3", "1.2.18446744073709551616", "18446744073709551616.0.0-rc.1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.3-", "1.2.3-01", "1.2.3+", "1.2.3+a..b",
		"1.2.3-a_b", "1.2.-3", "1.2.3-" + strings.Repeat("a", 130), " 1.2.3"}
	for _, v := range good {
		if err := spec.CheckSemver(v); err != nil {
			t.Errorf("%q refused: %v", v, err)
		}
	}
	for _, v := range bad {
		if err := spec.CheckSemver(v); err == nil {
			t.Errorf("%q accepted", v)
		}
	}
}

func TestTime(t *testing.T) {
	ts := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	if s := spec.FormatTime(ts.In(time.FixedZone("x", 3600))); s != "2026-01-02T15:04:05Z" {
		t.Fatalf("FormatTime %s", s)
	}
	back, err := spec.ParseTime("2026-01-02T15:04:05Z")
	if err != nil || !back.Equal(ts) || back.Location() != time.UTC {
		t.Fatalf("ParseTime: %v, %v", back, err)
	}
	for _, s := range []string{"2026-01-02T15:04:05+01:00", "2026-01-02T15:04:05.5Z", "2026-01-02", "2026-13-02T15:04:05Z", "2026-01-02t15:04:05z"} {
		if _, err := spec.ParseTime(s); err == nil {
			t.Errorf("ParseTime(%q) accepted", s)
		}
	}
	if spec.CheckTime(ts) != nil || spec.CheckTime(time.Time{}) == nil || spec.CheckTime(ts.Add(time.Millisecond)) == nil ||
		spec.CheckTime(time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)) == nil || spec.CheckTime(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)) == nil {
		t.Fatal("CheckTime")
	}
}
