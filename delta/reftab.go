package delta

import (
	"encoding/binary"
	"fmt"
)

// Coded target map (format version 4). Version 3 wrote the target map of
// the refs section as varint pairs (start gap, shift change), which zstd
// then compressed; version 4 stores its body without zstd and codes the
// map with the binary arithmetic coder instead. The shifts of a map take
// few values, and a range often moves back to a shift seen a few ranges
// before (code and data interleaved, each moved its own way): each entry's
// shift is coded as one of the four most recent other shifts (move to
// front), or else as its change from the current shift; the start gap as
// a number (ctrlModel.num).

// refTabMaxValue bounds what the coded form holds: ctrlModel.num codes
// magnitudes below 2^47. A map whose gaps or shift changes do not fit is
// written as varints (codedLen 0).
const refTabMaxValue = 1<<47 - 1

type refTabModel struct {
	ctrl    *ctrlModel // field fSeek: start gaps; fAdd: shift changes
	hit     [6]counter // context: the previous entry's kind (0-3 recent, 4 new, 5 first)
	idx     [6][3]counter
	sign    [3]counter // context: the previous change's sign (none, +, -)
	recent  [4]int64   // the last distinct shifts before the current one, most recent first
	cur     int64
	prevSym int
	psign   int
}

func newRefTabModel() *refTabModel {
	m := &refTabModel{ctrl: newCtrlModel(), prevSym: 5}
	for i := range m.hit {
		m.hit[i] = counterInit
		for j := range m.idx[i] {
			m.idx[i][j] = counterInit
		}
	}
	for i := range m.sign {
		m.sign[i] = counterInit
	}
	return m
}

// entry codes the start gap and shift of one target range (encoding) or
// decodes them (the arguments ignored).
func (m *refTabModel) entry(c *rangeCoder, gap uint64, shift int64) (uint64, int64) {
	j := 4
	if !c.dec {
		for i, s := range m.recent {
			if s == shift && s != m.cur {
				j = i
				break
			}
		}
	}
	hit := 0
	if j < 4 {
		hit = 1
	}
	hit = m.ctrl.bit(c, &m.hit[m.prevSym], hit)
	if hit == 1 {
		hi := m.ctrl.bit(c, &m.idx[m.prevSym][0], j>>1)
		lo := m.ctrl.bit(c, &m.idx[m.prevSym][1+hi], j&1)
		j = hi<<1 | lo
		shift = m.recent[j]
	} else {
		j = 4
		d := shift - m.cur
		mag, neg := uint64(d), 0
		if d < 0 {
			mag, neg = uint64(-d), 1
		}
		mag = m.ctrl.num(c, fAdd, mag)
		if mag != 0 {
			neg = m.ctrl.bit(c, &m.sign[m.psign], neg)
			m.psign = 1 + neg
		}
		if neg == 1 {
			shift = m.cur - int64(mag)
		} else {
			shift = m.cur + int64(mag)
		}
	}
	// Move to front: the current shift joins the recent ones, the new
	// one leaves them (a new shift pushes the oldest out).
	m.prevSym = j
	copy(m.recent[1:min(j, 3)+1], m.recent[:min(j, 3)])
	m.recent[0] = m.cur
	m.cur = shift
	gap = m.ctrl.num(c, fSeek, gap)
	return gap, shift
}

// refTabFits reports whether the coded form holds tab.
func refTabFits(tab []shiftEntry) bool {
	var start uint64
	var shift int64
	for _, e := range tab {
		if e.start-start > refTabMaxValue || absDiff(e.shift, shift) > refTabMaxValue {
			return false
		}
		start, shift = e.start, e.shift
	}
	return true
}

// appendRefTab appends the coded target map (version 4): uvarint codedLen
// (0: varint pairs follow, as in version 3), then codedLen bytes.
func appendRefTab(b []byte, tab []shiftEntry) []byte {
	if len(tab) == 0 || !refTabFits(tab) {
		return appendRefTabVarints(append(b, 0), tab)
	}
	m := newRefTabModel()
	rc := newEncoder(nil)
	var start uint64
	for _, e := range tab {
		m.entry(rc, e.start-start, e.shift)
		start = e.start
	}
	coded := rc.finish()
	b = binary.AppendUvarint(b, uint64(len(coded)))
	return append(b, coded...)
}

// readRefTab decodes n target ranges of a version 4 refs section into tab.
func readRefTab(r byteReader, tab []shiftEntry) error {
	n, err := readUvarint(r)
	if err != nil {
		return err
	}
	if n == 0 {
		return readRefTabVarints(r, tab)
	}
	if n > uint64(len(tab))*32+8 {
		return fmt.Errorf("%w: refs section: coded target map of %d bytes for %d ranges", ErrCorrupt, n, len(tab))
	}
	var rc rangeCoder
	rc.initDecoder(r, int64(n), codedPad)
	m := newRefTabModel()
	var start uint64
	for i := range tab {
		gap, shift := m.entry(&rc, 0, 0)
		if rc.err != nil {
			break
		}
		if err := checkRefEntry(i, start, gap, shift); err != nil {
			return err
		}
		start += gap
		tab[i] = shiftEntry{start: start, shift: shift}
	}
	switch {
	case rc.err == errCtrlValue || rc.err == errCodedOverrun:
		return fmt.Errorf("%w: refs section: coded target map: %v", ErrCorrupt, rc.err)
	case rc.err != nil:
		return rc.err
	case rc.limit > 0:
		return fmt.Errorf("%w: refs section: %d bytes of the coded target map unused", ErrCorrupt, rc.limit)
	}
	return nil
}

// checkRefEntry checks target range i: its start (start+gap) above the
// previous one's and at most 2^62, its shift within ±2^62.
func checkRefEntry(i int, start, gap uint64, shift int64) error {
	if (i > 0 && gap == 0) || start+gap < start || start+gap > 1<<62 {
		return fmt.Errorf("%w: refs section: target range %d", ErrCorrupt, i)
	}
	if shift > 1<<62 || shift < -1<<62 {
		return fmt.Errorf("%w: refs section: target range %d shift", ErrCorrupt, i)
	}
	return nil
}
