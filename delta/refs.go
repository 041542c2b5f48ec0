package delta

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Executable references (format version 3).
//
// In an executable, a function that moved changes every instruction that
// refers to it: calls, jumps, address computations, pointers. bsdiff-style
// matching turns those into diff bytes, one or more per reference, and a
// version jump has millions of them. Version 3 predicts them instead: where
// an add run's old bytes hold a reference (an x86-64 rel32 call, jump or
// RIP-relative operand, an AArch64 branch, literal load, ADR or ADRP pair,
// an A32 or Thumb-2 branch, a pointer in a relocation table), both sides
// compute the old target T, look up how far T moved (the patch's target
// map: old address ranges and their shift, sorted by old address), and
// rewrite the reference so that it points at T's new place from the run's
// new position. The diff is then coded against these predicted bytes
// instead of the old ones, so a reference whose target moved with its
// neighbours costs nothing. The patch carries the segment layout of both
// images (file offset to virtual address) and the target map; apply holds
// both, bounded by MaxRefSegments and MaxRefEntries, whatever the image
// size. The scan is a deterministic function of the old bytes of the run,
// its offsets and these tables, so encoder and decoder agree whatever the
// input (a wrong guess only costs diff bytes).

// Reference architectures (refs section, first byte).
const (
	archNone  = 0 // no references: the section is one zero byte
	archX86   = 1 // x86-64: rel32 E8/E9/0F 8x, RIP-relative FF 15/25 and 89/8B/8D, 64-bit pointers
	archARM64 = 2 // AArch64: B/BL, B.cond, CBZ/CBNZ, TBZ/TBNZ, LDR literal, ADR, ADRP+ADD/LDR/STR, 64-bit pointers
	archARM32 = 3 // A32: B/BL, 32-bit pointers
	archThumb = 4 // Thumb-2: BL, B.W, 32-bit pointers
	archMax   = archThumb
)

var archNames = [...]string{"none", "x86-64", "arm64", "arm", "thumb"}

// Limits of the refs section, checked before anything is allocated.
const (
	// MaxRefSegments bounds the segments described for each image.
	MaxRefSegments = 64
	// MaxRefEntries bounds the target map (16 bytes each in memory: 2 MiB).
	MaxRefEntries = 128 << 10
)

// refsMemory bounds the memory of a refs section: the target map and both
// segment lists at their limits.
const refsMemory = 16*MaxRefEntries + 2*MaxRefSegments*32

// Segment kinds.
const (
	segData = 0 // pointers only
	segCode = 1 // instructions and pointers
	segRela = 2 // ELF RELA table: r_offset and r_addend of each 24-byte entry are pointers
	segBss  = 3 // addresses without file bytes (.bss): targets only; off is 0
)

// segment maps file offsets [off, off+size) to virtual addresses from vaddr.
type segment struct {
	off, size, vaddr uint64
	kind             uint8
}

// shiftEntry: old targets from start (virtual address) up to the next
// entry's start move by shift.
type shiftEntry struct {
	start uint64
	shift int64
}

// refModel is the refs section: architecture, both images' segments and
// the target map.
type refModel struct {
	arch     uint8
	ptrBits  uint8 // pointer width of the images: 32 or 64
	old, new []segment
	tab      []shiftEntry
	// vaddr bounds of old's segments (a pointer or target must be inside one)
	lo, hi uint64
	view   bool // Create only: see piece.view
}

func (m *refModel) active() bool { return m != nil && m.arch != archNone }

// targetShift returns how far old target t moved.
func (m *refModel) targetShift(t uint64) int64 {
	tab := m.tab
	if len(tab) == 0 {
		return 0
	}
	// The first entry starting after t (sort.Search's answer, without
	// its closure call per probe: this runs for every reference).
	lo, hi := 0, len(tab)
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		if tab[h].start > t {
			hi = h
		} else {
			lo = h + 1
		}
	}
	if lo == 0 {
		return tab[0].shift
	}
	return tab[lo-1].shift
}

// inOld reports whether t is inside one of old's segments (code only if
// code is set).
func (m *refModel) inOld(t uint64, code bool) bool {
	if t < m.lo || t >= m.hi {
		return false
	}
	for i := range m.old {
		s := &m.old[i]
		if t >= s.vaddr && t-s.vaddr < s.size {
			return !code || s.kind == segCode
		}
	}
	return false
}

// segAt returns the segment of segs holding file offset off and the end of
// the piece it covers, or -1 and the next segment's start (or max) in a gap.
func segAt(segs []segment, off uint64) (int, uint64) {
	next := ^uint64(0)
	for i := range segs {
		s := &segs[i]
		if s.kind == segBss {
			continue
		}
		if off >= s.off && off-s.off < s.size {
			return i, s.off + s.size
		}
		if s.off > off && s.off < next {
			next = s.off
		}
	}
	return -1, next
}

// predict rewrites in place the references found in buf, the old bytes of
// an add run that starts at file offset oldPos in old and newPos in new,
// so that they point where their targets moved. Encoder and decoder call
// it on the same bytes and get the same result.
func (m *refModel) predict(buf []byte, oldPos, newPos int64) {
	m.scan(buf, nil, oldPos, newPos, nil)
}

// scan is predict, or with nb (the new bytes of the run) the vote count
// of Create: see piece.
func (m *refModel) scan(buf, nb []byte, oldPos, newPos int64, votes *[]vote) {
	if !m.active() || len(buf) == 0 {
		return
	}
	n := uint64(len(buf))
	for a := uint64(0); a < n; {
		oi, oend := segAt(m.old, uint64(oldPos)+a)
		ni, nend := segAt(m.new, uint64(newPos)+a)
		b := min(n, oend-uint64(oldPos), nend-uint64(newPos))
		if b <= a { // cannot happen: segAt's end is past the offset
			return
		}
		if oi >= 0 && ni >= 0 {
			os, ns := &m.old[oi], &m.new[ni]
			ov := os.vaddr + (uint64(oldPos) + a - os.off)
			nv := ns.vaddr + (uint64(newPos) + a - ns.off)
			p := piece{m: m, buf: buf[a:b], ov: ov, nv: nv, seg: os.vaddr, votes: votes, view: m.view}
			if nb != nil {
				p.nb = nb[a:b]
			}
			switch {
			case os.kind == segRela && ns.kind == segRela && m.ptrBits == 64:
				p.rela()
			case os.kind == segCode && ns.kind == segCode:
				switch m.arch {
				case archX86:
					p.x86()
				case archARM64:
					p.arm64()
				case archARM32:
					p.arm32()
				case archThumb:
					p.thumb()
				}
			default:
				p.pointers()
			}
		}
		a = b
	}
}

// piece is a stretch of an add run inside one old and one new segment:
// buf[i] is at old virtual address ov+i, and lands at new address nv+i.
type piece struct {
	m      *refModel
	buf    []byte
	ov, nv uint64
	seg    uint64 // virtual address of the old segment's start
	// Create only: nb holds the new bytes at the same places; instead of
	// rewriting, each reference whose instruction is the same in nb but
	// for its target adds a vote (old target, how far it moved).
	nb    []byte
	votes *[]vote
	// Create only: write the (projected) target itself instead of a
	// displacement, truncated to the field: references to corresponding
	// targets then read the same in both images' views, wherever they are.
	view bool
}

// vote: an old target t was found moved by shift at one reference.
type vote struct {
	t     uint64
	shift int64
}

func (p *piece) vote(t, nt uint64) {
	*p.votes = append(*p.votes, vote{t, int64(nt - t)})
}

// rel returns the displacement from npc to old target t's new place, or
// in a view (Create's matching) the new place itself.
func (p *piece) rel(t, npc uint64) int64 {
	if p.view {
		return int64(p.project(t))
	}
	return int64(p.project(t)) - int64(npc)
}

// project returns the new address of old target t.
func (p *piece) project(t uint64) uint64 { return uint64(int64(t) + p.m.targetShift(t)) }

func (p *piece) x86() {
	buf := p.buf
	for i := 0; i+5 <= len(buf); i++ {
		// Most byte pairs open nothing handled: one bit rejects them.
		if x := uint(buf[i])<<8 | uint(buf[i+1]); x86Pair[x>>3]>>(x&7)&1 == 0 {
			continue
		}
		k := x86Lead[buf[i]]
		// ol: bytes before the displacement; imm: bytes after it; op2:
		// bytes that must be the same in new for a vote.
		ol, imm, code := 0, 0, true
		switch {
		case k == leadRel:
			ol = 1
		case i+6 > len(buf):
		case k == lead0F:
			if buf[i+1]&0xF0 == 0x80 {
				ol = 2
			} else if i+7 <= len(buf) && x86ModRM0F[buf[i+1]] != 0 && buf[i+2]&0xC7 == 0x05 {
				ol, code = 3, false
				imm = [4]int{0, 0, 1, 4}[x86ModRM0F[buf[i+1]]]
			}
		case k == leadFF:
			if buf[i+1] == 0x15 || buf[i+1] == 0x25 {
				ol, code = 2, false
			}
		case buf[i+1]&0xC7 == 0x05: // k is leadModRM + the operand class
			ol, code = 2, false
			imm = [4]int{0, 0, 1, 4}[k-leadModRM]
		}
		if ol == 0 || i+ol+4+imm > len(buf) {
			continue
		}
		f := i + ol
		pc := p.ov + uint64(f+4+imm)
		t := pc + uint64(int64(int32(binary.LittleEndian.Uint32(buf[f:]))))
		if !p.m.inOld(t, code) {
			continue
		}
		npc := p.nv + uint64(f+4+imm)
		if debugMark != nil {
			debugMark(p.buf, f, 4)
		}
		if p.nb != nil {
			if bytes.Equal(p.nb[i:f], buf[i:f]) {
				p.vote(t, npc+uint64(int64(int32(binary.LittleEndian.Uint32(p.nb[f:])))))
			}
		} else if d := p.rel(t, npc); p.view || d == int64(int32(d)) {
			binary.LittleEndian.PutUint32(buf[f:], uint32(int32(d)))
		}
		i = f + 4 + imm - 1 // the loop's i++ steps past the operand
	}
}

// x86 operand classes of one-byte opcodes (x86ModRM) and of two-byte ones
// after 0F (x86ModRM0F): 0 no ModRM operand handled, 1 ModRM, 2 ModRM then
// an 8-bit immediate, 3 ModRM then a 32-bit immediate. A ModRM byte with
// mod 00 and r/m 101 is a RIP-relative 32-bit displacement.
var x86ModRM, x86ModRM0F [256]uint8

// x86Lead classes a first byte for piece.x86: 0 opens nothing it handles,
// else leadRel (E8, E9), lead0F, leadFF, or leadModRM plus the byte's
// x86ModRM class. x86Pair has a bit set for each pair of first two bytes
// (first<<8 | second) that may open an instruction piece.x86 handles: a
// superset of them, 8 KiB, so that the scan rejects most positions with
// one load from the L1 cache and a branch that is seldom taken.
var (
	x86Lead [256]uint8
	x86Pair [1 << 13]uint8
)

const (
	leadRel = 1 + iota
	lead0F
	leadFF
	leadModRM
)

func init() {
	for _, o := range []int{0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38} {
		for k := 0; k < 4; k++ {
			x86ModRM[o+k] = 1 // ALU r/m, reg and reg, r/m
		}
	}
	for _, o := range []int{0x63, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8B, 0x8D, 0xFE} {
		x86ModRM[o] = 1
	}
	for _, o := range []int{0x80, 0x83, 0xC0, 0xC1, 0xC6, 0x6B} {
		x86ModRM[o] = 2
	}
	for _, o := range []int{0x81, 0xC7, 0x69} {
		x86ModRM[o] = 3
	}
	for o := 0; o < 256; o++ {
		switch {
		case o >= 0x80 && o <= 0x8F, o == 0x38, o == 0x3A, o == 0x0F, o == 0x05, o == 0x0B, o == 0x31, o == 0xA2,
			o >= 0xC8 && o <= 0xCF, o == 0x0D, o == 0x18, o == 0x1F, o == 0x01, o == 0x00:
			// jcc (handled apart), escapes, no ModRM, hints and NOPs
		case o == 0x70 || o == 0x71 || o == 0x72 || o == 0x73 || o == 0xC2 || o == 0xC4 || o == 0xC5 || o == 0xC6 || o == 0xBA:
			x86ModRM0F[o] = 2
		default:
			x86ModRM0F[o] = 1
		}
	}
	for o := 0; o < 256; o++ {
		if x86ModRM[o] != 0 {
			x86Lead[o] = leadModRM + x86ModRM[o]
		}
	}
	x86Lead[0xE8], x86Lead[0xE9], x86Lead[0x0F], x86Lead[0xFF] = leadRel, leadRel, lead0F, leadFF
	for x := 0; x < 1<<16; x++ {
		a, b := x>>8, byte(x)
		var may bool
		switch k := x86Lead[a]; {
		case k == leadRel:
			may = true
		case k == lead0F:
			may = b&0xF0 == 0x80 || x86ModRM0F[b] != 0
		case k == leadFF:
			may = b == 0x15 || b == 0x25
		case k >= leadModRM:
			may = b&0xC7 == 0x05
		}
		if may {
			x86Pair[x>>3] |= 1 << (x & 7)
		}
	}
}

func sext(v uint32, bits uint) int64 { return int64(int32(v<<(32-bits))) >> (32 - bits) }

func fits(v int64, bits uint) bool { return v >= -(1<<(bits-1)) && v < 1<<(bits-1) }

func (p *piece) arm64() {
	buf := p.buf
	i := int((4 - p.ov&3) & 3)
	skip := -1 // a word already rewritten as the second half of an ADRP pair
	for ; i+4 <= len(buf); i += 4 {
		if i == skip {
			continue
		}
		w := binary.LittleEndian.Uint32(buf[i:])
		pc := p.ov + uint64(i)
		npc := p.nv + uint64(i)
		var lo, bits uint // immediate field: bits at lo, in words
		code := true
		switch {
		case w&0x7C000000 == 0x14000000: // B, BL
			lo, bits = 0, 26
		case w&0xFF000010 == 0x54000000, w&0x7E000000 == 0x34000000: // B.cond, CBZ/CBNZ
			lo, bits = 5, 19
		case w&0x7E000000 == 0x36000000: // TBZ/TBNZ
			lo, bits = 5, 14
		case w&0x3B000000 == 0x18000000: // LDR literal
			lo, bits, code = 5, 19, false
		case w&0x9F000000 == 0x10000000: // ADR
			imm := sext((w>>29)&3|(w>>5&0x7FFFF)<<2, 21)
			t := uint64(int64(pc) + imm)
			if p.nb != nil {
				if w2 := binary.LittleEndian.Uint32(p.nb[i:]); p.m.inOld(t, false) && w2&0x9F00001F == w&0x9F00001F {
					p.vote(t, uint64(int64(npc)+sext((w2>>29)&3|(w2>>5&0x7FFFF)<<2, 21)))
				}
			} else if p.m.inOld(t, false) {
				d := p.rel(t, npc)
				if p.view || fits(d, 21) {
					u := uint32(d) & 0x1FFFFF
					w = w&0x9F00001F | (u&3)<<29 | (u>>2)<<5
					binary.LittleEndian.PutUint32(buf[i:], w)
				}
			}
			continue
		case w&0x9F000000 == 0x90000000: // ADRP
			if j := p.adrp(w, i); j > 0 {
				skip = j
			}
			continue
		default:
			continue
		}
		mask := uint32(1)<<bits - 1
		t := uint64(int64(pc) + sext(w>>lo&mask, bits)*4)
		if !p.m.inOld(t, code) {
			continue
		}
		if p.nb != nil {
			if w2 := binary.LittleEndian.Uint32(p.nb[i:]); w2&^(mask<<lo) == w&^(mask<<lo) {
				p.vote(t, uint64(int64(npc)+sext(w2>>lo&mask, bits)*4))
			}
			continue
		}
		d := p.rel(t, npc)
		if p.view || d&3 == 0 && fits(d>>2, bits) {
			w = w&^(mask<<lo) | (uint32(d>>2)&mask)<<lo
			binary.LittleEndian.PutUint32(buf[i:], w)
		}
	}
}

// adrp handles the ADRP w at buf[i]: it looks for the instruction that adds
// the low 12 bits (ADD immediate, or a load or store with an unsigned
// offset, based on the same register) among the next four, rewrites both
// for the projected target and returns the index of the second (0 if none).
func (p *piece) adrp(w uint32, i int) int {
	buf := p.buf
	rd := w & 31
	for j := i + 4; j+4 <= len(buf) && j <= i+16; j += 4 {
		w2 := binary.LittleEndian.Uint32(buf[j:])
		var scale uint
		switch {
		case w2&0xFFC00000 == 0x91000000 && (w2>>5)&31 == rd: // ADD Xd, Xn, #imm12
		case w2&0x3B000000 == 0x39000000 && (w2>>5)&31 == rd: // LDR/STR unsigned offset
			scale = uint(w2 >> 30)
			if w2&(1<<26) != 0 && w2&(1<<23) != 0 {
				scale = 4 // 128-bit SIMD
			}
		default:
			if w2&0x9F000000 == 0x90000000 && w2&31 == rd {
				return 0 // rd redefined
			}
			continue
		}
		pc := p.ov + uint64(i)
		page := sext((w>>29)&3|(w>>5&0x7FFFF)<<2, 21) << 12
		t := uint64(int64(pc&^0xFFF)+page) + uint64(w2>>10&0xFFF)<<scale
		if !p.m.inOld(t, false) {
			return 0
		}
		if p.nb != nil {
			n1 := binary.LittleEndian.Uint32(p.nb[i:])
			n2 := binary.LittleEndian.Uint32(p.nb[j:])
			if n1&0x9F00001F == w&0x9F00001F && n2&^(0xFFF<<10) == w2&^(0xFFF<<10) {
				npage := sext((n1>>29)&3|(n1>>5&0x7FFFF)<<2, 21) << 12
				p.vote(t, uint64(int64((p.nv+uint64(i))&^0xFFF)+npage)+uint64(n2>>10&0xFFF)<<scale)
			}
			return j
		}
		nt := p.project(t)
		npage := int64(nt>>12) - int64((p.nv+uint64(i))>>12)
		low := nt & 0xFFF
		if p.view {
			npage = int64(nt >> 12)
		} else if !fits(npage, 21) || low&(1<<scale-1) != 0 {
			return 0
		}
		u := uint32(npage) & 0x1FFFFF
		w = w&0x9F00001F | (u&3)<<29 | (u>>2)<<5
		w2 = w2&^(0xFFF<<10) | uint32(low>>scale)<<10
		binary.LittleEndian.PutUint32(buf[i:], w)
		binary.LittleEndian.PutUint32(buf[j:], w2)
		return j
	}
	return 0
}

func (p *piece) arm32() {
	buf := p.buf
	i := int((4 - p.ov&3) & 3)
	for ; i+4 <= len(buf); i += 4 {
		w := binary.LittleEndian.Uint32(buf[i:])
		if w&0x0E000000 != 0x0A000000 || w>>28 == 0xF { // B, BL (not BLX)
			continue
		}
		t := uint64(int64(p.ov+uint64(i)) + 8 + sext(w&0xFFFFFF, 24)*4)
		if !p.m.inOld(t, true) {
			continue
		}
		if p.nb != nil {
			if w2 := binary.LittleEndian.Uint32(p.nb[i:]); w2&0xFF000000 == w&0xFF000000 {
				p.vote(t, uint64(int64(p.nv+uint64(i))+8+sext(w2&0xFFFFFF, 24)*4))
			}
			continue
		}
		d := p.rel(t, p.nv+uint64(i)+8)
		if p.view || d&3 == 0 && fits(d>>2, 24) {
			w = w&0xFF000000 | uint32(d>>2)&0xFFFFFF
			binary.LittleEndian.PutUint32(buf[i:], w)
		}
	}
	p.pointers()
}

func (p *piece) thumb() {
	buf := p.buf
	i := int(p.ov & 1)
	for i+4 <= len(buf) {
		h1 := uint32(binary.LittleEndian.Uint16(buf[i:]))
		h2 := uint32(binary.LittleEndian.Uint16(buf[i+2:]))
		if h1&0xF800 != 0xF000 || h2&0xD000 != 0xD000 && h2&0xD000 != 0x9000 { // BL, B.W (T4)
			if h1&0xE000 == 0xE000 && h1&0x1800 != 0 {
				i += 4 // another 32-bit instruction
			} else {
				i += 2
			}
			continue
		}
		s := h1 >> 10 & 1
		i1 := ^(h2>>13 ^ s) & 1
		i2 := ^(h2>>11 ^ s) & 1
		imm := s<<24 | i1<<23 | i2<<22 | (h1&0x3FF)<<12 | (h2&0x7FF)<<1
		t := uint64(int64(p.ov+uint64(i)) + 4 + sext(imm, 25))
		if p.nb != nil {
			g1 := uint32(binary.LittleEndian.Uint16(p.nb[i:]))
			g2 := uint32(binary.LittleEndian.Uint16(p.nb[i+2:]))
			if p.m.inOld(t, true) && g1&0xF800 == h1&0xF800 && g2&0xD000 == h2&0xD000 {
				s := g1 >> 10 & 1
				imm := s<<24 | (^(g2>>13^s)&1)<<23 | (^(g2>>11^s)&1)<<22 | (g1&0x3FF)<<12 | (g2&0x7FF)<<1
				p.vote(t, uint64(int64(p.nv+uint64(i))+4+sext(imm, 25)))
			}
		} else if p.m.inOld(t, true) {
			d := p.rel(t, p.nv+uint64(i)+4)
			if p.view || d&1 == 0 && fits(d, 25) {
				u := uint32(d)
				s = u >> 24 & 1
				j1 := ^(u>>23 ^ s) & 1
				j2 := ^(u>>22 ^ s) & 1
				h1 = h1&0xF800 | s<<10 | u>>12&0x3FF
				h2 = h2&0xD000 | j1<<13 | j2<<11 | u>>1&0x7FF
				binary.LittleEndian.PutUint16(buf[i:], uint16(h1))
				binary.LittleEndian.PutUint16(buf[i+2:], uint16(h2))
			}
		}
		i += 4
	}
	p.pointers()
}

// pointers rewrites aligned pointer-sized words that hold an address inside
// old's segments (for 64-bit images, only above 64 KiB, where small
// integers do not reach), skipping words the architecture scan rewrote
// already is not needed: a rewritten reference is no pointer-looking word
// in practice, and both sides do the same anyway.
func (p *piece) pointers() {
	buf := p.buf
	if p.m.ptrBits == 64 {
		for i := int((8 - p.ov&7) & 7); i+8 <= len(buf); i += 8 {
			v := binary.LittleEndian.Uint64(buf[i:])
			if v >= 1<<16 && p.m.inOld(v, false) {
				if p.nb != nil {
					p.vote(v, binary.LittleEndian.Uint64(p.nb[i:]))
				} else {
					binary.LittleEndian.PutUint64(buf[i:], p.project(v))
				}
			}
		}
		return
	}
	for i := int((4 - p.ov&3) & 3); i+4 <= len(buf); i += 4 {
		v := uint64(binary.LittleEndian.Uint32(buf[i:]))
		if v >= 1<<12 && p.m.inOld(v, false) {
			if p.nb != nil {
				p.vote(v, uint64(binary.LittleEndian.Uint32(p.nb[i:])))
			} else if nv := p.project(v); nv < 1<<32 {
				binary.LittleEndian.PutUint32(buf[i:], uint32(nv))
			}
		}
	}
}

// rela rewrites the r_offset and r_addend of the ELF64 RELA entries (24
// bytes, 8-aligned) in the piece.
func (p *piece) rela() {
	buf := p.buf
	for i := int((24 - (p.ov-p.seg)%24) % 24); i+24 <= len(buf); i += 24 {
		for _, f := range [2]int{i, i + 16} {
			v := binary.LittleEndian.Uint64(buf[f:])
			if !p.m.inOld(v, false) {
				continue
			}
			if p.nb != nil {
				if binary.LittleEndian.Uint64(p.nb[i+8:]) == binary.LittleEndian.Uint64(buf[i+8:]) {
					p.vote(v, binary.LittleEndian.Uint64(p.nb[f:]))
				}
			} else {
				binary.LittleEndian.PutUint64(buf[f:], p.project(v))
			}
		}
	}
}

// String describes the model for debugging and `upkit delta inspect`.
func (m *refModel) String() string {
	if !m.active() {
		return "none"
	}
	return fmt.Sprintf("%s, %d+%d segments, %d target ranges", archNames[m.arch], len(m.old), len(m.new), len(m.tab))
}

var debugMark func(buf []byte, i, n int)
