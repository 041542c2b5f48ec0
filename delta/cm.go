package delta

import (
	"errors"
	"io"
	"math/bits"
)

// Context-mixing coder for the diff section.
//
// Diff bytes (new minus old, over the "add" runs) are mostly zero; where
// they are not, the old bytes around them (an instruction's opcode before a
// displacement, a pointer in a table) tell where and by how much. The diff
// is coded with a binary arithmetic coder, coarse to fine: a flag per group
// of 128 bytes "some byte is nonzero", in such a group a flag per subgroup
// of 8 bytes, in such a subgroup a flag per byte "d != 0", and for a nonzero
// byte its value, first as "is it the j-th most recent nonzero value?" for
// j = 0..7 and, failing that, as 8 bits. Every decision is predicted by a
// few adaptive context models (contexts: the aligned old bytes before, at
// and after the position, the previous diff bytes and flags, the candidate
// value) whose predictions are mixed by an online logistic mixer. Most
// bytes are thus skipped a subgroup at a time, and a value costs about two
// decisions instead of eight, which is what makes decoding fast. Everything
// is integer arithmetic, so the encoder and the decoder compute identical
// probabilities on every platform. The model's memory is fixed
// (modelMemory bytes), whatever the image size.

// Model shape. The flag and value tables' sizes come from the header
// (ModelBits); these are fixed.
const (
	nInputs  = 6  // models mixed per group flag and literal bit
	nzInputs = 4  // models mixed per nonzero flag, subgroup flag and recent-value decision
	grpBits  = 16 // hashed contexts of the group and subgroup flags
	// groupSize is the span of one "all zero" flag: the diff of an add run
	// is coded as groups of groupSize bytes, and only the groups with a
	// nonzero byte subgroup by subgroup.
	groupSize = 128
	// subSize is the span of a subgroup flag inside a nonzero group: only
	// the subgroups with a nonzero byte are coded byte by byte.
	subSize = 8
	// mtfLen is the length of the move-to-front list of recent nonzero
	// diff values.
	mtfLen = 8

	// Mixer learning rates (error x rate / 65536 per unit input).
	lrFlag  = 60
	lrValue = 60
	lrGroup = 20
	lrSub   = 20
)

// modelMemory is the memory of a diffModel's tables for a model size of
// bits (Header.ModelBits): the flag table of 1<<bits counters, three
// value tables of 1<<(bits-1) and the group table of 1<<grpBits, 2 bytes
// per counter, plus the fixed part.
func modelMemory(bits int) int64 {
	return 2*(1<<bits+3<<(bits-1)+1<<grpBits) + modelFixed
}

// modelFixed bounds the rest of a diffModel (TestModelFixed checks it):
// the stretch, squash and rate tables, the pair table, the mixer weights
// and the history.
const modelFixed = 192 << 10

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

// cmTables are the fixed tables of the context-mixing coders.
type cmTables struct {
	stretch [4096]int16
	squashT [4096]int16 // squash(d-2048) clamped to 1..4095
	rate    [16]int32   // 65536/(n+1.5): adaptation rate after n updates
}

func (m *cmTables) init() {
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
	for d := range m.squashT {
		m.squashT[d] = int16(min(max(squash(int32(d)-2048), 1), 4095))
	}
	for n := range m.rate {
		m.rate[n] = int32(65536 * 2 / (2*n + 3))
	}
}

// diffModel predicts the bits of the diff stream.
type diffModel struct {
	cmTables

	nzBits, valBits uint
	nz              []counter // hashed table of 1<<nzBits counters
	val             []counter // 3 hashed tables of 1<<valBits counters
	grp             []counter // hashed contexts of the group and subgroup flags
	nzLow           [256 * subSize]counter
	gHist           uint32 // bit i: group i+1 back had a nonzero byte
	sHist           uint32 // bit i: subgroup i+1 back had a nonzero byte
	wGrp            [16][nInputs]int32
	wSub            [16][nzInputs]int32
	wNZ             [16][nzInputs]int32
	wVal            [8 * 4][nInputs]int32
	wMtf            [16][nzInputs]int32
	mtf             [mtfLen]byte // recent nonzero diff values, most recent first

	// pair[o1<<8|o0] is the probability (16 bits) that a diff byte whose
	// aligned old byte is o0, after o1, is nonzero: an input of the
	// nonzero flag, and, combined over the subgroup's bytes into pairIn
	// (set before each subgroup flag; its update is overwritten), of the
	// subgroup flag.
	pair   [1 << 16]uint16
	pairIn counter
	nzBias counter // a context-free input of the nonzero flag

	// History, in diff-stream order.
	o1, o2, o3 byte   // previous aligned old bytes
	d1, d2     byte   // previous diff bytes
	lastNZ     byte   // last nonzero diff byte
	nzHist     uint32 // bit i: diff byte i+1 positions back was nonzero
	dHist      uint64 // previous 8 diff bytes
}

// newDiffModel returns a model of size bits (MinModelBits..MaxModelBits).
func newDiffModel(bits int) *diffModel {
	m := &diffModel{
		nzBits:  uint(bits),
		valBits: uint(bits - 1),
		nz:      make([]counter, 1<<bits),
		val:     make([]counter, 3<<(bits-1)),
		grp:     make([]counter, 1<<grpBits),
	}
	m.nzBias = counterInit
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
		for j := range m.wSub[i] {
			m.wSub[i][j] = 1 << 14
		}
	}
	m.cmTables.init()
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
	for j := range m.mtf {
		m.mtf[j] = byte(j/2+1) ^ byte(-(j & 1))
	}
	for i := range m.pair {
		m.pair[i] = 4096
	}
	for i := range m.wMtf {
		for j := range m.wMtf[i] {
			m.wMtf[i][j] = 1 << 14
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

// update moves counter c towards bit y. A counter's probability stays in
// 1..4095.
func (m *cmTables) update(c *counter, y int) {
	p := int32(*c >> 4)
	n := *c & 15
	p += (((int32(y)<<12)-p)*m.rate[n] + 1<<15) >> 16
	p = min(max(p, 1), 4095)
	if n < 4 {
		n++
	}
	*c = counter(p)<<4 | n
}

// code6 codes bit (ignored when decoding) with the mixed prediction of the
// six counters cs under weights w, then updates the counters (in order)
// and the weights at learning rate lr, and returns the bit.
func (m *diffModel) code6(c *rangeCoder, w *[nInputs]int32, cs *[nInputs]*counter, bit int, lr int32) int {
	st := &m.stretch
	s0 := int32(st[*cs[0]>>4])
	s1 := int32(st[*cs[1]>>4])
	s2 := int32(st[*cs[2]>>4])
	s3 := int32(st[*cs[3]>>4])
	s4 := int32(st[*cs[4]>>4])
	s5 := int32(st[*cs[5]>>4])
	dot := int64(w[0])*int64(s0) + int64(w[1])*int64(s1) + int64(w[2])*int64(s2) +
		int64(w[3])*int64(s3) + int64(w[4])*int64(s4) + int64(w[5])*int64(s5)
	p := m.squash(int32(dot >> 16))
	bit = c.code(bit, p)
	m.update(cs[0], bit)
	m.update(cs[1], bit)
	m.update(cs[2], bit)
	m.update(cs[3], bit)
	m.update(cs[4], bit)
	m.update(cs[5], bit)
	err := ((int32(bit) << 12) - p) * lr
	w[0] += (s0*err + 1<<15) >> 16
	w[1] += (s1*err + 1<<15) >> 16
	w[2] += (s2*err + 1<<15) >> 16
	w[3] += (s3*err + 1<<15) >> 16
	w[4] += (s4*err + 1<<15) >> 16
	w[5] += (s5*err + 1<<15) >> 16
	return bit
}

// code4 is code6 for four counters.
func (m *diffModel) code4(c *rangeCoder, w *[nzInputs]int32, cs *[nzInputs]*counter, bit int, lr int32) int {
	st := &m.stretch
	s0 := int32(st[*cs[0]>>4])
	s1 := int32(st[*cs[1]>>4])
	s2 := int32(st[*cs[2]>>4])
	s3 := int32(st[*cs[3]>>4])
	dot := int64(w[0])*int64(s0) + int64(w[1])*int64(s1) + int64(w[2])*int64(s2) + int64(w[3])*int64(s3)
	p := m.squash(int32(dot >> 16))
	bit = c.code(bit, p)
	m.update(cs[0], bit)
	m.update(cs[1], bit)
	m.update(cs[2], bit)
	m.update(cs[3], bit)
	err := ((int32(bit) << 12) - p) * lr
	w[0] += (s0*err + 1<<15) >> 16
	w[1] += (s1*err + 1<<15) >> 16
	w[2] += (s2*err + 1<<15) >> 16
	w[3] += (s3*err + 1<<15) >> 16
	return bit
}

// squash is squash (above) through a table, clamped to 1..4095.
func (m *cmTables) squash(d int32) int32 {
	return int32(m.squashT[min(max(d, -2047), 2047)+2048])
}

func hash32(a, b uint32) uint32 {
	h := a*0x9E3779B1 ^ b*0x85EBCA77
	h ^= h >> 15
	h *= 0xC2B2AE3D
	return h ^ h>>13
}

// codeByte codes one diff byte d (ignored when decoding) at position pos
// of its subgroup, whose aligned old byte is o0 and the next aligned old
// byte oN (0 at the end of a run), and returns it. force: the byte is known
// to be nonzero (the last of a subgroup whose other bytes are zero), only
// its value is coded.
func (m *diffModel) codeByte(c *rangeCoder, d, o0, oN byte, pos int, force bool) byte {
	if force {
		return m.codeValue(c, d, o0, oN, 1)
	}
	h := uint32(o0) | uint32(m.o1)<<8 | uint32(m.o2)<<16 | uint32(m.o3)<<24
	c1 := &m.nz[hash32(h, 2)&(1<<m.nzBits-1)]
	c2 := &m.nzLow[(m.nzHist&0xff|uint32(pos)<<8)%(256*subSize)]
	c3 := &m.nzBias
	wsel := (m.nzHist & 3) | uint32(min(bits.OnesCount32(m.nzHist>>2&0xff), 3))<<2
	w := &m.wNZ[wsel&15]
	st := &m.stretch
	s0 := int32(st[m.pair[uint32(m.o1)<<8|uint32(o0)]>>4])
	s1 := int32(st[*c1>>4])
	s2 := int32(st[*c2>>4])
	s3 := int32(st[*c3>>4])
	dot := int64(w[0])*int64(s0) + int64(w[1])*int64(s1) + int64(w[2])*int64(s2) + int64(w[3])*int64(s3)
	p := m.squash(int32(dot >> 16))
	y := 0
	if d != 0 {
		y = 1
	}
	y = c.code(y, p)
	m.update(c1, y)
	m.update(c2, y)
	m.update(c3, y)
	err := ((int32(y) << 12) - p) * lrFlag
	w[0] += (s0*err + 1<<15) >> 16
	w[1] += (s1*err + 1<<15) >> 16
	w[2] += (s2*err + 1<<15) >> 16
	w[3] += (s3*err + 1<<15) >> 16
	return m.codeValue(c, d, o0, oN, y)
}

// codeValue codes the value of a diff byte whose nonzero flag is y and
// moves the history.
func (m *diffModel) codeValue(c *rangeCoder, d, o0, oN byte, y int) byte {
	if y == 0 {
		d = 0
	} else {
		// Recent values first: "is it mtf[j]?" for j = 0, 1, ... (the
		// encoder answers with the index k of d in the list), and after
		// mtfLen noes the value itself.
		k := mtfLen
		for j, x := range m.mtf {
			if x == d {
				k = j
				break
			}
		}
		j := 0
		for ; j < mtfLen; j++ {
			if m.mtfBit(c, uint32(j), k == j, o0, oN) == 1 {
				break
			}
		}
		k = j
		if k < mtfLen {
			d = m.mtf[k]
		} else {
			d = m.codeLiteral(c, d, o0, oN)
			k = mtfLen - 1
			for j, x := range m.mtf {
				if x == d {
					k = j
					break
				}
			}
		}
		copy(m.mtf[1:k+1], m.mtf[:k])
		m.mtf[0] = d
		m.lastNZ = d
	}
	m.o3, m.o2, m.o1 = m.o2, m.o1, o0
	m.d2, m.d1 = m.d1, d
	m.nzHist = m.nzHist<<1 | uint32(y)
	m.dHist = m.dHist<<8 | uint64(d)
	return d
}

// mtfBit codes the decision "the value is mtf[j]" (bit, ignored when
// decoding) and returns it.
func (m *diffModel) mtfBit(c *rangeCoder, j uint32, bit bool, o0, oN byte) int {
	valBits := m.valBits
	vmask := uint32(1)<<valBits - 1
	v := m.val
	cand := uint32(m.mtf[j%mtfLen])
	vc := [nzInputs]*counter{
		&v[hash32(cand<<8|uint32(o0)<<16|uint32(oN)<<24, 31)&vmask],
		&v[2<<valBits+hash32(cand<<8|uint32(m.o1)<<16|uint32(o0)<<24, 33)&vmask],
		&v[hash32(cand<<8|uint32(byte(m.dHist>>56))<<16|uint32(byte(m.dHist>>24))<<24, 34)&vmask],
		&v[2<<valBits+hash32(cand<<8|(m.nzHist&0xff)<<16, 36)&vmask],
	}
	w := &m.wMtf[j&7|(m.nzHist&1)<<3]
	b := 0
	if bit {
		b = 1
	}
	return m.code4(c, w, &vc, b, lrValue)
}

// codeLiteral codes a value d (ignored when decoding) missing from the
// move-to-front list, most significant bit first, in a binary tree, and
// returns it.
func (m *diffModel) codeLiteral(c *rangeCoder, d, o0, oN byte) byte {
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
		w := &m.wVal[(7-i)*4+min(bits.OnesCount32(m.nzHist&0xf), 3)]
		b := m.code6(c, w, &vc, int(d>>i)&1, lrValue)
		node = node<<1 | uint32(b)
	}
	return byte(node)
}

// rangeCoder is a carryless binary arithmetic coder (32-bit range) that
// encodes (out) or decodes (r, reading at most limit bytes).
type rangeCoder struct {
	x1, x2, x uint32
	dec       bool
	out       []byte
	r         io.ByteReader
	limit     int64 // coded bytes left to read; down to -pad in the implied zeros
	pad       int64
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

// finish flushes the encoder with the fewest bytes (1 to 4) that, followed
// by zeros, lie in the final interval (format version 4: a decoder reads
// up to 3 zero bytes past a section's end). Version 3 wrote x1's 4 bytes,
// and its decoder reads exactly the bytes written.
func (c *rangeCoder) finish() []byte {
	for k := 1; k < 4; k++ {
		mask := uint32(1)<<(32-8*k) - 1
		if v := (c.x1 + mask) &^ mask; v >= c.x1 && v <= c.x2 {
			for i := range k {
				c.out = append(c.out, byte(v>>(24-8*i)))
			}
			return c.out
		}
	}
	x := c.x1
	c.out = append(c.out, byte(x>>24), byte(x>>16), byte(x>>8), byte(x))
	return c.out
}

var errCodedOverrun = errors.New("coded diff section overrun")

// codedPad is how many zero bytes a version 4 decoder reads past the end
// of a coded section (finish writes at least 1 of the 4 bytes of its
// final value).
const codedPad = 3

func (c *rangeCoder) byte() uint32 {
	if c.limit <= 0 {
		if c.limit > -c.pad {
			c.limit--
			return 0
		}
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

// initDecoder starts decoding from r, which holds limit coded bytes
// followed by pad implied zero bytes (codedPad in version 4, else 0).
func (c *rangeCoder) initDecoder(r io.ByteReader, limit, pad int64) {
	*c = rangeCoder{x2: 0xffffffff, dec: true, r: r, limit: limit, pad: pad}
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
		y = m.code6(c, w, &cs, y, lrGroup)
		m.gHist = m.gHist<<1 | uint32(y)
		if y == 0 {
			// All zero: only the history moves.
			m.skip(o[g:end])
			continue
		}
		seen := false // a nonzero subgroup in this group
		for s := g; s < end; s += subSize {
			se := min(s+subSize, end)
			ys := 1
			if se < end || seen {
				ys = m.codeSub(c, d, o, s, se, g)
			}
			m.sHist = m.sHist<<1 | uint32(ys)
			prev := m.o1
			if ys == 0 {
				for _, x := range o[s:se] {
					m.pairUpdate(prev, x, 0)
					prev = x
				}
				m.skip(o[s:se])
				continue
			}
			seen = true
			any := false // a nonzero byte in this subgroup
			for i := s; i < se; i++ {
				var oN byte
				if i+1 < n {
					oN = o[i+1]
				}
				force := !any && i == se-1
				o0 := o[i]
				var x byte
				if d != nil {
					x = m.codeByte(c, d[i], o0, oN, i-s, force)
				} else {
					x = m.codeByte(c, 0, o0, oN, i-s, force)
					o[i] += x
				}
				y := 0
				if x != 0 {
					y = 1
				}
				m.pairUpdate(prev, o0, y)
				prev = o0
				any = any || x != 0
			}
		}
	}
}

// skip moves the history over bytes whose diff is all zero (old bytes o).
func (m *diffModel) skip(o []byte) {
	k := len(o)
	if k >= 3 {
		m.o3, m.o2, m.o1 = o[k-3], o[k-2], o[k-1]
	} else {
		for _, x := range o {
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
}

// codeSub codes the flag "some diff byte of o[s:se] is nonzero" (the
// subgroup starting s-g bytes into its group).
func (m *diffModel) codeSub(c *rangeCoder, d, o []byte, s, se, g int) int {
	const gmask = 1<<grpBits - 1
	y := 0
	if d != nil {
		for _, x := range d[s:se] {
			if x != 0 {
				y = 1
				break
			}
		}
	}
	// The subgroup's first two old bytes (0 past its end) and the one before.
	head := uint32(m.o1) | uint32(o[s])<<8
	if s+1 < se {
		head |= uint32(o[s+1]) << 16
	}
	pos := uint32(s-g) / subSize
	gr := m.grp
	cs := [nzInputs]*counter{
		&gr[hash32(m.sHist&0xff|pos<<8, 21)&gmask],
		&gr[hash32(head, 23)&gmask],
		&gr[hash32(m.nzHist&0xffff, 24)&gmask],
		&m.pairIn,
	}
	// The last input: the chance that some byte is nonzero if each were
	// nonzero independently with the probability of its pair of old bytes.
	q := int32(4096)
	prev := m.o1
	for _, b := range o[s:se] {
		q = q * (4096 - int32(m.pair[uint32(prev)<<8|uint32(b)]>>4)) >> 12
		prev = b
	}
	m.pairIn = counter(min(max(4096-q, 1), 4095)) << 4
	w := &m.wSub[m.sHist&0xf]
	return m.code4(c, w, &cs, y, lrSub)
}

// pairUpdate moves the probability that a diff byte whose aligned old byte
// is cur, after prev, is nonzero by 1/16 towards y.
func (m *diffModel) pairUpdate(prev, cur byte, y int) {
	i := uint32(prev)<<8 | uint32(cur)
	v := int32(m.pair[i])
	v += ((int32(y) << 16) - int32(y) - v) >> 4
	m.pair[i] = uint16(v)
}

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}
