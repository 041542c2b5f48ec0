package delta

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
)

// Create's side of the refs section: which architecture to scan for, and
// the target map, both chosen from a first alignment of new against old.

// op is one operation of a diff: add from oldPos, then copy.
type op struct{ oldPos, add, copy int }

// layouts returns the candidate reference models for the pair (target map
// empty): the ELF machine's architecture when both images are ELF files of
// the same machine, every architecture over the whole file otherwise.
func layouts(old, new []byte) []*refModel {
	oi, ok1 := parseELF(old)
	ni, ok2 := parseELF(new)
	if ok1 && ok2 && oi.machine == ni.machine && oi.bits == ni.bits {
		var archs []uint8
		switch oi.machine {
		case emX86_64:
			archs = []uint8{archX86}
		case emAARCH64:
			archs = []uint8{archARM64}
		case emARM:
			archs = []uint8{archARM32, archThumb}
		}
		var ms []*refModel
		for _, a := range archs {
			ms = append(ms, newRefModel(a, oi.bits, oi.segs, ni.segs))
		}
		return ms
	}
	// Raw images (firmware): one code segment at address 0, no pointers
	// (without a load address, small integers would look like them).
	o := []segment{{off: 0, size: uint64(len(old)), vaddr: 0, kind: segCode}}
	n := []segment{{off: 0, size: uint64(len(new)), vaddr: 0, kind: segCode}}
	var ms []*refModel
	for a := uint8(1); a <= archMax; a++ {
		ms = append(ms, newRefModel(a, 0, o, n))
	}
	return ms
}

func newRefModel(arch, bits uint8, old, new []segment) *refModel {
	m := &refModel{arch: arch, ptrBits: bits, old: old, new: new}
	m.bounds()
	return m
}

// bounds sets lo and hi from old's segments.
func (m *refModel) bounds() {
	m.lo, m.hi = ^uint64(0), 0
	for _, s := range m.old {
		m.lo = min(m.lo, s.vaddr)
		m.hi = max(m.hi, s.vaddr+s.size)
	}
}

// chooseRefs returns the reference model that makes the fewest nonzero
// diff bytes over the add runs of ops (counting its target map's entries
// at a few bytes each), or nil when none beats plain bytes. With several
// candidates (a raw image), they are compared on a sample of the runs
// (about sampleBytes of them, spread over the image), and only the winner
// builds its map from all the runs.
func chooseRefs(old, new []byte, ops []op) *refModel {
	runs := addRuns(ops)
	if len(runs) == 0 {
		return nil
	}
	cands := layouts(old, new)
	if len(cands) > 1 {
		total := 0
		for _, r := range runs {
			total += r.n
		}
		sample := runs
		if total > sampleBytes {
			step := total / sampleBytes // keep about one byte in step
			sample = nil
			acc := 0
			for _, r := range runs {
				if acc += r.n; acc >= step {
					sample = append(sample, r)
					acc -= step * (acc / step)
				}
			}
		}
		m := bestRefs(old, new, sample, cands)
		if m == nil {
			return nil
		}
		cands = []*refModel{m}
	}
	return bestRefs(old, new, runs, cands)
}

// sampleBytes is how much of the add runs chooseRefs compares candidate
// architectures on.
const sampleBytes = 8 << 20

// bestRefs builds each candidate's map from the votes of runs and returns
// the one with the fewest differing bytes, or nil when none beats plain
// bytes.
func bestRefs(old, new []byte, runs []addRun, cands []*refModel) *refModel {
	base := 0
	for _, r := range runs {
		for i := 0; i < r.n; i++ {
			if old[r.oldPos+i] != new[r.newPos+i] {
				base++
			}
		}
	}
	var best *refModel
	bestCost := base
	buf := make([]byte, 0, 1<<16)
	for _, c := range cands {
		m := &refModel{arch: c.arch, ptrBits: c.ptrBits, old: c.old, new: c.new, lo: c.lo, hi: c.hi}
		var votes []vote
		for _, r := range runs {
			buf = append(buf[:0], old[r.oldPos:r.oldPos+r.n]...)
			m.scan(buf, new[r.newPos:r.newPos+r.n], int64(r.oldPos), int64(r.newPos), &votes)
		}
		m.tab = targetMap(votes)
		if len(m.tab) == 0 {
			continue
		}
		cost := 3 * len(m.tab)
		for _, r := range runs {
			buf = append(buf[:0], old[r.oldPos:r.oldPos+r.n]...)
			m.predict(buf, int64(r.oldPos), int64(r.newPos))
			nw := new[r.newPos : r.newPos+r.n]
			for i := range buf {
				if buf[i] != nw[i] {
					cost++
				}
			}
		}
		if debugRefs {
			fmt.Fprintf(os.Stderr, "refs: arch %d: %d runs, %d votes, %d entries, base %d nonzero, cost %d\n", m.arch, len(runs), len(votes), len(m.tab), base, cost)
		}
		if cost < bestCost {
			best, bestCost = m, cost
		}
	}
	return best
}

// addRuns returns the add runs of ops with their positions in new.
func addRuns(ops []op) []addRun {
	var runs []addRun
	np := 0
	for _, o := range ops {
		if o.add > 0 {
			runs = append(runs, addRun{oldPos: o.oldPos, newPos: np, n: o.add})
		}
		np += o.add + o.copy
	}
	return runs
}

// voteMap builds m's target map from the votes of the add runs of ops.
func (m *refModel) voteMap(old, new []byte, ops []op) {
	var votes []vote
	buf := make([]byte, 0, 1<<16)
	for _, r := range addRuns(ops) {
		buf = append(buf[:0], old[r.oldPos:r.oldPos+r.n]...)
		m.scan(buf, new[r.newPos:r.newPos+r.n], int64(r.oldPos), int64(r.newPos), &votes)
	}
	m.tab = targetMap(votes)
}

// estimate is a rough size in bits of a patch made of ops with m: what
// the coders typically spend per nonzero diff byte, extra byte, operation
// and target range.
func estimate(old, new []byte, ops []op, m *refModel) int {
	bits := 24 * len(m.tab)
	buf := make([]byte, 0, 1<<16)
	for _, o := range ops {
		bits += 33 + 5*o.copy
	}
	for _, r := range addRuns(ops) {
		buf = append(buf[:0], old[r.oldPos:r.oldPos+r.n]...)
		m.predict(buf, int64(r.oldPos), int64(r.newPos))
		nw := new[r.newPos : r.newPos+r.n]
		for i := range buf {
			if buf[i] != nw[i] {
				bits += 8
			}
		}
	}
	return bits
}

// rematchRefs matches new against old a second time, on views of both in
// which every reference holds its target (old's projected by m's map)
// instead of a displacement, so that code whose references all moved
// matches exactly (Zucchini's idea); the map is then rebuilt from the new
// alignment. It returns whichever of the two alignments is estimated
// smaller.
func rematchRefs(ctx context.Context, old, new []byte, ops []op, m *refModel) ([]op, *refModel, error) {
	ov := bytes.Clone(old)
	(&refModel{arch: m.arch, ptrBits: m.ptrBits, old: m.old, new: m.old, tab: m.tab, lo: m.lo, hi: m.hi, view: true}).predict(ov, 0, 0)
	nv := bytes.Clone(new)
	id := &refModel{arch: m.arch, ptrBits: m.ptrBits, old: m.new, new: m.new, view: true}
	id.bounds()
	id.predict(nv, 0, 0)
	var ops2 []op
	if err := diff(ctx, ov, nv, func(a, b, c int) error { ops2 = append(ops2, op{a, b, c}); return nil }); err != nil {
		return nil, nil, err
	}
	m2 := &refModel{arch: m.arch, ptrBits: m.ptrBits, old: m.old, new: m.new, lo: m.lo, hi: m.hi}
	m2.voteMap(old, new, ops2)
	e1, e2 := estimate(old, new, ops, m), estimate(old, new, ops2, m2)
	if debugRefs {
		fmt.Fprintf(os.Stderr, "refs: pass 1: %d ops, %d entries, est %d; pass 2: %d ops, %d entries, est %d\n", len(ops), len(m.tab), e1/8, len(ops2), len(m2.tab), e2/8)
	}
	if e2 < e1 {
		return ops2, m2, nil
	}
	return ops, m, nil
}

// targetMap turns the votes into the target map. Shifts are piecewise
// constant over old addresses (code and data move in blocks), so the map
// keeps the current shift while a target's votes allow it, and switches to
// another only when it is the target's clear favourite and is confirmed
// (by two votes, or by the next target too): a single stray vote (a
// reference in a misaligned run) would cost two entries.
func targetMap(votes []vote) []shiftEntry {
	slices.SortFunc(votes, func(a, b vote) int {
		if c := cmp.Compare(a.t, b.t); c != 0 {
			return c
		}
		return cmp.Compare(a.shift, b.shift)
	})
	// One histogram per distinct target, in address order.
	type cand struct {
		shift int64
		n     int
	}
	type target struct {
		t     uint64
		cands []cand
	}
	var ts []target
	for i := 0; i < len(votes); {
		tg := target{t: votes[i].t}
		j := i
		for j < len(votes) && votes[j].t == tg.t {
			k := j
			for k < len(votes) && votes[k].t == tg.t && votes[k].shift == votes[j].shift {
				k++
			}
			tg.cands = append(tg.cands, cand{votes[j].shift, k - j})
			j = k
		}
		ts = append(ts, tg)
		i = j
	}
	count := func(tg *target, s int64) (n, best int) {
		for _, c := range tg.cands {
			if c.shift == s {
				n = c.n
			}
			best = max(best, c.n)
		}
		return n, best
	}
	var tab []shiftEntry
	var votesFor []int
	var cur int64
	for i := range ts {
		tg := &ts[i]
		if len(tab) > 0 {
			if n, best := count(tg, cur); n > 0 && 2*n >= best {
				continue
			}
		}
		// The favourite: most votes, ties to the shift closest to cur.
		b := tg.cands[0]
		for _, c := range tg.cands[1:] {
			if c.n > b.n || c.n == b.n && absDiff(c.shift, cur) < absDiff(b.shift, cur) {
				b = c
			}
		}
		confirmed := len(tab) == 0 || b.n >= 2
		if !confirmed && i+1 < len(ts) {
			n, best := count(&ts[i+1], b.shift)
			confirmed = n > 0 && n == best
		}
		if !confirmed {
			continue
		}
		tab = append(tab, shiftEntry{start: tg.t, shift: b.shift})
		votesFor = append(votesFor, 0)
		cur = b.shift
	}
	// Count each entry's support: the votes for its shift among the
	// targets it covers.
	k := 0
	for i := range ts {
		for k+1 < len(tab) && tab[k+1].start <= ts[i].t {
			k++
		}
		if len(tab) > 0 {
			n, _ := count(&ts[i], tab[k].shift)
			votesFor[k] += n
		}
	}
	return capEntries(tab, votesFor, MaxRefEntries)
}

// capEntries drops the entries with the least support until at most max
// remain (a dropped entry's targets take the shift of the entry before):
// a very large image keeps its map within what apply allocates.
func capEntries(tab []shiftEntry, support []int, max int) []shiftEntry {
	if len(tab) <= max {
		return tab
	}
	order := make([]int, len(tab)-1)
	for i := range order {
		order[i] = i + 1 // the first entry stays
	}
	sort.SliceStable(order, func(a, b int) bool { return support[order[a]] < support[order[b]] })
	drop := make([]bool, len(tab))
	for _, i := range order[:len(tab)-max] {
		drop[i] = true
	}
	out := tab[:0]
	for i, e := range tab {
		if !drop[i] && (len(out) == 0 || out[len(out)-1].shift != e.shift) {
			out = append(out, e)
		}
	}
	return out
}

func absDiff(a, b int64) uint64 {
	if a > b {
		return uint64(a - b)
	}
	return uint64(b - a)
}

// appendRefs appends the refs section of m (nil: none) to b, in format
// version v (3: the target map as varints; 4: coded, reftab.go).
func appendRefs(b []byte, m *refModel, v uint16) []byte {
	if !m.active() {
		return append(b, archNone)
	}
	b = append(b, m.arch, m.ptrBits)
	for _, segs := range [2][]segment{m.old, m.new} {
		b = binary.AppendUvarint(b, uint64(len(segs)))
		for _, s := range segs {
			b = binary.AppendUvarint(b, s.off)
			b = binary.AppendUvarint(b, s.size)
			b = binary.AppendUvarint(b, s.vaddr)
			b = append(b, s.kind)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(m.tab)))
	if v >= 4 {
		return appendRefTab(b, m.tab)
	}
	return appendRefTabVarints(b, m.tab)
}

// appendRefTabVarints appends the target map as varint pairs: the start's
// gap from the previous start, the shift's change.
func appendRefTabVarints(b []byte, tab []shiftEntry) []byte {
	var start uint64
	var shift int64
	for _, e := range tab {
		b = binary.AppendUvarint(b, e.start-start)
		b = binary.AppendVarint(b, e.shift-shift)
		start, shift = e.start, e.shift
	}
	return b
}

// byteReader is what readRefs reads from (the decompressed body).
type byteReader interface {
	ReadByte() (byte, error)
}

// readRefs parses a refs section of format version v for images of
// oldSize and newSize bytes.
// Errors: io errors as they are (the caller maps them), fmt errors wrapping
// ErrBounds or ErrCorrupt for values out of range.
func readRefs(r byteReader, oldSize, newSize int64, v uint16) (*refModel, error) {
	arch, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	if arch == archNone {
		return nil, nil
	}
	if arch > archMax {
		return nil, fmt.Errorf("%w: refs section: architecture %d", ErrCorrupt, arch)
	}
	bits, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	if bits != 0 && bits != 32 && bits != 64 {
		return nil, fmt.Errorf("%w: refs section: pointer width %d", ErrCorrupt, bits)
	}
	m := &refModel{arch: arch, ptrBits: bits}
	for k, size := range [2]int64{oldSize, newSize} {
		n, err := readUvarint(r)
		if err != nil {
			return nil, err
		}
		if n > MaxRefSegments {
			return nil, fmt.Errorf("%w: refs section: %d segments (max %d)", ErrBounds, n, MaxRefSegments)
		}
		segs := make([]segment, n)
		var end uint64
		for i := range segs {
			s := &segs[i]
			for _, f := range []*uint64{&s.off, &s.size, &s.vaddr} {
				if *f, err = readUvarint(r); err != nil {
					return nil, err
				}
			}
			if s.kind, err = r.ReadByte(); err != nil {
				return nil, err
			}
			bad := s.kind > segBss || s.size == 0 || s.vaddr+s.size < s.vaddr || s.vaddr+s.size > 1<<62
			if s.kind == segBss {
				bad = bad || s.off != 0
			} else {
				bad = bad || s.off < end || s.off > uint64(size) || s.size > uint64(size)-s.off
				end = s.off + s.size
			}
			if bad {
				return nil, fmt.Errorf("%w: refs section: segment %d of image %d (offset %d, size %d, address %#x, kind %d)", ErrCorrupt, i, k, s.off, s.size, s.vaddr, s.kind)
			}
		}
		if k == 0 {
			m.old = segs
		} else {
			m.new = segs
		}
	}
	n, err := readUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > MaxRefEntries {
		return nil, fmt.Errorf("%w: refs section: %d target ranges (max %d)", ErrBounds, n, MaxRefEntries)
	}
	m.tab = make([]shiftEntry, n)
	if v >= 4 {
		err = readRefTab(r, m.tab)
	} else {
		err = readRefTabVarints(r, m.tab)
	}
	if err != nil {
		return nil, err
	}
	m.bounds()
	return m, nil
}

// readRefTabVarints reads len(tab) target ranges as varint pairs.
func readRefTabVarints(r byteReader, tab []shiftEntry) error {
	var start uint64
	var shift int64
	for i := range tab {
		d, err := readUvarint(r)
		if err != nil {
			return err
		}
		ds, err := readVarint(r)
		if err != nil {
			return err
		}
		if ds > 1<<62 || ds < -1<<62 {
			return fmt.Errorf("%w: refs section: target range %d", ErrCorrupt, i)
		}
		if err := checkRefEntry(i, start, d, shift+ds); err != nil {
			return err
		}
		start += d
		shift += ds
		tab[i] = shiftEntry{start: start, shift: shift}
	}
	return nil
}

// readUvarint reads an unsigned varint in its shortest form only, so that
// a section has one encoding (binary.ReadUvarint also takes an overlong
// one, such as 0x80 0x00 for zero).
func readUvarint(r byteReader) (uint64, error) {
	var x uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if i == binary.MaxVarintLen64-1 && b > 1 {
			return 0, fmt.Errorf("%w: refs section: varint overflows 64 bits", ErrCorrupt)
		}
		x |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			if b == 0 && i > 0 {
				return 0, fmt.Errorf("%w: refs section: varint not in its shortest form", ErrCorrupt)
			}
			return x, nil
		}
	}
	return 0, fmt.Errorf("%w: refs section: varint overflows 64 bits", ErrCorrupt)
}

// readVarint reads a zig-zag signed varint in its shortest form only.
func readVarint(r byteReader) (int64, error) {
	u, err := readUvarint(r)
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x, err
}

// refsEqual is for tests.
func refsEqual(a, b *refModel) bool {
	return bytes.Equal(appendRefs(nil, a, 3), appendRefs(nil, b, 3))
}

var debugRefs = os.Getenv("UPKIT_DEBUG_REFS") != ""
