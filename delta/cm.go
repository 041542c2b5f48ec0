package delta

import (
	"errors"
	"io"
)

// Context-mixing coder for the diff section.
//
// Diff bytes (new minus old, over the "add" runs) are mostly zero; where
// they are not, the old bytes around them (an instruction's opcode before a
// displacement, a pointer in a table) tell where and by how much. Each diff
// byte d is coded with a binary arithmetic coder as a flag "d != 0" and, if
// set, the 8 bits of d, each predicted by a few adaptive context models
// (contexts: the aligned old bytes before, at and after the position, and
// the previous diff bytes) whose predictions are mixed by an online
// logistic mixer. Everything is integer arithmetic, so the encoder and the
// decoder compute identical probabilities on every platform. The model's
// memory is fixed (modelMemory bytes), whatever the image size.

// Model shape. The flag and value tables' sizes come from the header
// (ModelBits); these are fixed.
const (
	nInputs  = 6  // models mixed per value bit and group flag
	nzInputs = 4  // models mixed per nonzero flag
	grpBits  = 16 // hashed contexts of the group flag
	// groupSize is the span of one "all zero" flag: the diff of an add run
	// is coded as groups of groupSize bytes, and only the groups with a
	// nonzero byte byte by byte.
	groupSize = 128

	// Mixer learning rates (error x rate / 65536 per unit input).
	lrFlag  = 60
	lrValue = 60
	lrGroup = 20
)

// modelMemory is the memory of a diffModel's tables for a model size of
// bits (Header.ModelBits): three flag tables of 1<<bits counters, three
// value tables of 1<<(bits-1) and the group table of 1<<grpBits, 2 bytes
// per counter, plus the fixed part.
func modelMemory(bits int) int64 {
	return 2*(3<<bits+3<<(bits-1)+1<<grpBits) + modelFixed
}

// modelFixed bounds the rest of a diffModel: the stretch and rate tables,
// the two probability maps, the mixer weights and the history.
const modelFixed = 64 << 10

// squashPoints are 4096/(1+exp(-x/256)) at x = -2048, -1920, ..., 2048.
var squashPoints = [33]int32{1, 2, 4, 6, 10, 17, 27, 45, 74, 120, 194, 311, 488,
	747, 1102, 1546, 2048, 2550, 2994, 3349, 3608, 3785, 3902, 3976, 4022, 4051,
	4069, 4079, 4086, 4090, 4092, 4094, 4095}

// squash maps the logistic domain [-2047, 2047] to a 12-bit probability.
func squash(d int32) int32 {
	if d > 2047 {
		d = 2047
	}
	if d < -2047 {
		d = -2047
	}
	w := d & 127
	i := (d >> 7) + 16
	return (squashPoints[i]*(128-w) + squashPoints[i+1]*w + 64) >> 7
}

// diffModel predicts the bits of the diff stream.
type diffModel struct {
	stretch [4096]int16
	rate    [1024]int32 // 65536/(n+1.5): adaptation rate after n updates

	nzBits, valBits uint
	nz              []counter // 3 hashed tables of 1<<nzBits counters
	val             []counter // 3 hashed tables of 1<<valBits counters
	grp             []counter // hashed contexts of the all-zero group flag
	nzLow           [256]counter
	apm1, apm2      apm
	gHist           uint32 // bit i: group i+1 back had a nonzero byte
	wGrp            [16][nInputs]int32

	wNZ  [16][nzInputs]int32
	wVal [8 * 4][nInputs]int32

	// History, in diff-stream order.
	o1, o2, o3 byte   // previous aligned old bytes
	d1, d2     byte   // previous diff bytes
	lastNZ     byte   // last nonzero diff byte
	nzHist     uint32 // bit i: diff byte i+1 positions back was nonzero
	dHist      uint64 // previous 8 diff bytes

	// Per-position context indices.
	idx [nInputs]uint32
	st  [nInputs]int32
}

// newDiffModel returns a model of size bits (MinModelBits..MaxModelBits).
func newDiffModel(bits int) *diffModel {
	m := &diffModel{
		nzBits:  uint(bits),
		valBits: uint(bits - 1),
		nz:      make([]counter, 3<<bits),
		val:     make([]counter, 3<<(bits-1)),
		grp:     make([]counter, 1<<grpBits),
	}
	m.apm1.init()
	m.apm2.init()
	for i := range m.nzLow {
		m.nzLow[i] = counterInit
	}
	for i := range m.grp {
		m.grp[i] = counterInit
	}
	for i := range m.wGrp {
		for j := range m.wGrp[i] {
			m.wGrp[i][j] = 1 << 14
		}
	}
	pi := int32(0)
	for x := int32(-2047); x <= 2047; x++ {
		v := squash(x)
		for j := pi; j <= v; j++ {
			m.stretch[j] = int16(x)
		}
		pi = v + 1
	}
	for j := pi; j < 4096; j++ {
		m.stretch[j] = 2047
	}
	for n := range m.rate {
		m.rate[n] = int32(65536 * 2 / (2*n + 3))
	}
	for i := range m.nz {
		m.nz[i] = counterInit
	}
	for i := range m.val {
		m.val[i] = counterInit
	}
	for i := range m.wNZ {
		for j := range m.wNZ[i] {
			m.wNZ[i][j] = 1 << 14
		}
	}
	for i := range m.wVal {
		for j := range m.wVal[i] {
			m.wVal[i][j] = 1 << 14
		}
	}
	return m
}

// A counter is a 12-bit probability of a 1 and a 4-bit update count that
// sets its adaptation rate (fast at first, then 1/16.5).
type counter = uint16

const counterInit = 2048 << 4

func (m *diffModel) p12(c counter) int32 {
	return min(max(int32(c>>4), 1), 4095)
}

func (m *diffModel) update(c *counter, y int) {
	p := int32(*c >> 4)
	n := *c & 15
	p += (((int32(y)<<12)-p)*m.rate[n] + 1<<15) >> 16
	p = min(max(p, 1), 4095)
	if n < 4 {
		n++
	}
	*c = counter(p)<<4 | n
}

func hash32(a, b uint32) uint32 {
	h := a*0x9E3779B1 ^ b*0x85EBCA77
	h ^= h >> 15
	h *= 0xC2B2AE3D
	return h ^ h>>13
}

// mix returns the mixed 12-bit probability of a 1 from the counters at
// tabs[i][idx[i]], and records the stretched inputs for train.
func (m *diffModel) mix(w []int32, cs []*counter) int32 {
	var dot int64
	for i, c := range cs {
		s := int32(m.stretch[m.p12(*c)])
		m.st[i] = s
		dot += int64(w[i]) * int64(s)
	}
	return min(max(squash(int32(dot>>16)), 1), 4095)
}

func (m *diffModel) train(w []int32, p int32, y int, lr int32) {
	err := ((int32(y) << 12) - p) * lr
	for i := range w {
		w[i] += (m.st[i]*err + 1<<15) >> 16
	}
}

// codeByte codes one diff byte d (ignored when decoding) at a position
// whose aligned old byte is o0 and the next aligned old byte oN (0 at the
// end of a run), and returns it.
func (m *diffModel) codeByte(c *rangeCoder, d, o0, oN byte) byte {
	h1 := uint32(o0) | uint32(m.o1)<<8 | uint32(oN)<<16
	h2 := uint32(o0) | uint32(m.o1)<<8 | uint32(m.o2)<<16 | uint32(m.o3)<<24
	nzBits := m.nzBits
	mask := uint32(1)<<nzBits - 1
	nz := m.nz
	cs := [nzInputs]*counter{
		&nz[hash32(h1, 1)&mask],
		&nz[1<<nzBits+hash32(h2, 2)&mask],
		&nz[2<<nzBits+hash32(uint32(m.nzHist&0xffff)|uint32(o0)<<16, 5^uint32(m.d1)<<8)&mask],
		&m.nzLow[m.nzHist&0xff],
	}
	wsel := (m.nzHist & 3) | uint32(min(bitsLen(m.nzHist>>2&0xff), 3))<<2
	w := &m.wNZ[wsel]
	p := m.mix(w[:], cs[:])
	a1 := m.apm1.refine(&m.stretch, p, uint32(o0))
	a2 := m.apm2.refine(&m.stretch, p, m.nzHist&0xff)
	pf := min(max((2*p+a1+a2+2)>>2, 1), 4095)
	y := 0
	if d != 0 {
		y = 1
	}
	y = c.code(y, pf)
	for _, x := range cs {
		m.update(x, y)
	}
	m.train(w[:], p, y, lrFlag)
	m.apm1.update(y)
	m.apm2.update(y)
	if y == 0 {
		d = 0
	} else {
		// The value, most significant bit first, in a binary tree.
		valBits := m.valBits
		vmask := uint32(1)<<valBits - 1
		node := uint32(1)
		v := m.val
		for i := 7; i >= 0; i-- {
			vc := [nInputs]*counter{
				&v[hash32(node|uint32(o0)<<8|uint32(oN)<<16, 11)&vmask],
				&v[1<<valBits+hash32(node|uint32(m.lastNZ)<<8|uint32(o0)<<16, 12)&vmask],
				&v[2<<valBits+hash32(node|uint32(m.d1)<<8|uint32(m.o1)<<16|uint32(o0)<<24, 13)&vmask],
				&v[hash32(node|uint32(byte(m.dHist>>56))<<8|uint32(byte(m.dHist>>24))<<16, 14)&vmask],
				&v[1<<valBits+hash32(node|uint32(o0)<<8|uint32(m.o1)<<16|uint32(m.o2)<<24, 15)&vmask],
				&v[2<<valBits+hash32(node, 16)&vmask],
			}
			w := &m.wVal[(7-i)*4+int(min(bitsLen(m.nzHist&0xf), 3))]
			p := m.mix(w[:], vc[:])
			b := c.code(int(d>>i)&1, p)
			for _, x := range vc {
				m.update(x, b)
			}
			m.train(w[:], p, b, lrValue)
			node = node<<1 | uint32(b)
		}
		d = byte(node)
		m.lastNZ = d
	}
	m.o3, m.o2, m.o1 = m.o2, m.o1, o0
	m.d2, m.d1 = m.d1, d
	m.nzHist = m.nzHist<<1 | uint32(y)
	m.dHist = m.dHist<<8 | uint64(d)
	return d
}

func bitsLen(x uint32) int {
	n := 0
	for x != 0 {
		n++
		x &= x - 1
	}
	return n
}

// rangeCoder is a carryless binary arithmetic coder (32-bit range) that
// encodes (out) or decodes (r, reading at most limit bytes).
type rangeCoder struct {
	x1, x2, x uint32
	dec       bool
	out       []byte
	r         io.ByteReader
	limit     int64
	err       error
}

func newEncoder(out []byte) *rangeCoder { return &rangeCoder{x2: 0xffffffff, out: out} }

// code codes bit (encoder) or decodes and returns a bit (decoder; bit is
// ignored) whose probability of being 1 is p1/4096.
func (c *rangeCoder) code(bit int, p1 int32) int {
	xmid := c.x1 + uint32(uint64(c.x2-c.x1)*uint64(p1)>>12)
	if c.dec {
		bit = 0
		if c.x <= xmid {
			bit = 1
		}
	}
	if bit != 0 {
		c.x2 = xmid
	} else {
		c.x1 = xmid + 1
	}
	for (c.x1^c.x2)&0xff000000 == 0 {
		if c.dec {
			c.x = c.x<<8 | c.byte()
		} else {
			c.out = append(c.out, byte(c.x2>>24))
		}
		c.x1 <<= 8
		c.x2 = c.x2<<8 | 255
	}
	return bit
}

// finish flushes the encoder; the decoder reads exactly the bytes written.
func (c *rangeCoder) finish() []byte {
	x := c.x1
	c.out = append(c.out, byte(x>>24), byte(x>>16), byte(x>>8), byte(x))
	return c.out
}

var errCodedOverrun = errors.New("coded diff section overrun")

func (c *rangeCoder) byte() uint32 {
	if c.limit <= 0 {
		if c.err == nil {
			c.err = errCodedOverrun
		}
		return 0
	}
	c.limit--
	b, err := c.r.ReadByte()
	if err != nil && c.err == nil {
		c.err = err
	}
	return uint32(b)
}

// initDecoder starts decoding from r, which holds limit coded bytes.
func (c *rangeCoder) initDecoder(r io.ByteReader, limit int64) {
	*c = rangeCoder{x2: 0xffffffff, dec: true, r: r, limit: limit}
	for i := 0; i < 4; i++ {
		c.x = c.x<<8 | c.byte()
	}
}

// codeRun codes the diff of one add run. Encoding: d is the diff and o the
// old bytes, both unchanged. Decoding (d == nil): o holds the old bytes and
// receives old+diff, the new bytes, in place.
func (m *diffModel) codeRun(c *rangeCoder, d, o []byte) {
	const gmask = 1<<grpBits - 1
	n := len(o)
	for g := 0; g < n; g += groupSize {
		end := min(g+groupSize, n)
		y := 0
		if d != nil {
			for _, x := range d[g:end] {
				if x != 0 {
					y = 1
					break
				}
			}
		}
		var h0, h1 uint64
		if end-g == groupSize {
			h0 = le64(o[g:])
			h1 = le64(o[g+8:])
		} else {
			for i, x := range o[g:end] {
				if i < 8 {
					h0 |= uint64(x) << (8 * i)
				} else {
					h1 |= uint64(x) << (8 * (i - 8))
				}
			}
			h1 ^= uint64(end-g) << 56
		}
		a := uint32(h0) ^ uint32(h0>>32)*0x2545F491
		b := uint32(h1) ^ uint32(h1>>32)*0x2545F491
		gr := m.grp
		cs := [nInputs]*counter{
			&gr[m.gHist&0xff],
			&gr[hash32(uint32(h0), m.gHist&0xf|1<<8)&gmask],
			&gr[hash32(a, b)&gmask],
			&gr[hash32(a, m.gHist&1|2<<8)&gmask],
			&gr[hash32(m.nzHist&0xffff, 3<<8)&gmask],
			&gr[hash32(uint32(m.dHist), m.gHist&3|4<<8)&gmask],
		}
		w := &m.wGrp[m.gHist&0xf]
		p := m.mix(w[:], cs[:])
		y = c.code(y, p)
		for _, x := range cs {
			m.update(x, y)
		}
		m.train(w[:], p, y, lrGroup)
		m.gHist = m.gHist<<1 | uint32(y)
		if y == 0 {
			// All zero: only the history moves.
			k := end - g
			if k >= 3 {
				m.o3, m.o2, m.o1 = o[end-3], o[end-2], o[end-1]
			} else {
				for _, x := range o[g:end] {
					m.o3, m.o2, m.o1 = m.o2, m.o1, x
				}
			}
			m.d2, m.d1 = 0, 0
			m.nzHist <<= uint(k)
			if k >= 8 {
				m.dHist = 0
			} else {
				m.dHist <<= 8 * uint(k)
			}
			continue
		}
		for i := g; i < end; i++ {
			var oN byte
			if i+1 < n {
				oN = o[i+1]
			}
			if d != nil {
				m.codeByte(c, d[i], o[i], oN)
			} else {
				o[i] += m.codeByte(c, 0, o[i], oN)
			}
		}
	}
}

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// apm refines a probability given a small context: 33 interpolated
// buckets over the stretched probability per context value (256 contexts).
type apm struct {
	t   [256 * 33]uint16
	idx int
	w   int32
}

func (a *apm) init() {
	for c := 0; c < 256; c++ {
		for j := 0; j < 33; j++ {
			a.t[c*33+j] = uint16(min(squash(int32(j-16)*128)*16, 65535))
		}
	}
}

func (a *apm) refine(st *[4096]int16, p int32, ctx uint32) int32 {
	s := int32(st[p]) + 2048 // 1..4095
	lo := s >> 7
	a.w = s & 127
	a.idx = int(ctx&255)*33 + int(lo)
	return (int32(a.t[a.idx])*(128-a.w) + int32(a.t[a.idx+1])*a.w) >> 11
}

func (a *apm) update(y int) {
	target := int32(y) << 16
	for k, wt := range [2]int32{128 - a.w, a.w} {
		v := int32(a.t[a.idx+k])
		v += ((target - v) >> 6) * wt >> 7
		a.t[a.idx+k] = uint16(min(max(v, 0), 65535))
	}
}
