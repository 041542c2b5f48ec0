package delta

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// TestMatcherLongest checks the suffix-array search, started at the range
// of the pattern's first two bytes, against a brute-force scan:
// the length it returns is the longest match anywhere in old, and old
// holds those bytes at the position it returns. Small alphabets make long,
// repeated matches. The cases include one-byte patterns, patterns that
// start with old's last byte (its one-byte suffix sits at the start of
// their range), keys old lacks, and an old of one byte.
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
		m := newMatcher(old, suffixArray(old))
		for q := 0; q < 100; q++ {
			p := make([]byte, 1+rng.IntN(20))
			for i := range p {
				p[i] = byte(rng.IntN(alpha + 1))
			}
			if q%4 == 0 { // old's last byte or two, then anything
				copy(p, old[max(0, len(old)-1-q%8/4):])
			}
			want := 0
			for i := range old {
				want = max(want, commonPrefix(old[i:], p))
			}
			pos, n := m.longest(p)
			if n != want {
				t.Fatalf("trial %d: longest(%x) in %x: length %d, want %d", trial, p, old, n, want)
			}
			if n > 0 && (pos < 0 || pos+n > len(old) || string(old[pos:pos+n]) != string(p[:n])) {
				t.Fatalf("trial %d: longest(%x) in %x: position %d does not hold %d bytes of it", trial, p, old, pos, n)
			}
		}
	}
}

// TestDiffHalves checks the matching of a new image large enough to be
// matched in two halves at once: the patch applies (the halves'
// operations cover new exactly once, in order, a match that runs across
// the middle included), and it is the same bytes with one CPU as with
// several, since only where the halves meet decides the output.
func TestDiffHalves(t *testing.T) {
	old := codeLike(21, splitMin+300<<10)
	// An insertion in the first quarter: an unchanged run of old spans
	// the middle of new, where the halves meet.
	new := shiftPointers(old, 0x40, len(old)/4, gen(22, 5000))
	if len(new) < splitMin {
		t.Fatalf("new is %d bytes, under splitMin %d: the test proves nothing", len(new), splitMin)
	}
	var ops []op
	if err := diff(context.Background(), old, new, func(a, b, c int) error { ops = append(ops, op{a, b, c}); return nil }); err != nil {
		t.Fatal(err)
	}
	covered := 0
	for _, o := range ops {
		if o.oldPos < 0 || o.add < 0 || o.copy < 0 || o.oldPos+o.add > len(old) {
			t.Fatalf("operation %+v out of bounds (old %d bytes)", o, len(old))
		}
		covered += o.add + o.copy
	}
	if covered != len(new) {
		t.Fatalf("operations cover %d bytes of new's %d", covered, len(new))
	}
	patch := createPatch(t, old, new, nil)
	got, _, err := applyPatch(old, patch)
	if err != nil || !bytes.Equal(got, new) {
		t.Fatalf("Apply: %v (output %d bytes, want %d)", err, len(got), len(new))
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	if one := createPatch(t, old, new, nil); !bytes.Equal(one, patch) {
		t.Fatalf("the patch made with one CPU differs: %d bytes, %d with %d", len(one), len(patch), runtime.NumCPU())
	}
	t.Logf("%d -> %d bytes: %d operations, patch %d bytes", len(old), len(new), len(ops), len(patch))
}

// TestDiffHalvesStop checks the two ways a matching in halves stops early:
// an error from emit is returned as is, a cancelled context as its error,
// and either way the second half's goroutine has ended when diff returns.
func TestDiffHalvesStop(t *testing.T) {
	// A match early on (the first operation goes out there), then bytes
	// that match nothing: every position after it is searched, and the
	// context checked on the way.
	old := gen(31, splitMin)
	new := append(append(gen(32, 1000), old[:100000]...), gen(33, splitMin)...)
	errStop := errors.New("stop")
	for _, tc := range []struct {
		name string
		emit func(cancel context.CancelFunc) error
		want error
	}{
		{"emit fails", func(context.CancelFunc) error { return errStop }, errStop},
		{"cancelled", func(cancel context.CancelFunc) error { cancel(); return nil }, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := diff(ctx, old, new, func(a, b, c int) error { return tc.emit(cancel) })
			if !errors.Is(err, tc.want) {
				t.Fatalf("diff: %v, want %v", err, tc.want)
			}
			// The suffix array's goroutine has ended too (diff waited for
			// it); allow the runtime a moment to retire both.
			for i := 0; runtime.NumGoroutine() > before && i < 100; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > before {
				t.Fatalf("%d goroutines after diff returned, %d before", n, before)
			}
		})
	}
}
