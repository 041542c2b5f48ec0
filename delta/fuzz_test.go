package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// fuzzOld is the old image every FuzzApply input is applied to; the seeds
// are valid patches from it, so mutations get past the wrong-base check.
func fuzzOld() []byte { return codeLike(20, 3000) }

// hashCount hashes and counts the output without keeping it.
type hashCount struct {
	n int64
	h interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
}

func (w *hashCount) Write(p []byte) (int, error) { w.n += int64(len(p)); return w.h.Write(p) }

// FuzzApply applies arbitrary bytes as a patch: Apply must never panic,
// must succeed only with the declared image, and must not allocate more
// than the header's bound (plus a fixed allowance for the decoder and
// bookkeeping).
func FuzzApply(f *testing.F) {
	old := fuzzOld()
	small := &Options{BlockSize: 512, CtrlSize: 64, ModelBits: MinModelBits}
	for _, p := range []struct {
		new  []byte
		opts *Options
	}{
		{shiftPointers(old, 16, 1000, []byte("fuzz")), nil},
		{old, nil},
		{gen(21, 2000), small},
		{shiftPointers(old, 0x300, 10, gen(22, 300)), small},
		{nil, nil},
	} {
		f.Add(createPatch(f, old, p.new, p.opts))
	}
	// Hand-made patches: version 3, and version 2 in a zstd frame without
	// a checksum, so that mutations reach the block parser and the diff
	// decoder.
	new := append(bytes.Clone(old[:1000]), "ABCDEF"...)
	body := block(old, 1006, [][3]int64{{0, 1000, 6}}, zeroDiff(old[:1000]), []byte("ABCDEF"))
	f.Add(rawBody(f, old, new, append(append([]byte{archNone}, body...), 0), nil))
	f.Add(rawNoCRC(old, new, append(blockV2(1006, [][3]int64{{0, 1000, 6}}, zeroDiffV2(old[:1000]), []byte("ABCDEF")), 0)))

	f.Fuzz(func(t *testing.T, patch []byte) { checkApply(t, old, patch) })
}

// checkApply applies patch to old: Apply must succeed only with the
// declared image, and must not allocate more than the header's bound (plus
// a fixed allowance for the decoder and bookkeeping).
func checkApply(t *testing.T, old, patch []byte) {
	w := &hashCount{h: sha256.New()}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	h, err := Apply(context.Background(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch), w)
	runtime.ReadMemStats(&after)
	if h != nil {
		const allowance = 1 << 20
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(h.MaxApplyMemory())+allowance {
			t.Fatalf("Apply allocated %d bytes, header bound %d + %d", alloc, h.MaxApplyMemory(), allowance)
		}
	}
	if err == nil && (w.n != h.NewSize || !bytes.Equal(w.h.Sum(nil), h.NewSHA256[:])) {
		t.Fatalf("Apply succeeded with %d bytes not matching the header", w.n)
	}
}

// rawNoCRC is a version 2 patch of body in a zstd frame without checksum.
func rawNoCRC(old, new, body []byte) []byte {
	var z bytes.Buffer
	enc, err := zstdNoCRC(&z)
	if err != nil {
		panic(err)
	}
	enc.Write(body)
	enc.Close()
	h := &Header{Version: 2, Algorithm: AlgBlocksZstd, Window: 1 << 10, BlockSize: 1 << 11, CtrlSize: 64,
		ModelBits: MinModelBits, OldSize: int64(len(old)), NewSize: int64(len(new)),
		OldSHA256: sha256.Sum256(old), NewSHA256: sha256.Sum256(new), BodySize: int64(z.Len())}
	hb, err := h.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return append(hb, z.Bytes()...)
}

// FuzzApplyRefs applies mutations of patches whose refs section is in use
// (synthetic programs of each architecture): the reference scanners run on
// whatever segments and target map the mutated section declares.
func FuzzApplyRefs(f *testing.F) {
	p := newSynthProg(archARM64, 7, 40)
	old := p.image(1)
	f.Add(createPatch(f, old, p.image(2), nil))
	for _, arch := range []uint8{archX86, archARM32, archThumb} {
		q := newSynthProg(arch, 7, 40)
		// Old stays the AArch64 program: the mutations that get past the
		// base check keep their section and are read against this old.
		f.Add(createPatch(f, old, q.image(2), nil))
	}
	f.Fuzz(func(t *testing.T, patch []byte) {
		w := &hashCount{h: sha256.New()}
		h, err := Apply(context.Background(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch), w)
		if err == nil && (w.n != h.NewSize || !bytes.Equal(w.h.Sum(nil), h.NewSHA256[:])) {
			t.Fatalf("Apply succeeded with %d bytes not matching the header", w.n)
		}
	})
}

// FuzzReadRefs parses arbitrary version 3 refs sections: never a panic,
// never more segments or target ranges than the limits, and what it
// accepts encodes back to the same section, then predicts over arbitrary
// bytes.
func FuzzReadRefs(f *testing.F) {
	addRefsSeeds(f, 3)
	f.Fuzz(func(t *testing.T, sec, code []byte) {
		m, err := readRefs(bytes.NewReader(sec), 1<<20, 1<<20, 3)
		if err != nil || m == nil {
			return
		}
		if again := appendRefs(nil, m, 3); !bytes.HasPrefix(sec, again) {
			t.Fatalf("section re-encodes differently")
		}
		checkRefsFuzz(t, m, code)
	})
}

// FuzzReadRefsV4 is FuzzReadRefs on version 4 sections, whose target map
// is arithmetic-coded: what it accepts encodes to a section that decodes
// to the same map (a coded map has more than one encoding: the coder's
// last bytes carry precision the decoder does not need).
func FuzzReadRefsV4(f *testing.F) {
	addRefsSeeds(f, 4)
	f.Fuzz(func(t *testing.T, sec, code []byte) {
		m, err := readRefs(bytes.NewReader(sec), 1<<20, 1<<20, 4)
		if err != nil || m == nil {
			return
		}
		again, err := readRefs(bytes.NewReader(appendRefs(nil, m, 4)), 1<<20, 1<<20, 4)
		if err != nil || !refsEqual(again, m) {
			t.Fatalf("section re-encodes to a different map (%v)", err)
		}
		checkRefsFuzz(t, m, code)
	})
}

// addRefsSeeds adds the refs sections of synthetic programs of each
// architecture, in format version v.
func addRefsSeeds(f *testing.F, v uint16) {
	for _, arch := range []uint8{archX86, archARM64, archARM32, archThumb} {
		q := newSynthProg(arch, 3, 30)
		old, new := q.image(1), q.image(2)
		var list []op
		diff(context.Background(), old, new, func(a, b, c int) error { list = append(list, op{a, b, c}); return nil })
		if m := chooseRefs(old, new, list); m != nil {
			f.Add(appendRefs(nil, m, v), old[:min(len(old), 5000)])
		}
	}
}

// checkRefsFuzz checks an accepted section's limits, then predicts over
// code.
func checkRefsFuzz(t *testing.T, m *refModel, code []byte) {
	if len(m.old) > MaxRefSegments || len(m.new) > MaxRefSegments || len(m.tab) > MaxRefEntries {
		t.Fatalf("limits passed: %d+%d segments, %d ranges", len(m.old), len(m.new), len(m.tab))
	}
	buf := bytes.Clone(code)
	m.predict(buf, 0, 0)
	m.predict(bytes.Clone(code), int64(len(code)), 7)
	if len(buf) != len(code) {
		t.Fatal("predict changed the length")
	}
}

// FuzzParseELF parses arbitrary bytes as ELF: never a panic, and the
// segments it reports lie inside the file and do not overlap.
func FuzzParseELF(f *testing.F) {
	for _, arch := range []uint8{archX86, archARM64, archARM32} {
		f.Add(newSynthProg(arch, 5, 10).image(1))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, ok := parseELF(b)
		if !ok {
			return
		}
		var end uint64
		for _, s := range info.segs {
			if s.kind == segBss {
				continue
			}
			if s.off < end || s.off+s.size > uint64(len(b)) || s.size == 0 {
				t.Fatalf("segment %+v outside the file (%d bytes) or overlapping", s, len(b))
			}
			end = s.off + s.size
		}
	})
}

// FuzzApplyV3 applies mutations of a format version 3 patch (the golden
// x86-64 one of TestGolden: references, diff and extra bytes), which Apply
// still reads with version 3's model for the
// extra bytes. Their zstd frames are rewritten without a checksum so that
// mutations reach the block parser and that model.
func FuzzApplyV3(f *testing.F) {
	old := newSynthProg(archX86, 100+uint64(archX86), 150).image(1) // as in TestGolden
	for _, name := range []string{"refs-x86-64-v3.patch"} {
		b, err := os.ReadFile(filepath.Join("testdata", "golden", name))
		if err != nil {
			f.Fatal(err)
		}
		seed := reframeNoCRC(f, b)
		if _, _, err := applyPatch(old, seed); err != nil {
			f.Fatalf("%s without its zstd checksum: %v", name, err)
		}
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, patch []byte) { checkApply(t, old, patch) })
}

// reframeNoCRC rewrites a version 2 or 3 patch's zstd body as a frame
// without a checksum and a 1 KiB window (the header follows).
func reframeNoCRC(t testing.TB, patch []byte) []byte {
	t.Helper()
	h, err := parseHeader(patch[:HeaderSize])
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(bytes.NewReader(patch[HeaderSize:]))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	body, err := io.ReadAll(dec)
	if err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	enc, err := zstdNoCRC(&z)
	if err != nil {
		t.Fatal(err)
	}
	enc.Write(body)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	h.Window, h.BodySize = 1<<10, int64(z.Len())
	hb, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return append(hb, z.Bytes()...)
}
