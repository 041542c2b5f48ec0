package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

var update = flag.Bool("update", false, "rewrite the golden patch in testdata/golden")

// gen returns n deterministic pseudo-random bytes.
func gen(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// codeLike returns n bytes that look like machine code: a few recurring
// "instructions", each with a 4-byte little-endian displacement.
func codeLike(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 9))
	ops := [][]byte{{0xe8}, {0x48, 0x8d, 0x05}, {0x48, 0x8b, 0x0d}, {0x0f, 0x84}, {0x90}, {0x48, 0x89, 0xc7}}
	var b []byte
	for len(b) < n {
		op := ops[r.IntN(len(ops))]
		b = append(b, op...)
		if len(op) > 1 || op[0] == 0xe8 {
			b = binary.LittleEndian.AppendUint32(b, uint32(r.IntN(1<<20)))
		}
	}
	return b[:n]
}

// shiftPointers returns a copy of code where every displacement after the
// opcode 0x48 0x8d 0x05 grows by delta, plus an insertion at pos.
func shiftPointers(code []byte, delta uint32, pos int, ins []byte) []byte {
	c := bytes.Clone(code)
	for i := 0; i+7 <= len(c); i++ {
		if c[i] == 0x48 && c[i+1] == 0x8d && c[i+2] == 0x05 {
			v := binary.LittleEndian.Uint32(c[i+3:])
			binary.LittleEndian.PutUint32(c[i+3:], v+delta)
			i += 6
		}
	}
	out := append(bytes.Clone(c[:pos]), ins...)
	return append(out, c[pos:]...)
}

func createPatch(t testing.TB, old, new []byte, opts *Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	h, err := Create(context.Background(), old, new, &buf, opts)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if h.PatchSize() != int64(buf.Len()) {
		t.Fatalf("PatchSize %d, wrote %d", h.PatchSize(), buf.Len())
	}
	return buf.Bytes()
}

func applyPatch(old, patch []byte) ([]byte, *Header, error) {
	var out bytes.Buffer
	h, err := Apply(context.Background(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch), &out)
	return out.Bytes(), h, err
}

func TestRoundTrip(t *testing.T) {
	base := gen(1, 64<<10)
	code := codeLike(2, 48<<10)
	zeros := make([]byte, 100<<10)
	withZeros := append(append(bytes.Clone(base[:30000]), zeros...), base[30000:]...)
	shifted := append(append(bytes.Clone(base[40000:]), base[:20000]...), base[20000:40000]...)
	insDel := append(append(bytes.Clone(base[:1000]), gen(3, 5000)...), base[9000:]...)
	small := &Options{BlockSize: 4096, CtrlSize: 64, ModelBits: MinModelBits}
	cases := []struct {
		name     string
		old, new []byte
		opts     *Options
	}{
		{"empty to empty", nil, nil, nil},
		{"empty to data", nil, base[:5000], nil},
		{"data to empty", base[:5000], nil, nil},
		{"one byte", []byte{1}, []byte{2}, nil},
		{"tiny", []byte("abc"), []byte("abd"), nil},
		{"identical", base, base, nil},
		{"all changed", base, gen(4, len(base)), nil},
		{"insertions and deletions", base, insDel, nil},
		{"shifted blocks", base, shifted, nil},
		{"zeros inserted", base, withZeros, nil},
		{"all zeros", zeros, append(bytes.Clone(zeros), 0, 0, 0), nil},
		{"old larger", base, base[10000:30000], nil},
		{"old smaller", base[10000:30000], base, nil},
		{"code pointers moved", code, shiftPointers(code, 16, 5000, []byte("inserted function")), nil},
		{"small blocks", code, shiftPointers(code, 0x1234, 100, gen(5, 3000)), small},
		{"small blocks all changed", base[:20000], gen(6, 30000), small},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			patch := createPatch(t, tc.old, tc.new, tc.opts)
			got, h, err := applyPatch(tc.old, patch)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if !bytes.Equal(got, tc.new) {
				t.Fatalf("Apply output differs: %d bytes, want %d", len(got), len(tc.new))
			}
			if h.OldSHA256 != sha256.Sum256(tc.old) || h.NewSHA256 != sha256.Sum256(tc.new) ||
				h.OldSize != int64(len(tc.old)) || h.NewSize != int64(len(tc.new)) {
				t.Fatalf("header %+v does not describe the pair", h)
			}
			t.Logf("%d -> %d bytes: patch %d", len(tc.old), len(tc.new), len(patch))
		})
	}
}

// TestPatchSize checks that the diff does its job: a pointer shift in
// code-like data costs a small fraction of the image.
func TestPatchSize(t *testing.T) {
	code := codeLike(2, 64<<10)
	patch := createPatch(t, code, shiftPointers(code, 16, 5000, []byte("new code")), nil)
	if len(patch) > len(code)/20 {
		t.Fatalf("patch is %d bytes for a %d-byte image with shifted pointers; want under 5%%", len(patch), len(code))
	}
	same := createPatch(t, code, code, nil)
	if len(same) > 300 {
		t.Fatalf("identical images give a %d-byte patch; want a few hundred at most", len(same))
	}
}

func TestSuffixArray(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	inputs := [][]byte{nil, {0}, {5, 5, 5, 5, 5}, []byte("banana"), []byte("mississippi"), []byte("abracadabra"), bytes.Repeat([]byte("ab"), 50)}
	for i := 0; i < 200; i++ {
		n := r.IntN(300)
		b := make([]byte, n)
		alpha := 1 + r.IntN(4)
		if i%5 == 0 {
			alpha = 256
		}
		for j := range b {
			b[j] = byte(r.IntN(alpha))
		}
		inputs = append(inputs, b)
	}
	for _, text := range inputs {
		got := suffixArray(text)
		want := make([]int32, len(text))
		for i := range want {
			want[i] = int32(i)
		}
		sort.Slice(want, func(a, b int) bool { return bytes.Compare(text[want[a]:], text[want[b]:]) < 0 })
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("suffixArray(%q)[%d] = %d, want %d", text, i, got[i], want[i])
			}
		}
	}
}

// TestSuffixArrayLarge checks the order and the permutation property on
// inputs large enough for several recursion levels.
func TestSuffixArrayLarge(t *testing.T) {
	for _, text := range [][]byte{codeLike(3, 100000), bytes.Repeat([]byte("abcabd"), 20000), make([]byte, 30000)} {
		sa := suffixArray(text)
		seen := make([]bool, len(text))
		for i, p := range sa {
			if seen[p] {
				t.Fatalf("position %d twice", p)
			}
			seen[p] = true
			if i > 0 && bytes.Compare(text[sa[i-1]:], text[p:]) >= 0 {
				t.Fatalf("suffixes %d and %d out of order", sa[i-1], p)
			}
		}
	}
}

// TestGolden pins the format: Create's output for fixed inputs must be
// byte for byte the patch in testdata/golden (regenerate with -update after
// a deliberate format change, and bump Version), and each golden patch must
// apply. code.patch is raw code-like bytes; refs-*.patch are synthetic
// programs of each architecture whose references all moved (format
// version 3's reference prediction); code-v2.patch is the same pair as
// code.patch in format version 2, and NAME-v3.patch each pair in format
// version 3 (its patches as upkit wrote them), which Apply still reads.
func TestGolden(t *testing.T) {
	dir := filepath.Join("testdata", "golden")
	old := codeLike(10, 6000)
	new := shiftPointers(old, 32, 3000, []byte("golden insertion"))
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{"code.old": old, "code.new": new} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, b := range map[string][]byte{"code.old": old, "code.new": new} {
		if f, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !bytes.Equal(f, b) {
			t.Fatalf("%s differs from the generated input (err %v); run go test -run TestGolden -update", name, err)
		}
	}
	pairs := []struct {
		name     string
		old, new []byte
	}{{"code.patch", old, new}}
	for _, arch := range []uint8{archX86, archARM64, archARM32, archThumb} {
		p := newSynthProg(arch, 100+uint64(arch), 150)
		pairs = append(pairs, struct {
			name     string
			old, new []byte
		}{fmt.Sprintf("refs-%s.patch", archNames[arch]), p.image(1), p.image(2)})
	}
	for _, pr := range pairs {
		t.Run(pr.name, func(t *testing.T) {
			patch := createPatch(t, pr.old, pr.new, nil)
			path := filepath.Join(dir, pr.name)
			if *update {
				if err := os.WriteFile(path, patch, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			golden, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update)", err)
			}
			if !bytes.Equal(patch, golden) {
				t.Fatalf("Create output (%d bytes) differs from %s (%d bytes): the format or the encoder changed; review and run go test -run TestGolden -update", len(patch), path, len(golden))
			}
			got, h, err := applyPatch(pr.old, golden)
			if err != nil || !bytes.Equal(got, pr.new) || h.Version != Version {
				t.Fatalf("applying the golden patch: err %v, output equal %v, version %d", err, bytes.Equal(got, pr.new), h.Version)
			}
		})
	}
	// Older formats Apply still reads: each must apply, in its version.
	olds := []struct {
		name     string
		version  uint16
		old, new []byte
	}{{"code-v2.patch", 2, old, new}}
	for _, pr := range pairs {
		olds = append(olds, struct {
			name     string
			version  uint16
			old, new []byte
		}{strings.TrimSuffix(pr.name, ".patch") + "-v3.patch", 3, pr.old, pr.new})
	}
	for _, pr := range olds {
		t.Run(pr.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, pr.name))
			if err != nil {
				t.Fatal(err)
			}
			got, h, err := applyPatch(pr.old, b)
			if err != nil || !bytes.Equal(got, pr.new) || h.Version != pr.version {
				t.Fatalf("applying the version %d golden patch: err %v, output equal %v, version %d", pr.version, err, bytes.Equal(got, pr.new), h.Version)
			}
		})
	}
}

// countingWriter counts what Apply writes.
type countingWriter struct{ n int }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

func TestWrongBase(t *testing.T) {
	old := codeLike(3, 50000)
	new := shiftPointers(old, 8, 100, []byte("x"))
	patch := createPatch(t, old, new, nil)
	flipped := bytes.Clone(old)
	flipped[len(flipped)/2] ^= 1
	for name, base := range map[string][]byte{
		"shorter":        old[:len(old)-1],
		"longer":         append(bytes.Clone(old), 0),
		"same size":      flipped,
		"the new image":  new,
		"empty":          nil,
		"zeros, no size": make([]byte, len(old)),
	} {
		t.Run(name, func(t *testing.T) {
			var w countingWriter
			_, err := Apply(context.Background(), bytes.NewReader(base), int64(len(base)), bytes.NewReader(patch), &w)
			if !errors.Is(err, ErrWrongBase) {
				t.Fatalf("err = %v, want ErrWrongBase", err)
			}
			if w.n != 0 {
				t.Fatalf("%d bytes written before the base was refused", w.n)
			}
		})
	}
}

// raw builds a version 3 patch around a hand-written body (blocks). The
// header describes old and new; fix may alter it before it is encoded.
func raw(t *testing.T, old, new, body []byte, fix func(h *Header)) []byte {
	return rawBody(t, old, new, append([]byte{archNone}, body...), fix)
}

// rawRefs is raw with a refs section (refs) before the blocks of body.
func rawRefs(t *testing.T, old, new, refs, body []byte) []byte {
	return rawBody(t, old, new, append(bytes.Clone(refs), body...), nil)
}

// rawBody builds a version 3 patch from its body.
func rawBody(t testing.TB, old, new, body []byte, fix func(h *Header)) []byte {
	t.Helper()
	h := &Header{Version: Version, Algorithm: AlgBlocks, BlockSize: 1 << 10, CtrlSize: 64,
		ModelBits: MinModelBits, OldSize: int64(len(old)), NewSize: int64(len(new)),
		OldSHA256: sha256.Sum256(old), NewSHA256: sha256.Sum256(new), BodySize: int64(len(body))}
	if fix != nil {
		fix(h)
	}
	hb, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return append(hb, body...)
}

// rawV2 builds a version 2 patch whose body is the zstd frame z.
func rawV2(t testing.TB, old, new, z []byte) []byte {
	t.Helper()
	h := &Header{Version: 2, Algorithm: AlgBlocksZstd, Window: 1 << 10, BlockSize: 1 << 10, CtrlSize: 64,
		ModelBits: MinModelBits, OldSize: int64(len(old)), NewSize: int64(len(new)),
		OldSHA256: sha256.Sum256(old), NewSHA256: sha256.Sum256(new), BodySize: int64(len(z))}
	hb, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return append(hb, z...)
}

// blockV2 encodes one version 2 block: ops as varints, the coded diff,
// the extra bytes as they are.
func blockV2(outLen int, ops [][3]int64, coded, extra []byte) []byte {
	var ctrl []byte
	for _, op := range ops {
		ctrl = binary.AppendVarint(ctrl, op[0])
		ctrl = binary.AppendUvarint(ctrl, uint64(op[1]))
		ctrl = binary.AppendUvarint(ctrl, uint64(op[2]))
	}
	b := binary.AppendUvarint(nil, uint64(outLen))
	b = binary.AppendUvarint(b, uint64(len(ctrl)))
	b = append(b, ctrl...)
	b = binary.AppendUvarint(b, uint64(len(coded)))
	b = append(b, coded...)
	return append(b, extra...)
}

// compress returns body as one zstd frame with the given window.
func compress(t testing.TB, body []byte, window int) []byte {
	t.Helper()
	var z bytes.Buffer
	enc, err := zstd.NewWriter(&z, zstd.WithWindowSize(window), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	enc.Write(body)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return z.Bytes()
}

// rawFrame returns body (under 128 KiB) as one zstd frame of raw blocks that
// declares a window of 1<<windowLog bytes.
func rawFrame(body []byte, windowLog int) []byte {
	f := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, byte(windowLog-10) << 3}
	hdr := uint32(len(body))<<3 | 1 // last block, raw
	f = append(f, byte(hdr), byte(hdr>>8), byte(hdr>>16))
	return append(f, body...)
}

// block encodes one block: ops are (seek, add, copy) triples, coded by a
// fresh control model; diffs of add
// runs are coded against old (zero diff: old bytes copied); the extra bytes
// follow, coded by a fresh literal model with the old bytes at each copy's
// cursor as context (the cursor starts at 0).
func block(old []byte, outLen int, ops [][3]int64, coded []byte, extra []byte) []byte {
	rc := newEncoder(nil)
	cm := newCtrlModel()
	for _, op := range ops {
		cm.op(rc, op[0], uint64(op[1]), uint64(op[2]))
	}
	cc := rc.finish()
	b := binary.AppendUvarint(nil, uint64(outLen))
	b = binary.AppendUvarint(b, uint64(len(cc)))
	b = append(b, cc...)
	b = binary.AppendUvarint(b, uint64(len(coded)))
	b = append(b, coded...)
	if len(extra) == 0 {
		return b
	}
	c := litCodeOld(old, ops, extra)
	b = binary.AppendUvarint(b, uint64(len(c)))
	return append(b, c...)
}

// litCodeOld codes the extra bytes of the copies of ops with a fresh
// literal model of MinModelBits, the old bytes at each copy's cursor (the
// cursor starts at 0) as their context and its place in new as its
// alignment.
func litCodeOld(old []byte, ops [][3]int64, extra []byte) []byte {
	rc := newEncoder(nil)
	m := newLitModel(MinModelBits)
	cur, np := int64(0), int64(0)
	for _, op := range ops {
		cur += op[0] + op[1]
		np += op[1]
		if n := int(min(op[2], int64(len(extra)))); n > 0 {
			oc := appendOld(nil, old, int(max(cur, 0)), n)
			m.code(rc, extra[:n], oc, np)
			extra = extra[n:]
		}
		np += op[2]
	}
	return rc.finish()
}

// zeroDiff codes n zero diff bytes over old with a fresh model.
func zeroDiff(old []byte) []byte { return zeroDiffCoder(old).finish() }

// zeroDiffV2 is zeroDiff as versions 2 and 3 flushed it: the 4 bytes of
// the final value, which their decoders read exactly.
func zeroDiffV2(old []byte) []byte {
	rc := zeroDiffCoder(old)
	x := rc.x1
	return append(rc.out, byte(x>>24), byte(x>>16), byte(x>>8), byte(x))
}

// zeroDiffCoder codes an all-zero diff over old, unflushed.
func zeroDiffCoder(old []byte) *rangeCoder {
	rc := newEncoder(nil)
	newDiffModel(MinModelBits).codeRun(rc, make([]byte, len(old)), old)
	return rc
}

func TestCorruptPatches(t *testing.T) {
	old := []byte("0123456789abcdef")
	new := []byte("0123456789ABCDEF")
	good := block(old, 16, [][3]int64{{0, 10, 6}}, zeroDiff(old[:10]), []byte("ABCDEF"))
	valid := raw(t, old, new, append(bytes.Clone(good), 0), nil)
	if got, _, err := applyPatch(old, valid); err != nil || !bytes.Equal(got, new) {
		t.Fatalf("hand-made patch does not apply: %v", err)
	}
	v2 := append(blockV2(16, [][3]int64{{0, 10, 6}}, zeroDiffV2(old[:10]), []byte("ABCDEF")), 0)
	if got, _, err := applyPatch(old, rawV2(t, old, new, compress(t, v2, 1<<10))); err != nil || !bytes.Equal(got, new) {
		t.Fatalf("hand-made version 2 patch does not apply: %v", err)
	}
	real := createPatch(t, codeLike(1, 3000), codeLike(2, 3000), nil)
	realOld := codeLike(1, 3000)

	cases := []struct {
		name  string
		old   []byte
		patch []byte
		want  error
	}{
		{"empty", old, nil, ErrTruncated},
		{"short header", old, valid[:50], ErrTruncated},
		{"not a patch", old, bytes.Repeat([]byte("x"), 200), ErrMagic},
		{"header bit flip", old, flip(valid, 30), ErrCorrupt},
		{"version", old, rehead(valid, func(b []byte) { b[8] = Version + 1 }), ErrVersion},
		{"version 1", old, rehead(valid, func(b []byte) { b[8] = 1 }), ErrVersion},
		{"algorithm", old, rehead(valid, func(b []byte) { b[10] = 9 }), ErrVersion},
		{"truncated body", old, valid[:len(valid)-3], ErrTruncated},
		{"truncated real patch", realOld, real[:len(real)/2], ErrTruncated},
		{"trailing data", old, append(bytes.Clone(valid), 0), ErrTrailingData},
		{"body repeated", old, append(bytes.Clone(valid), valid[HeaderSize:]...), ErrTrailingData},
		{"version 2, trailing zstd frame", old, append(rawV2(t, old, new, compress(t, v2, 1<<10)), compress(t, v2, 1<<10)...), ErrTrailingData},
		{"version 2, window above bound", old, rawV2(t, old, new, rawFrame(v2, 20)), ErrBounds},
		{"version 2 header, version 3 body", old, rawV2(t, old, new, compress(t, append([]byte{archNone}, append(bytes.Clone(good), 0)...), 1<<10)), ErrCorrupt},
		{"version 3 algorithm in version 2", old, rehead(valid, func(b []byte) { b[8] = 2 }), ErrVersion},
		{"body shorter than declared", old, raw(t, old, new, append(bytes.Clone(good), 0), func(h *Header) { h.BodySize += 3 }), ErrTruncated},
		{"new digest", old, raw(t, old, new, append(bytes.Clone(good), 0), func(h *Header) { h.NewSHA256[0] ^= 1 }), ErrNewDigest},
		{"add past end of old", old, raw(t, old, new, append(block(old, 16, [][3]int64{{8, 10, 6}}, zeroDiff(old[:10]), []byte("ABCDEF")), 0), nil), ErrBounds},
		{"seek before start of old", old, raw(t, old, new, append(block(old, 16, [][3]int64{{-1, 10, 6}}, zeroDiff(old[:10]), []byte("ABCDEF")), 0), nil), ErrBounds},
		{"seek past end of old", old, raw(t, old, new, append(block(old, 16, [][3]int64{{17, 0, 16}}, nil, new), 0), nil), ErrBounds},
		{"output longer than declared", old, raw(t, old, new, append(block(old, 17, [][3]int64{{0, 10, 7}}, zeroDiff(old[:10]), []byte("ABCDEFG")), 0), nil), ErrBounds},
		{"output shorter than declared", old, raw(t, old, new, append(block(old, 15, [][3]int64{{0, 10, 5}}, zeroDiff(old[:10]), []byte("ABCDE")), 0), nil), ErrCorrupt},
		{"block above block size", old, raw(t, old, new, append(bytes.Clone(good), 0), func(h *Header) { h.BlockSize = 8 }), ErrBounds},
		{"control above bound", old, raw(t, old, new, append(bytes.Clone(good), 0), func(h *Header) { h.CtrlSize = 2 }), ErrBounds},
		{"operation outside block", old, raw(t, old, new, append(block(old, 16, [][3]int64{{0, 10, 7}}, zeroDiff(old[:10]), []byte("ABCDEF")), 0), nil), ErrBounds},
		{"operations short of block", old, raw(t, old, new, append(block(old, 16, [][3]int64{{0, 10, 5}}, zeroDiff(old[:10]), []byte("ABCDEF")), 0), nil), ErrBounds}, // the decoder reads on: an empty operation
		{"empty operation", old, raw(t, old, new, append(block(old, 16, [][3]int64{{0, 0, 0}, {0, 10, 6}}, zeroDiff(old[:10]), []byte("ABCDEF")), 0), nil), ErrBounds},
		// A coded section's last bytes may be followed by up to codedPad
		// zeros, which the decoder reads as the implied ones: one more
		// byte is left unread.
		{"coded diff too long", old, raw(t, old, new, append(block(old, 16, [][3]int64{{0, 10, 6}}, append(zeroDiff(old[:10]), 0, 0, 0, 0), []byte("ABCDEF")), 0), nil), ErrCorrupt},
		{"data after end marker", old, raw(t, old, new, append(bytes.Clone(good), 0, 1), nil), ErrCorrupt},
		{"no end marker", old, raw(t, old, new, good, nil), ErrTruncated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := applyPatch(tc.old, tc.patch)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			_ = out
		})
	}
}

// rehead returns a copy of patch with its header bytes changed by mut and
// the header checksum recomputed.
func rehead(patch []byte, mut func(b []byte)) []byte {
	c := bytes.Clone(patch)
	mut(c[:HeaderSize])
	binary.LittleEndian.PutUint32(c[112:], crc32.Checksum(c[:112], crcTable))
	return c
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x10
	return c
}

// TestBitFlips flips every bit of the body of a real patch: each must give
// a sentinel error (never a panic, never a wrong image reported as good).
func TestBitFlips(t *testing.T) {
	old := codeLike(4, 4000)
	new := shiftPointers(old, 16, 2000, []byte("new"))
	patch := createPatch(t, old, new, nil)
	sentinels := []error{ErrCorrupt, ErrTruncated, ErrBounds, ErrNewDigest, ErrTrailingData, ErrMagic, ErrVersion}
	for i := 0; i < len(patch)*8; i += 3 {
		p := bytes.Clone(patch)
		p[i/8] ^= 1 << (i % 8)
		out, _, err := applyPatch(old, p)
		if err == nil {
			if bytes.Equal(out, new) {
				continue // a flip in a don't-care bit (e.g. zstd padding)
			}
			t.Fatalf("bit %d flipped: Apply succeeded with a wrong image", i)
		}
		ok := false
		for _, s := range sentinels {
			ok = ok || errors.Is(err, s)
		}
		if !ok || !errors.Is(err, ErrRejected) {
			t.Fatalf("bit %d flipped: error %v wraps no sentinel", i, err)
		}
	}
}

func TestReadHeaderBounds(t *testing.T) {
	old, new := []byte("a"), []byte("b")
	for name, fix := range map[string]func(h *Header){
		"v2 window above max": func(h *Header) { h.Version, h.Algorithm, h.Window = 2, AlgBlocksZstd, MaxWindow*2 },
		"v2 window not pow2":  func(h *Header) { h.Version, h.Algorithm, h.Window = 2, AlgBlocksZstd, 3<<10 },
		"v3 window":           func(h *Header) { h.Window = 1 << 10 },
		"block above max":     func(h *Header) { h.BlockSize = MaxBlockSize + 1 },
		"control above max":   func(h *Header) { h.CtrlSize = MaxCtrlSize + 1 },
		"model above max":     func(h *Header) { h.ModelBits = MaxModelBits + 1 },
		"old size above max":  func(h *Header) { h.OldSize = MaxImageSize + 1 },
		"new size above max":  func(h *Header) { h.NewSize = MaxImageSize + 1 },
	} {
		t.Run(name, func(t *testing.T) {
			h := &Header{Version: Version, Algorithm: AlgBlocks, BlockSize: 1 << 10, CtrlSize: 64,
				ModelBits: MinModelBits, OldSize: 1, NewSize: 1, BodySize: 10,
				OldSHA256: sha256.Sum256(old), NewSHA256: sha256.Sum256(new)}
			b, err := h.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			fix(h)
			if _, err := h.MarshalBinary(); !errors.Is(err, ErrBounds) {
				t.Fatalf("MarshalBinary: err = %v, want ErrBounds", err)
			}
			// Write the bad fields by hand, with a valid checksum.
			le := binary.LittleEndian
			le.PutUint16(b[8:], h.Version)
			b[10] = byte(h.Algorithm)
			b[11] = h.ModelBits
			le.PutUint32(b[12:], h.Window)
			le.PutUint32(b[16:], h.BlockSize)
			le.PutUint32(b[20:], h.CtrlSize)
			le.PutUint64(b[24:], uint64(h.OldSize))
			le.PutUint64(b[32:], uint64(h.NewSize))
			le.PutUint32(b[112:], crc32.Checksum(b[:112], crcTable))
			if _, err := ReadHeader(bytes.NewReader(b)); !errors.Is(err, ErrBounds) {
				t.Fatalf("ReadHeader: err = %v, want ErrBounds", err)
			}
		})
	}
}

// leastAlloc returns the bytes f allocates. TotalAlloc counts every
// goroutine's allocations (one an earlier test left running adds to them),
// so the least of five runs is the figure.
func leastAlloc(f func() any) uint64 {
	least := uint64(math.MaxUint64)
	for range 5 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := f()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(x)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	return least
}

// TestModelMemory checks modelMemory (hence Header.MaxApplyMemory) against
// what newDiffModel really allocates.
func TestModelMemory(t *testing.T) {
	for _, bits := range []int{MinModelBits, DefaultModelBits, MaxModelBits} {
		got := leastAlloc(func() any { return newDiffModel(bits) })
		if got > uint64(modelMemory(bits)) {
			t.Errorf("model bits %d: newDiffModel allocated %d bytes, modelMemory says %d", bits, got, modelMemory(bits))
		}
		if tables := uint64(modelMemory(bits) - modelFixed); got < tables {
			t.Errorf("model bits %d: newDiffModel allocated %d bytes, less than its tables' %d", bits, got, tables)
		}
	}
}

// TestLitCtrlMemory checks litMemory and ctrlMemory against what
// newLitModel and newCtrlModel really allocate.
func TestLitCtrlMemory(t *testing.T) {
	alloc := leastAlloc
	for _, bits := range []int{MinModelBits, DefaultModelBits, MaxModelBits} {
		got := alloc(func() any { return newLitModel(bits) })
		if got > uint64(litMemory(bits)) || got < uint64(litMemory(bits)-litFixed) {
			t.Errorf("model bits %d: newLitModel allocated %d bytes, litMemory says %d (fixed part %d)", bits, got, litMemory(bits), litFixed)
		}
	}
	if got := alloc(func() any { return newCtrlModel() }); got > ctrlMemory {
		t.Errorf("newCtrlModel allocated %d bytes, ctrlMemory says %d", got, ctrlMemory)
	}
	h := Header{Version: Version, BlockSize: DefaultBlockSize, CtrlSize: DefaultCtrlSize, ModelBits: DefaultModelBits}
	t.Logf("MaxApplyMemory with the defaults: %d bytes (version 2 with its defaults: %d)", h.MaxApplyMemory(), (&Header{Version: 2, Window: 2 << 20, BlockSize: 1 << 20, CtrlSize: 256 << 10, ModelBits: DefaultModelBits}).MaxApplyMemory())
}

// TestApplyMemoryFlat checks that Apply's allocations do not grow with the
// image: a 16 MiB image allocates about what a 1 MiB one does, and both stay
// within the header's bound.
func TestApplyMemoryFlat(t *testing.T) {
	measure := func(size int) (uint64, *Header) {
		old := bytes.Repeat(codeLike(uint64(size), 64<<10), size/(64<<10))
		new := bytes.Clone(old)
		for i := 0; i < size; i += 32 << 10 {
			new[i] ^= 0x55 // scattered changes: a diff in every block
		}
		var patch bytes.Buffer
		// Identity-aligned operations, built without the suffix array.
		h, err := writePatch(context.Background(), old, new, &patch, nil, func(emit emitFunc) error { return emit(0, size, 0) }, false)
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if _, err := Apply(context.Background(), bytes.NewReader(old), int64(size), bytes.NewReader(patch.Bytes()), io.Discard); err != nil {
			t.Fatalf("Apply %d: %v", size, err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc, h
	}
	small, h := measure(1 << 20)
	large, _ := measure(16 << 20)
	t.Logf("Apply allocated %d bytes for 1 MiB, %d for 16 MiB (bound %d)", small, large, h.MaxApplyMemory())
	if limit := uint64(h.MaxApplyMemory()) + 1<<20; small > limit || large > limit {
		t.Fatalf("allocation above the header bound %d: 1 MiB %d, 16 MiB %d", limit, small, large)
	}
	if large > small+small/4 {
		t.Fatalf("allocation grows with the image: 1 MiB %d bytes, 16 MiB %d bytes", small, large)
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	old := codeLike(5, 30000)
	new := shiftPointers(old, 4, 100, []byte("hello"))
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldP, newP := write("old", old), write("new", new)
	patchP := filepath.Join(dir, "p.patch")
	ctx := context.Background()
	if _, err := CreateFile(ctx, oldP, newP, patchP, nil); err != nil {
		t.Fatal(err)
	}
	outP := filepath.Join(dir, "out")
	if _, err := ApplyFile(ctx, oldP, patchP, outP); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(outP); !bytes.Equal(got, new) {
		t.Fatal("ApplyFile output differs")
	}
	// Failures leave nothing behind.
	list := func() []string {
		es, _ := os.ReadDir(dir)
		var n []string
		for _, e := range es {
			n = append(n, e.Name())
		}
		return n
	}
	before := list()
	if _, err := ApplyFile(ctx, newP, patchP, filepath.Join(dir, "bad")); !errors.Is(err, ErrWrongBase) {
		t.Fatalf("wrong base: %v", err)
	}
	patch, _ := os.ReadFile(patchP)
	badP := write("bad.patch", patch[:len(patch)-5])
	before = append(before, "bad.patch")
	sort.Strings(before)
	if _, err := ApplyFile(ctx, oldP, badP, filepath.Join(dir, "bad")); !errors.Is(err, ErrTruncated) {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := ApplyFile(ctx, oldP, patchP, oldP); err == nil {
		t.Fatal("ApplyFile over its own old image succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := CreateFile(cctx, oldP, newP, filepath.Join(dir, "c.patch"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled CreateFile: %v", err)
	}
	if after := list(); !equalStrings(before, after) {
		t.Fatalf("files after failures: %v, want %v", after, before)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	old := codeLike(1, 10000)
	if _, err := Create(ctx, old, old, io.Discard, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Create: %v", err)
	}
	patch := createPatch(t, old, old, nil)
	if _, err := Apply(ctx, bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch), io.Discard); !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply: %v", err)
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []Options{{BlockSize: MaxBlockSize + 1}, {CtrlSize: 5}, {ModelBits: 30}} {
		if _, err := Create(context.Background(), nil, nil, io.Discard, &o); err == nil {
			t.Errorf("Create accepted options %+v", o)
		}
	}
}

func zstdNoCRC(w io.Writer) (*zstd.Encoder, error) {
	return zstd.NewWriter(w, zstd.WithWindowSize(1<<10), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
}

func BenchmarkCreate(b *testing.B) {
	old := codeLike(30, 1<<20)
	new := shiftPointers(old, 16, 5000, gen(31, 2000))
	b.SetBytes(int64(len(new)))
	for b.Loop() {
		if _, err := Create(context.Background(), old, new, io.Discard, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApply(b *testing.B) {
	old := codeLike(30, 1<<20)
	new := shiftPointers(old, 16, 5000, gen(31, 2000))
	patch := createPatch(b, old, new, nil)
	b.SetBytes(int64(len(new)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Apply(context.Background(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApplyIdentical(b *testing.B) {
	old := gen(32, 8<<20)
	patch := createPatch(b, old, old, nil)
	b.SetBytes(int64(len(old)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Apply(context.Background(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// ErrRejected covers every refusal of a patch, so callers (the CLI's exit
// code, the device) test one sentinel; option and size errors of Create
// are not refusals of a patch.
func TestErrRejectedCoversRefusals(t *testing.T) {
	for _, s := range []error{ErrMagic, ErrVersion, ErrBounds, ErrCorrupt, ErrTruncated, ErrTrailingData, ErrWrongBase, ErrNewDigest} {
		if !errors.Is(s, ErrRejected) || !errors.Is(fmt.Errorf("context: %w", s), ErrRejected) {
			t.Errorf("%v does not match ErrRejected", s)
		}
		if errors.Is(ErrRejected, s) {
			t.Errorf("ErrRejected matches %v", s)
		}
	}
	for _, s := range []error{ErrOptions, ErrTooLarge} {
		if errors.Is(s, ErrRejected) {
			t.Errorf("%v matches ErrRejected", s)
		}
	}
	// A real refusal: a patch applied to the wrong base.
	old, new := codeLike(5, 3000), codeLike(6, 3000)
	patch := createPatch(t, old, new, nil)
	if _, _, err := applyPatch(new, patch); !errors.Is(err, ErrWrongBase) || !errors.Is(err, ErrRejected) {
		t.Fatalf("wrong base: %v, want ErrWrongBase matching ErrRejected", err)
	}
}

// InspectFile gives a patch file's header, digest and size, and refuses a
// file whose size is not the one its header declares.
func TestInspectFile(t *testing.T) {
	dir := t.TempDir()
	old := codeLike(7, 5000)
	new := shiftPointers(old, 8, 300, []byte("v2"))
	patch := createPatch(t, old, new, nil)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	info, err := InspectFile(write("good", patch))
	sum := sha256.Sum256(patch)
	if err != nil || info.Size != int64(len(patch)) || info.Digest != "sha256:"+hex.EncodeToString(sum[:]) || info.NewSize != int64(len(new)) {
		t.Fatalf("InspectFile: %+v, %v", info, err)
	}
	if _, err := InspectFile(write("short", patch[:len(patch)-1])); !errors.Is(err, ErrTruncated) {
		t.Errorf("short file: %v, want ErrTruncated", err)
	}
	if _, err := InspectFile(write("long", append(bytes.Clone(patch), 0))); !errors.Is(err, ErrTrailingData) {
		t.Errorf("long file: %v, want ErrTrailingData", err)
	}
	if _, err := InspectFile(write("junk", []byte("not a patch"))); !errors.Is(err, ErrRejected) {
		t.Errorf("junk: %v, want a rejection", err)
	}
}

// envFiles reads the files that the environment variables vars name,
// and skips b unless every one is set: benchmarks on real pairs, which
// the repository does not carry.
func envFiles(b *testing.B, vars ...string) [][]byte {
	var out [][]byte
	for _, v := range vars {
		path := os.Getenv(v)
		if path == "" {
			b.Skipf("set %s", strings.Join(vars, " and "))
		}
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// BenchmarkApplyFiles applies the patch UPKIT_APPLY_PATCH to the image
// UPKIT_APPLY_OLD (both from disk, read once): a profile of apply on a
// real pair (go test -bench ApplyFiles -cpuprofile).
func BenchmarkApplyFiles(b *testing.B) {
	f := envFiles(b, "UPKIT_APPLY_OLD", "UPKIT_APPLY_PATCH")
	old, patch := f[0], f[1]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Apply(context.Background(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateFiles creates the patch from UPKIT_CREATE_OLD to
// UPKIT_CREATE_NEW (both read once): a profile of create on a real pair.
func BenchmarkCreateFiles(b *testing.B) {
	f := envFiles(b, "UPKIT_CREATE_OLD", "UPKIT_CREATE_NEW")
	old, new := f[0], f[1]
	b.SetBytes(int64(len(new)))
	for b.Loop() {
		if _, err := Create(context.Background(), old, new, io.Discard, nil); err != nil {
			b.Fatal(err)
		}
	}
}
