package delta

// Context-mixing coder for the extra bytes of format version 3, which
// Apply still reads (version 4 codes them with litModel, lit.go; nothing
// writes version 3 any more).
//
// Extra bytes are the parts of new that match nothing in old: new code
// and new data. Version 2 left them to zstd; version 3 codes them with the
// same binary arithmetic coder as the diff, bit by bit (most significant
// first), each bit predicted by counters under the preceding 1, 2, 3, 4 and
// 6 bytes (hashed), a sparse context for fixed-width instruction sets (the
// two bytes four back, and the position modulo 4), an order-0 table, and a
// match model: the longest recent repetition of the last bytes in the extra
// history predicts the next byte, with a confidence learned per match
// length. The predictions are mixed by a logistic mixer whose weight set is
// chosen by the match length and the bit position. The model carries over
// from block to block; memory is lit3Memory(ModelBits), whatever the image.

// litCoder codes extra bytes: litModel (version 4) or lit3Model (version
// 3). code codes b (encoding), or decodes len(b) bytes into b (c.dec),
// with o the old bytes as context and pos b's offset in new.
type litCoder interface {
	code(c *rangeCoder, b, o []byte, pos int64)
}

const (
	lit3Hashed   = 7              // hashed tables: orders 1-4 and 6, sparse, old byte
	lit3Inputs   = lit3Hashed + 3 // and order 0, match, old byte as a prediction
	lit3MinMatch = 5              // bytes hashed to find a match
	lrLit3       = 14             // mixer learning rate (error x rate / 65536 per unit input)
)

// lit3Memory is the memory of a lit3Model of size bits (Header.ModelBits):
// 7 hashed tables of 1<<(bits-1) counters in one, the history of
// 1<<(bits+1) bytes and its hash index of 1<<(bits-2) positions, plus the
// fixed part.
func lit3Memory(bits int) int64 {
	return 2*(lit3Hashed<<(bits-1)) + 1<<(bits+1) + 4<<(bits-2) + lit3Fixed
}

// lit3Fixed bounds the rest of a lit3Model: order-0 and match counters and
// the mixer weights (TestModelMemory checks it).
const lit3Fixed = 40 << 10

type lit3Model struct {
	st     *cmTables // stretch, squash and counter update
	tabs   cmTables
	tbits  uint
	t      []counter // lit3Hashed tables of 1<<tbits: orders 1, 2, 3, 4, 6, sparse, old byte
	o0     [256]counter
	mc     [64 * 2]counter // match: (length bucket, expected bit)
	oc     [32 * 2]counter // old byte: (agreement bucket, expected bit)
	agree  uint32          // recent bytes equal to their old byte, in a row
	w      [4 * 4 * 8][lit3Inputs]int32
	hist   []byte   // ring of the last extra bytes (a power of two)
	hmask  uint32   // len(hist)-1
	hidx   []uint32 // hash of the last lit3MinMatch bytes -> position+1
	pos    uint32   // bytes coded so far
	c8     uint64   // the last 8 bytes
	mptr   uint32   // position of the predicted byte in hist (valid if mlen > 0)
	mlen   uint32
	hashes [6]uint32 // per-byte context hashes
}

func newLit3Model(bits int) *lit3Model {
	m := &lit3Model{
		tbits: uint(bits - 1),
		t:     make([]counter, lit3Hashed<<(bits-1)),
		hist:  make([]byte, 1<<(bits+1)),
		hmask: 1<<(bits+1) - 1,
		hidx:  make([]uint32, 1<<(bits-2)),
	}
	m.tabs.init()
	m.st = &m.tabs
	for i := range m.t {
		m.t[i] = counterInit
	}
	for i := range m.o0 {
		m.o0[i] = counterInit
	}
	for i := range m.mc {
		m.mc[i] = counterInit
	}
	for i := range m.oc {
		m.oc[i] = counterInit
	}
	for i := range m.w {
		for j := range m.w[i] {
			m.w[i][j] = 1 << 14
		}
	}
	return m
}

// code codes the bytes b (encoding), or decodes len(b) bytes into b
// (c.dec), and moves the model over them. o holds, for each byte, the old
// byte where the alignment before it would continue (its context).
//
// The hashed tables are addressed a nibble at a time: a context's hash and
// the nibble's high bits choose a block of 16 counters, the bits of the
// nibble so far one counter in it, so a byte costs two hashes and two
// cache lines per table.
func (m *lit3Model) code(c *rangeCoder, b, o []byte, _ int64) {
	st := m.st
	tmask := uint32(1)<<m.tbits - 16
	var s [lit3Inputs]int32
	var idx [lit3Hashed]uint32
	for k := range b {
		c8 := m.c8
		ob := uint32(o[k])
		hs := [lit3Hashed]uint32{
			hash32(uint32(c8&0xFF), 0x101),
			hash32(uint32(c8&0xFFFF), 0x202),
			hash32(uint32(c8&0xFFFFFF), 0x303),
			hash32(uint32(c8), 0x404),
			hash32(uint32(c8)^uint32(c8>>32&0xFFFF)*0x2F0B4A13, 0x606),
			hash32(uint32(c8>>16&0xFFFF)|(m.pos&3)<<16, 0x707),
			hash32(ob|uint32(c8&0xFF)<<8|min(m.agree, 3)<<16, 0x808),
		}
		pb := uint32(256) // the match's predicted byte, 256 when none
		if m.mlen > 0 {
			pb = uint32(m.hist[m.mptr&m.hmask])
		}
		lb := min(m.mlen, 15)
		if m.mlen > 32 {
			lb = 16 + min((m.mlen-32)/32, 15)
		}
		ab := min(m.agree, 15)
		var y byte
		if !c.dec {
			y = b[k]
		}
		node := uint32(1)
		for i := 7; i >= 0; i-- {
			if i == 7 || i == 3 {
				for j := range idx {
					idx[j] = uint32(j)<<m.tbits + hash32(hs[j], node)&tmask
				}
			}
			nib := node & 15
			if i >= 4 {
				nib = node
			} else {
				nib = 1<<(3-uint(i)) | node&(1<<(3-uint(i))-1)
			}
			t := m.t
			c0 := &m.o0[node]
			var cs [lit3Hashed]*counter
			for j := range cs {
				cs[j] = &t[idx[j]+nib]
			}
			exp := uint32(2)
			cm := &m.mc[0] // no match: a near-even input
			if pb < 256 && (pb|256)>>(i+1) == node {
				exp = pb >> i & 1
				cm = &m.mc[lb*2+exp]
			}
			oexp := uint32(2)
			co := &m.oc[1]
			if (ob|256)>>(i+1) == node {
				oexp = ob >> i & 1
				co = &m.oc[ab*2+oexp]
			}
			sel := 0
			if exp < 2 {
				sel = 1 + min(int(lb)/4, 2)
			}
			osel := 0
			if oexp < 2 {
				osel = 1 + min(int(ab)/2, 2)
			}
			w := &m.w[(sel*4+osel)*8+7-i]
			str := &st.stretch
			s[0] = int32(str[*c0>>4])
			for j := range cs {
				s[j+1] = int32(str[*cs[j]>>4])
			}
			s[lit3Hashed+1] = int32(str[*cm>>4])
			s[lit3Hashed+2] = int32(str[*co>>4])
			var dot int64
			for j := range s {
				dot += int64(w[j]) * int64(s[j])
			}
			p := st.squash(int32(dot >> 16))
			bit := c.code(int(y>>i)&1, p)
			m.update(c0, bit)
			for j := range cs {
				m.update(cs[j], bit)
			}
			m.update(cm, bit)
			m.update(co, bit)
			err := ((int32(bit) << 12) - p) * lrLit3
			for j := range s {
				w[j] += (s[j]*err + 1<<15) >> 16
			}
			node = node<<1 | uint32(bit)
		}
		v := byte(node)
		if c.dec {
			b[k] = v
		}
		if uint32(v) == ob {
			m.agree++
		} else {
			m.agree = 0
		}
		m.push(v)
	}
}

// push appends v to the history and moves the match.
func (m *lit3Model) push(v byte) {
	hmask := m.hmask
	if m.mlen > 0 {
		if m.hist[m.mptr&hmask] == v {
			m.mlen++
			m.mptr++
		} else {
			m.mlen = 0
		}
	}
	m.hist[m.pos&hmask] = v
	m.pos++
	m.c8 = m.c8<<8 | uint64(v)
	if m.pos < lit3MinMatch {
		return
	}
	h := hash32(uint32(m.c8)^uint32(m.c8>>32&0xFF)*0x9E3779B1, 0x505) & uint32(len(m.hidx)-1)
	if m.mlen == 0 {
		if cand := m.hidx[h]; cand > 0 && m.pos-cand < hmask-40 {
			// Verify and measure the match backwards.
			n := uint32(0)
			for n < 32 && n < cand && m.hist[(cand-1-n)&hmask] == m.hist[(m.pos-1-n)&hmask] {
				n++
			}
			if n >= lit3MinMatch {
				m.mlen, m.mptr = n, cand
			}
		}
	}
	m.hidx[h] = m.pos
}

// update moves counter c towards bit y at rate 1/(n+1.5), n up to
// lit3Limit.
func (m *lit3Model) update(c *counter, y int) {
	p := int32(*c >> 4)
	n := *c & 15
	p += (((int32(y)<<12)-p)*m.st.rate[n] + 1<<15) >> 16
	p = min(max(p, 1), 4095)
	if n < lit3Limit {
		n++
	}
	*c = counter(p)<<4 | n
}

// lit3Limit caps a literal counter's update count (its slowest rate is
// 1/(lit3Limit+1.5)): 3 measured best on the corpus (4 and 8 were 0.1% and
// 0.5% larger on fw-pybricks-jump).
const lit3Limit = 3
