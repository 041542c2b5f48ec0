package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestApplyParallelSameAsSequential applies patches whose blocks have add
// and copy runs, their two sections decoded at once (on two goroutines)
// and one after the other: the output must be the same, and so must the
// error of corrupted copies (80 bits flipped, one at a time), so that what
// Apply reports does not depend on the CPUs it runs on.
func TestApplyParallelSameAsSequential(t *testing.T) {
	old := codeLike(31, 120_000)
	new := shiftPointers(old, 48, 30_000, bytes.Repeat([]byte("inserted text, not in old "), 200))
	new = append(new[:80_000:80_000], append(gen(9, 12_000), new[80_000:]...)...)
	patch := createPatch(t, old, new, &Options{BlockSize: 32 << 10, ModelBits: MinModelBits})

	saved := twoCPUs
	t.Cleanup(func() { twoCPUs = saved })
	parallel := 0
	apply := func(par bool, p []byte) ([]byte, error) {
		twoCPUs = func() bool { parallel++; return par }
		out, _, err := applyPatch(old, p)
		return out, err
	}
	out, err := apply(true, patch)
	if err != nil || !bytes.Equal(out, new) {
		t.Fatalf("decoded at once: err %v, output equal %v", err, bytes.Equal(out, new))
	}
	if parallel < 2 {
		t.Fatalf("%d blocks decoded at once: the test exercises nothing", parallel)
	}
	if out, err := apply(false, patch); err != nil || !bytes.Equal(out, new) {
		t.Fatalf("decoded in turn: err %v, output equal %v", err, bytes.Equal(out, new))
	}
	// Cut short anywhere (inside a coded diff section read ahead, too).
	for k := HeaderSize; k < len(patch); k += max(1, (len(patch)-HeaderSize)/40) {
		_, e1 := apply(true, patch[:k])
		_, e2 := apply(false, patch[:k])
		if e1 == nil || e2 == nil || e1.Error() != e2.Error() {
			t.Fatalf("cut at %d: at once %v, in turn %v", k, e1, e2)
		}
	}
	// The old image fails after it was hashed, while add runs read it.
	for _, at := range []int64{1000, 50_000, 100_000} {
		var errs [2]error
		for i, par := range []bool{true, false} {
			twoCPUs = func() bool { return par }
			r := &secondPass{failAt: failAt{old, at, errDisk}, size: int64(len(old))}
			_, errs[i] = Apply(context.Background(), r, int64(len(old)), bytes.NewReader(patch), io.Discard)
		}
		if !errors.Is(errs[0], errDisk) || errs[0].Error() != errs[1].Error() {
			t.Fatalf("old failing at %d after its hash: at once %v, in turn %v", at, errs[0], errs[1])
		}
	}
	step := max(7, (len(patch)-HeaderSize)*8/80|1)
	for i := HeaderSize * 8; i < len(patch)*8; i += step {
		p := bytes.Clone(patch)
		p[i/8] ^= 1 << (i % 8)
		o1, e1 := apply(true, p)
		o2, e2 := apply(false, p)
		if (e1 == nil) != (e2 == nil) || (e1 != nil && e1.Error() != e2.Error()) {
			t.Fatalf("bit %d flipped: at once %v, in turn %v", i, e1, e2)
		}
		if e1 == nil && (!bytes.Equal(o1, o2) || !bytes.Equal(o1, new)) {
			t.Fatalf("bit %d flipped: applied without error to a wrong image", i)
		}
	}
}

// failAt is an old image whose reads fail from offset at on, with err
// (io.EOF: the image ends there).
type failAt struct {
	b   []byte
	at  int64
	err error
}

func (f *failAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) <= f.at {
		return copy(p, f.b[off:]), nil
	}
	n := 0
	if off < f.at {
		n = copy(p, f.b[off:f.at])
	}
	return n, f.err
}

var errDisk = errors.New("disk on fire")

// secondPass is an old image that reads well until size bytes were read
// (its hash), then as failAt.
type secondPass struct {
	failAt
	size, read int64
	mu         sync.Mutex
}

func (r *secondPass) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	hashed := r.read >= r.size
	r.read += int64(len(p))
	r.mu.Unlock()
	if !hashed {
		return copy(p, r.b[off:]), nil
	}
	return r.failAt.ReadAt(p, off)
}

// TestApplyOldReadErrors: a failing or short old image stops Apply while
// it hashes old, with the reader's error, before any byte is written, and
// leaves no goroutine behind; so does a cancelled context.
func TestApplyOldReadErrors(t *testing.T) {
	old := codeLike(5, 300_000)
	new := shiftPointers(old, 8, 1000, []byte("x"))
	patch := createPatch(t, old, new, nil)
	before := runtime.NumGoroutine()
	for _, tc := range []struct {
		r    io.ReaderAt
		want error
	}{
		{&failAt{old, 100_000, errDisk}, errDisk},
		{&failAt{old, 250_001, io.EOF}, io.ErrUnexpectedEOF},
		{&failAt{old, 0, errDisk}, errDisk},
	} {
		var out bytes.Buffer
		_, err := Apply(context.Background(), tc.r, int64(len(old)), bytes.NewReader(patch), &out)
		if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), "reading old image") {
			t.Fatalf("error %v, want %v reading the old image", err, tc.want)
		}
		if out.Len() != 0 {
			t.Fatalf("%d bytes written from an old image that could not be read", out.Len())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Apply(ctx, bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch), io.Discard); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	for i := 0; runtime.NumGoroutine() > before; i++ {
		if i == 100 {
			t.Fatalf("%d goroutines left, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestApplyReadAheadPastBody: a coded diff length that declares more
// bytes than the body holds fails the read-ahead, while decoding in turn
// finishes the add runs on fewer bytes and finds the rest unused
// (ErrCorrupt). Both ways must report the latter.
func TestApplyReadAheadPastBody(t *testing.T) {
	old := []byte("0123456789abcdef")
	new := []byte("0123456789ABCDEF")
	ops := [][3]int64{{0, 10, 6}}
	good := block(old, 16, ops, zeroDiff(old[:10]), []byte("ABCDEF"))
	if got, _, err := applyPatch(old, raw(t, old, new, append(bytes.Clone(good), 0), nil)); err != nil || !bytes.Equal(got, new) {
		t.Fatalf("hand-made patch does not apply: %v", err)
	}
	// The same block with the coded diff's length 100 bytes too long.
	coded := zeroDiff(old[:10])
	length := binary.AppendUvarint(nil, uint64(len(coded)))
	at := bytes.Index(good, append(length, coded...))
	if at < 0 {
		t.Fatal("the coded diff is not where block puts it")
	}
	b := binary.AppendUvarint(bytes.Clone(good[:at]), uint64(len(coded)+100))
	b = append(append(b, good[at+len(length):]...), 0)
	patch := raw(t, old, new, b, nil)

	saved := twoCPUs
	t.Cleanup(func() { twoCPUs = saved })
	var errs [2]error
	for i, par := range []bool{true, false} {
		twoCPUs = func() bool { return par }
		_, _, errs[i] = applyPatch(old, patch)
	}
	if !errors.Is(errs[1], ErrCorrupt) || !strings.Contains(errs[1].Error(), "unused") {
		t.Fatalf("decoding in turn: %v, want the coded diff's unused bytes", errs[1])
	}
	if errs[0] == nil || errs[0].Error() != errs[1].Error() {
		t.Fatalf("read ahead: %v; in turn: %v", errs[0], errs[1])
	}
}
