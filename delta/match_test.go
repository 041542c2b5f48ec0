package delta

import (
	"math/rand/v2"
	"testing"
)

// TestMatcherLongest checks the suffix-array search, started at the range
// of the pattern's first two or three bytes, against a brute-force scan:
// the length it returns is the longest match anywhere in old, and old
// holds those bytes at the position it returns. Small alphabets make long,
// repeated matches. The cases include patterns shorter than the index's
// width, patterns that start with old's last bytes (the suffixes shorter
// than the width sit at the start of their range), keys old lacks, and
// an old of one byte.
func TestMatcherLongest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 200; trial++ {
		alpha := 1 + rng.IntN(4)
		if trial%10 == 0 {
			alpha = 256
		}
		old := make([]byte, 1+rng.IntN(300))
		for i := range old {
			old[i] = byte(rng.IntN(alpha))
		}
		width := 2
		if trial%8 == 0 { // a 64 MiB table: not every trial
			width = 3
		}
		m := newMatcherWidth(old, suffixArray(old), width)
		for q := 0; q < 100; q++ {
			p := make([]byte, 1+rng.IntN(20))
			for i := range p {
				p[i] = byte(rng.IntN(alpha + 1))
			}
			if q%4 == 0 { // old's last one or two bytes, then anything
				copy(p, old[max(0, len(old)-1-q%8/4):])
			}
			want := 0
			for i := range old {
				want = max(want, commonPrefix(old[i:], p))
			}
			pos, n := m.longest(p)
			if n != want {
				t.Fatalf("trial %d (width %d): longest(%x) in %x: length %d, want %d", trial, width, p, old, n, want)
			}
			if n > 0 && (pos < 0 || pos+n > len(old) || string(old[pos:pos+n]) != string(p[:n])) {
				t.Fatalf("trial %d: longest(%x) in %x: position %d does not hold %d bytes of it", trial, p, old, pos, n)
			}
		}
	}
}
