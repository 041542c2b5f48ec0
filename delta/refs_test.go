package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// TestRefKinds checks each kind of reference on its own: an instruction
// (or pointer) at address 0x101000 refers to 0x103000 in old; the target
// map moves 0x103000 by 0x120 while the instruction stays; predict must
// rewrite it to point at 0x103120, and decoding the rewritten bytes as Create does
// (its votes) must give back exactly that move.
func TestRefKinds(t *testing.T) {
	le := binary.LittleEndian
	w32 := func(ws ...uint32) []byte {
		var b []byte
		for _, w := range ws {
			b = le.AppendUint32(b, w)
		}
		return b
	}
	h16 := func(hs ...uint16) []byte {
		var b []byte
		for _, h := range hs {
			b = le.AppendUint16(b, h)
		}
		return b
	}
	// Targets are 0x2000 bytes after the instruction.
	cases := []struct {
		name string
		arch uint8
		bits uint8
		kind uint8 // of the segment holding the instruction
		code []byte
	}{
		{"x86-64 call rel32", archX86, 64, segCode, append([]byte{0xE8}, w32(0x2000-5)...)},
		{"x86-64 jmp rel32", archX86, 64, segCode, append([]byte{0xE9}, w32(0x2000-5)...)},
		{"x86-64 jcc rel32", archX86, 64, segCode, append([]byte{0x0F, 0x85}, w32(0x2000-6)...)},
		{"x86-64 lea rip", archX86, 64, segCode, append([]byte{0x48, 0x8D, 0x05}, w32(0x2000-7)...)},
		{"x86-64 call [rip]", archX86, 64, segCode, append([]byte{0xFF, 0x15}, w32(0x2000-6)...)},
		{"x86-64 cmp [rip], imm8", archX86, 64, segCode, append(append([]byte{0x83, 0x3D}, w32(0x2000-7)...), 0)},
		{"x86-64 mov [rip], imm32", archX86, 64, segCode, append(append([]byte{0xC7, 0x05}, w32(0x2000-10)...), 1, 0, 0, 0)},
		{"x86-64 movzx rip", archX86, 64, segCode, append([]byte{0x0F, 0xB6, 0x05}, w32(0x2000-7)...)},
		{"x86-64 pointer", archX86, 64, segData, binary.LittleEndian.AppendUint64(nil, 0x103000)},
		{"arm64 bl", archARM64, 64, segCode, w32(0x94000000 | 0x2000>>2)},
		{"arm64 b", archARM64, 64, segCode, w32(0x14000000 | 0x2000>>2)},
		{"arm64 b.cond", archARM64, 64, segCode, w32(0x54000001 | (0x2000>>2)<<5)},
		{"arm64 cbz", archARM64, 64, segCode, w32(0xB4000003 | (0x2000>>2)<<5)},
		{"arm64 tbz", archARM64, 64, segCode, w32(0x36180002 | (0x2000>>2)<<5)},
		{"arm64 ldr literal", archARM64, 64, segCode, w32(0x58000005 | (0x2000>>2)<<5)},
		{"arm64 adr", archARM64, 64, segCode, w32(0x10000004 | (0x2000>>2)<<5)},
		{"arm64 adrp+add", archARM64, 64, segCode, w32(0x90000001|2<<29, 0xAA0103E0, 0x91000000|1<<5|2)},
		{"arm64 adrp+ldr", archARM64, 64, segCode, w32(0x90000003|2<<29, 0xF9400000|3<<5|4)},
		{"arm64 pointer", archARM64, 64, segData, binary.LittleEndian.AppendUint64(nil, 0x103000)},
		{"arm bl", archARM32, 32, segCode, w32(0xEB000000 | (0x2000-8)>>2)},
		{"arm b.ne", archARM32, 32, segCode, w32(0x1A000000 | (0x2000-8)>>2)},
		{"arm pointer", archARM32, 32, segCode, w32(0x103000)},
		{"thumb bl", archThumb, 32, segCode, h16(0xF000|(0x2000-4)>>12, 0xF800|(0x2000-4)>>1&0x7FF)},
		{"thumb b.w", archThumb, 32, segCode, h16(0xF000|(0x2000-4)>>12, 0xB800|(0x2000-4)>>1&0x7FF)},
		{"rela entry", archARM64, 64, segRela, append(append(le.AppendUint64(nil, 0x103000), le.AppendUint64(nil, 1027)...), le.AppendUint64(nil, 0x103000)...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			segs := []segment{{off: 0, size: 0x100, vaddr: 0x101000, kind: tc.kind}, {off: 0x100, size: 0x2000, vaddr: 0x102F00, kind: segCode}}
			m := &refModel{arch: tc.arch, ptrBits: tc.bits, old: segs, new: segs,
				tab: []shiftEntry{{start: 0, shift: 0}, {start: 0x103000, shift: 0x120}, {start: 0x103001, shift: 0}}}
			m.bounds()
			pred := bytes.Clone(tc.code)
			m.predict(pred, 0, 0)
			if bytes.Equal(pred, tc.code) {
				t.Fatalf("not rewritten: % x", pred)
			}
			var votes []vote
			m.scan(bytes.Clone(tc.code), pred, 0, 0, &votes)
			if len(votes) == 0 {
				t.Fatalf("rewritten % x to % x, which decodes to no reference", tc.code, pred)
			}
			for _, v := range votes {
				if v.t != 0x103000 || v.shift != 0x120 {
					t.Fatalf("rewritten % x to % x: target %#x moved by %#x, want 0x3000 by 0x120", tc.code, pred, v.t, v.shift)
				}
			}
			// Moved with its target, the instruction stays as it was.
			same := bytes.Clone(tc.code)
			m.tab = []shiftEntry{{start: 0, shift: 0}}
			m.predict(same, 0, 0)
			if !bytes.Equal(same, tc.code) {
				t.Fatalf("unmoved target: % x rewritten to % x", tc.code, same)
			}
		})
	}
}

// TestRefsPrograms diffs synthetic programs of each architecture whose
// functions all moved: the patch must round-trip, Create must pick the
// right architecture, and predicting references must make the patch much
// smaller than plain bytes do.
func TestRefsPrograms(t *testing.T) {
	for _, arch := range []uint8{archX86, archARM64, archARM32, archThumb} {
		p := newSynthProg(arch, uint64(arch), 600)
		old, new := p.image(1), p.image(2)
		t.Run((&refModel{arch: arch}).String(), func(t *testing.T) {
			var list []op
			if err := diff(context.Background(), old, new, func(a, b, c int) error { list = append(list, op{a, b, c}); return nil }); err != nil {
				t.Fatal(err)
			}
			m := chooseRefs(old, new, list)
			if m == nil || m.arch != arch {
				t.Fatalf("chose %v, want arch %d", m, arch)
			}
			with := createPatch(t, old, new, nil)
			without := createPatch(t, old, new, &Options{noRefs: true})
			got, _, err := applyPatch(old, with)
			if err != nil || !bytes.Equal(got, new) {
				t.Fatalf("apply: %v", err)
			}
			t.Logf("%d bytes: patch %d with references, %d without", len(new), len(with), len(without))
			if 10*len(with) > 6*len(without) {
				t.Fatalf("patch with references %d bytes, without %d: want at most 0.6x", len(with), len(without))
			}
		})
	}
}

// TestRefsSection round-trips the refs section and refuses bad ones.
func TestRefsSection(t *testing.T) {
	m := &refModel{arch: archARM64, ptrBits: 64,
		old: []segment{{off: 0, size: 100, vaddr: 0x1000, kind: segCode}, {off: 100, size: 50, vaddr: 0x9000, kind: segRela}, {vaddr: 0xA000, size: 10, kind: segBss}},
		new: []segment{{off: 0, size: 120, vaddr: 0x1000, kind: segCode}},
		tab: []shiftEntry{{start: 0x1000, shift: -4}, {start: 0x1004, shift: 12}, {start: 0x9000, shift: 1 << 20}}}
	m.bounds()
	for _, v := range []uint16{3, 4} {
		t.Run(fmt.Sprintf("version %d", v), func(t *testing.T) { testRefsSection(t, m, v) })
	}
}

func testRefsSection(t *testing.T, m *refModel, v uint16) {
	b := appendRefs(nil, m, v)
	got, err := readRefs(bytes.NewReader(b), 150, 120, v)
	if err != nil || !refsEqual(got, m) || got.lo != m.lo || got.hi != m.hi {
		t.Fatalf("round trip: %v %v", got, err)
	}
	bad := func(name string, mut func(m *refModel), oldSize int64) {
		t.Helper()
		c := *m
		c.old = append([]segment(nil), m.old...)
		c.tab = append([]shiftEntry(nil), m.tab...)
		mut(&c)
		if _, err := readRefs(bytes.NewReader(appendRefs(nil, &c, v)), oldSize, 120, v); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	bad("segment past the image", func(m *refModel) {}, 149)
	bad("overlapping segments", func(m *refModel) { m.old[1].off = 99 }, 150)
	bad("empty segment", func(m *refModel) { m.old[0].size = 0 }, 150)
	bad("bss with an offset", func(m *refModel) { m.old[2].off = 1 }, 150)
	bad("segment kind", func(m *refModel) { m.old[0].kind = 9 }, 150)
	bad("repeated target start", func(m *refModel) { m.tab[1].start = m.tab[0].start }, 150)
	bad("too many segments", func(m *refModel) {
		for len(m.old) <= MaxRefSegments {
			m.old = append(m.old, segment{vaddr: 0xB000, size: 1, kind: segBss})
		}
	}, 150)
	for _, b := range [][]byte{{archMax + 1}, {archX86, 16}, {archX86, 64, 0x80}} {
		if _, err := readRefs(bytes.NewReader(b), 10, 10, v); err == nil {
			t.Errorf("% x: accepted", b)
		}
	}
	// Too many target ranges: refused from the count, before reading them.
	c := appendRefs(nil, &refModel{arch: archX86, ptrBits: 64}, 3) // ends with the count, 0
	c = binary.AppendUvarint(c[:len(c)-1], MaxRefEntries+1)
	if _, err := readRefs(bytes.NewReader(c), 10, 10, v); err == nil {
		t.Errorf("%d target ranges accepted", MaxRefEntries+1)
	}
	// Every truncation is an error.
	for i := range b {
		if _, err := readRefs(bytes.NewReader(b[:i]), 150, 120, v); err == nil {
			t.Errorf("truncated at %d of %d: accepted", i, len(b))
		}
	}
}

// TestCapEntries checks that a target map over the limit keeps its best
// supported entries and stays sorted.
func TestCapEntries(t *testing.T) {
	tab := []shiftEntry{{0, 0}, {10, 5}, {20, 0}, {30, 7}, {40, 9}}
	got := capEntries(append([]shiftEntry(nil), tab...), []int{9, 1, 8, 2, 6}, 3)
	want := []shiftEntry{{0, 0}, {40, 9}}
	// Dropping entries 1 and 3 (least support) leaves 0, 20 (same shift as
	// 0: merged) and 40.
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("capEntries = %v, want %v", got, want)
	}
	if got := capEntries(tab, []int{1, 1, 1, 1, 1}, 5); len(got) != 5 {
		t.Fatalf("under the limit: %v", got)
	}
}

// TestRefTabCoded: version 4's coded target map round-trips, falls back to
// varint pairs for values the coder does not hold, and refuses a coded
// length beyond its bound, bytes left unread and a map that ends early.
func TestRefTabCoded(t *testing.T) {
	tab := []shiftEntry{{start: 0x1000, shift: 0}, {start: 0x1040, shift: 48}, {start: 0x1100, shift: 0},
		{start: 0x1200, shift: 48}, {start: 0x2000, shift: -56}, {start: 0x2400, shift: 48}}
	read := func(b []byte, n int) ([]shiftEntry, error) {
		got := make([]shiftEntry, n)
		return got, readRefTab(bytes.NewReader(b), got)
	}
	b := appendRefTab(nil, tab)
	if b[0] == 0 {
		t.Fatal("a small map was written as varint pairs")
	}
	if got, err := read(b, len(tab)); err != nil || !slices.Equal(got, tab) {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	// A shift change of 2^47 does not fit the coder: varint pairs.
	far := []shiftEntry{{start: 0x1000, shift: 0}, {start: 0x2000, shift: 1 << 47}}
	if fb := appendRefTab(nil, far); fb[0] != 0 {
		t.Errorf("a shift change of 2^47 was coded")
	} else if got, err := read(fb, len(far)); err != nil || !slices.Equal(got, far) {
		t.Errorf("varint fallback round trip: %v, %v", got, err)
	}

	n, k := binary.Uvarint(b)
	coded := b[k:]
	for _, tt := range []struct {
		name    string
		b       []byte
		corrupt bool // ErrCorrupt; else the reader's own error
	}{
		// 32 bytes a range plus 8 is the bound, checked before decoding.
		{"coded length above its bound", binary.AppendUvarint(nil, uint64(len(tab))*32+9), true},
		// Bytes past the implied zeros stay unread.
		{"bytes left unread", append(binary.AppendUvarint(nil, n+4), append(bytes.Clone(coded), 1, 2, 3, 4)...), true},
		{"truncated", append(binary.AppendUvarint(nil, n), coded[:len(coded)-1]...), false},
	} {
		_, err := read(tt.b, len(tab))
		if err == nil || tt.corrupt != errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v (want ErrCorrupt: %v)", tt.name, err, tt.corrupt)
		}
	}
}
