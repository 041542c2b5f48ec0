package delta

import (
	"errors"
	"math/bits"
)

var errCtrlValue = errors.New("coded control value out of range")

// Coded control section (format version 3): the operations (seek, add,
// copy) of a block are coded with the binary arithmetic coder instead of
// as varints. Each number is coded as "is it zero", for a seek its sign,
// the bit length of its magnitude (a 6-level binary tree) and the bits
// below the leading one, the first three in the context of the ones
// before. Contexts are the field, the bit lengths of the previous
// operation's fields and whether the previous copy was empty. No mixing:
// one adaptive counter per decision.

const (
	fSeek = iota
	fAdd
	fCopy
)

type ctrlModel struct {
	tabs cmTables
	zero [3][4 * 8]counter  // field; previous copy empty, previous length class
	sign [4]counter         // previous seek's sign and zero-ness
	nb   [3][8][64]counter  // field; previous bit length class; tree node
	man  [3][48][16]counter // field; bit length; top bits so far (3 levels)
	low  [3][48]counter     // field; bit length: the remaining bits
	prev [3]int             // previous operation's bit lengths
	pneg int                // previous seek: 0 zero, 1 positive, 2 negative
	pcz  int                // previous copy was empty
}

// ctrlMemory bounds a ctrlModel's size (TestModelMemory checks it).
const ctrlMemory = 32 << 10

func newCtrlModel() *ctrlModel {
	m := &ctrlModel{}
	m.tabs.init()
	for f := range m.zero {
		for i := range m.zero[f] {
			m.zero[f][i] = counterInit
		}
		for i := range m.nb[f] {
			for j := range m.nb[f][i] {
				m.nb[f][i][j] = counterInit
			}
		}
		for i := range m.man[f] {
			for j := range m.man[f][i] {
				m.man[f][i][j] = counterInit
			}
			m.low[f][i] = counterInit
		}
	}
	for i := range m.sign {
		m.sign[i] = counterInit
	}
	return m
}

func (m *ctrlModel) bit(c *rangeCoder, ct *counter, b int) int {
	b = c.code(b, int32(*ct>>4))
	m.tabs.update(ct, b)
	return b
}

// class buckets a bit length into 8 classes.
func class(nb int) int {
	switch {
	case nb <= 4:
		return nb
	case nb <= 8:
		return 5
	case nb <= 16:
		return 6
	}
	return 7
}

// num codes the magnitude v (encoding; ignored when decoding) of field f
// and returns it. Magnitudes are below 2^47 (MaxImageSize*2).
func (m *ctrlModel) num(c *rangeCoder, f int, v uint64) uint64 {
	z := 0
	if v == 0 {
		z = 1
	}
	if m.bit(c, &m.zero[f][m.pcz*8+class(m.prev[f])], z) == 1 {
		m.prev[f] = 0
		return 0
	}
	nb := bits.Len64(v) // 1..47
	// The bit length, 6 bits, most significant first.
	node := 1
	pc := class(m.prev[f])
	for i := 5; i >= 0; i-- {
		node = node<<1 | m.bit(c, &m.nb[f][pc][node], nb>>i&1)
	}
	nb = node & 63
	if nb < 1 || nb > 47 {
		if c.err == nil {
			c.err = errCtrlValue
		}
		return 0
	}
	r := uint64(1)
	top := 1
	for i := nb - 2; i >= 0; i-- {
		var ct *counter
		if top < 16 {
			ct = &m.man[f][nb][top]
		} else {
			ct = &m.low[f][nb]
		}
		b := m.bit(c, ct, int(v>>i)&1)
		r = r<<1 | uint64(b)
		if top < 16 {
			top = top<<1 | b
		}
	}
	m.prev[f] = nb
	return r
}

// op codes one operation (encoding) or decodes it (the arguments ignored).
func (m *ctrlModel) op(c *rangeCoder, seek int64, add, cp uint64) (int64, uint64, uint64) {
	mag := uint64(seek)
	neg := 0
	if seek < 0 {
		mag, neg = uint64(-seek), 1
	}
	mag = m.num(c, fSeek, mag)
	if mag != 0 {
		neg = m.bit(c, &m.sign[m.pneg], neg)
		m.pneg = 1 + neg
	} else {
		m.pneg = 0
	}
	seek = int64(mag)
	if neg == 1 {
		seek = -seek
	}
	add = m.num(c, fAdd, add)
	cp = m.num(c, fCopy, cp)
	m.pcz = 0
	if cp == 0 {
		m.pcz = 1
	}
	return seek, add, cp
}
