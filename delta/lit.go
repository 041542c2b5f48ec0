package delta

// Context-mixing coder for the extra bytes (format version 4; lit3.go
// keeps version 3's, which Apply still reads).
//
// Extra bytes are the parts of new that match nothing in old: new code
// and new data. They are coded bit by bit (most significant first) with
// the binary arithmetic coder of the diff. Each bit is predicted from ten
// contexts of the preceding bytes: orders 1, 2 and 3, sparse contexts
// that skip bytes (what fixed-width instruction sets and tables need:
// the byte 2, 3, 4 or 8 back, with the byte's place in its aligned 4-byte
// word), the 4 bytes before the last 4, and the old byte at the cursor
// with the last byte. A context does not hold a probability but a bit
// history (a state: how many zeros and ones it saw, the recent ones
// weighing more), which an adaptive table per context turns into a
// probability. Besides: an order-0 counter, a match model (the longest
// recent repetition of the last bytes in the extra history predicts the
// next byte, with a confidence learned per match length) and the old byte
// as a prediction. Two mixers, one selected by the match and old-byte
// states and the bit's position, the other by the bits of the byte so
// far and the alignment, combine the predictions; two adaptive
// probability maps (APM) refine the average. The model carries over from
// copy to copy and block to block; its memory is litMemory(ModelBits),
// whatever the image.

// Bit-history states. A state stands for the counts (n0, n1) of the bits
// seen in its context, bounded so that there are fewer than 256 states;
// when a bit is seen, the opposite count above 2 is halved (recent bits
// weigh more), and the counts are then lowered until they are in bounds
// (the opposite one first). State 0 is (0, 0): a context never seen.
var stateBound = [...]uint8{40, 24, 14, 9, 7, 6, 5, 4} // largest count given the smaller one

type stateTable struct {
	next [256][2]uint8
	n    [256][2]uint8 // (n0, n1)
	prio [256]uint8    // n0+n1: a bucket's worth when a new context needs its place
}

var states = func() *stateTable {
	t := &stateTable{}
	inBounds := func(n [2]int) bool {
		lo, hi := min(n[0], n[1]), max(n[0], n[1])
		return lo < len(stateBound) && hi <= int(stateBound[lo])
	}
	ids := map[[2]int]int{{0, 0}: 0}
	queue := [][2]int{{0, 0}}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		id := ids[s]
		t.n[id] = [2]uint8{uint8(s[0]), uint8(s[1])}
		t.prio[id] = uint8(s[0] + s[1])
		for y := 0; y < 2; y++ {
			n := s
			n[y]++
			if n[1-y] > 2 {
				n[1-y] = (n[1-y] + 2) / 2
			}
			for !inBounds(n) {
				if n[1-y] > 0 {
					n[1-y]--
				} else {
					n[y]--
				}
			}
			nid, seen := ids[n]
			if !seen {
				nid = len(ids)
				ids[n] = nid
				queue = append(queue, n)
			}
			t.next[id][y] = uint8(nid)
		}
	}
	return t
}()

// A stateMap turns the states of one context into probabilities: 22 bits
// of probability and a 10-bit update count per state, adapting at rate
// 1/(n+1.5) up to smLimit updates.
type stateMap [256]uint32

const smLimit = 1023

func (sm *stateMap) init() {
	for s := range sm {
		n := states.n[s]
		p := (uint32(n[1])*2 + 1) << 22 / (uint32(n[0]+n[1])*2 + 2)
		sm[s] = p << 10
	}
}

var smRate = func() (r [smLimit + 1]uint32) {
	for n := range r {
		r[n] = uint32(65536 * 2 / (2*n + 3))
	}
	return
}()

func (sm *stateMap) update(s uint8, y int) {
	v := sm[s]
	n := v & 1023
	p := int64(v >> 10)
	p += ((int64(y)<<22 - p) * int64(smRate[n])) >> 16
	if n < smLimit {
		n++
	}
	sm[s] = uint32(p)<<10 | n
}

const (
	litCtx      = 10            // contexts
	litHashed   = 7             // of which hashed (the rest index tables directly)
	litInputs   = litCtx + 4    // and order 0, match, old byte, bias
	litMinMatch = 5             // bytes hashed to find a match
	lrLit       = 30            // mixer learning rate (error x rate / 65536 per unit input)
	apmCtx2     = 1 << 12       // contexts of the second APM: the bits so far and the last byte's high nibble
	litDirect   = 1<<16 + 2<<18 // the direct tables: order 1, and bytes 2 and 3 back with the alignment
)

// litMemory is the memory of a litModel of size bits (Header.ModelBits):
// the hashed table of 7<<bits bytes, the direct tables, the history of
// 1<<bits bytes and its index of 1<<(bits-2) positions, plus the fixed
// part.
//
// The direct tables hold 1<<16 states for order 1 (256 contexts of 256
// tree nodes) and 1<<18 for each sparse context of one byte (1024
// contexts: the byte and its alignment).
func litMemory(bits int) int64 {
	return 7<<bits + litDirect + 1<<bits + 4<<(bits-2) + litFixed
}

// litFixed bounds the rest of a litModel: state maps, counters, mixers
// and APMs (TestLitCtrlMemory checks it).
const litFixed = 384 << 10

type litModel struct {
	tabs  cmTables
	t     []byte // hashed contexts: buckets of 16 states, a checksum first
	nb    uint64 // buckets in t
	d     []byte // direct contexts: order 1, byte 2 back, byte 3 back
	sm    [litCtx]stateMap
	o0    [256]counter
	mc    [64 * 2]counter // match: (length bucket, expected bit)
	oc    [32 * 2]counter // old byte: (agreement bucket, expected bit)
	agree uint32          // recent bytes equal to their old byte, in a row
	w     [4 * 4 * 8][litInputs]int32
	w2    [3 * 256][litInputs]int32
	apm1  [256 * 33]uint16
	apm2  [apmCtx2 * 33]uint16
	hist  []byte   // ring of the last extra bytes (a power of two)
	hmask uint32   // len(hist)-1
	hidx  []uint32 // hash of the last litMinMatch bytes -> position+1
	pos   uint32   // bytes coded so far
	c8    uint64   // the last 8 bytes
	mptr  uint32   // position of the predicted byte in hist (valid if mlen > 0)
	mlen  uint32
	touch byte // keeps the bucket loads of code
}

func newLitModel(bits int) *litModel {
	m := &litModel{
		t:     make([]byte, 7<<bits),
		nb:    7 << bits >> 4,
		d:     make([]byte, litDirect),
		hist:  make([]byte, 1<<bits),
		hmask: 1<<bits - 1,
		hidx:  make([]uint32, 1<<(bits-2)),
	}
	m.tabs.init()
	for i := range m.sm {
		m.sm[i].init()
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
	for i := range m.w2 {
		for j := range m.w2[i] {
			m.w2[i][j] = 1 << 14
		}
	}
	for i := range m.apm1 {
		m.apm1[i] = uint16(m.tabs.squash(int32((i%33-16)*128)) * 16)
	}
	for i := range m.apm2 {
		m.apm2[i] = uint16(m.tabs.squash(int32((i%33-16)*128)) * 16)
	}
	return m
}

// bucket returns the offset in t of the 16-byte bucket of context hash h
// (a bucket holds the states of one nibble's 15 tree nodes after a
// checksum byte): one of two neighbours at i and i^16 (i from slot) whose
// checksum matches, or else the one with less history, cleared for h.
func (m *litModel) bucket(h, i uint32) uint32 {
	chk := byte(h)
	t := m.t
	if t[i] == chk {
		return i
	}
	j := i ^ 16
	if t[j] == chk {
		return j
	}
	if states.prio[t[j+1]] < states.prio[t[i+1]] {
		i = j
	}
	clear(t[i : i+16])
	t[i] = chk
	return i
}

// slot is the first bucket offset of context hash h.
func (m *litModel) slot(h uint32) uint32 { return uint32((uint64(h) * m.nb) >> 32 << 4) }

// apm refines probability st (stretched) in context ctx of table t: it
// interpolates between the two nearest of 33 points, and returns the
// probability and the index of the nearer point (the one to update).
func apm(t []uint16, ctx uint32, st int32) (int32, uint32) {
	s := min(max(st+2048, 0), 4095)
	w := s & 127
	i := ctx*33 + uint32(s>>7)
	p := (int32(t[i])*(128-w) + int32(t[i+1])*w) >> 11
	if w >= 64 {
		i++
	}
	return min(max(p, 1), 4095), i
}

func apmUpdate(t []uint16, i uint32, y int) {
	g := int32(y<<16) - int32(y<<5) // 65504 or 0
	v := int32(t[i])
	t[i] = uint16(v + (g-v)>>6)
}

// code codes the bytes b (encoding), or decodes len(b) bytes into b
// (c.dec), and moves the model over them. o holds, for each byte, the old
// byte where the alignment before it would continue (its context); pos is
// the offset of b[0] in the new image (its alignment).
func (m *litModel) code(c *rangeCoder, b, o []byte, pos int64) {
	st := &m.tabs
	str := &st.stretch
	var s [litInputs]int32
	var bk [litHashed]uint32 // bucket offsets of the hashed contexts
	var hs [litHashed]uint32
	var q [litCtx]*uint8 // the contexts' states for the current bit
	t, d := m.t, m.d
	s[litInputs-1] = 256
	align := uint32(pos)
	for k := range b {
		c8 := m.c8
		// The match index: the last litMinMatch bytes -> the position
		// after them (loaded first, used last: its cache miss overlaps
		// the buckets').
		var hi, cand uint32
		if m.pos >= litMinMatch {
			hi = hash32(uint32(c8)^uint32(c8>>32&0xFF)*0x9E3779B1, 0x505) & uint32(len(m.hidx)-1)
			cand = m.hidx[hi]
		}
		ob := uint32(o[k])
		a := align & 3
		hs = [litHashed]uint32{
			uint32(c8 & 0xFFFF),
			uint32(c8&0xFFFFFF) | 1<<24,
			uint32(c8>>8&0xFF) | uint32(c8>>24&0xFF)<<8 | 2<<24,
			uint32(c8>>16&0xFFFF) | a<<16 | 3<<24,
			ob | uint32(c8&0xFF)<<8 | min(m.agree, 3)<<16 | 4<<24,
			hash32(uint32(c8>>32), 5),
			uint32(c8>>24&0xFF) | uint32(c8>>56)<<8 | a<<16 | 6<<24,
		}
		// Direct tables: order 1; byte 2 back and byte 3 back, with a.
		d0 := uint32(c8&0xFF) << 8
		d1 := 1<<16 + (uint32(c8>>8&0xFF)|a<<8)<<8
		d2 := 1<<16 + 1<<18 + (uint32(c8>>16&0xFF)|a<<8)<<8
		var hj [litHashed]uint32
		var touch byte
		for j := range bk {
			hj[j] = hash32(hs[j], 1)
			bk[j] = m.slot(hj[j])
			touch |= t[bk[j]]
		}
		m.touch = touch
		if m.pos >= litMinMatch {
			m.hidx[hi] = m.pos
			if m.mlen == 0 && cand > 0 && m.pos-cand < m.hmask-40 {
				// Verify and measure the match backwards.
				hmask := m.hmask
				n := uint32(0)
				for n < 32 && n < cand && m.hist[(cand-1-n)&hmask] == m.hist[(m.pos-1-n)&hmask] {
					n++
				}
				if n >= litMinMatch {
					m.mlen, m.mptr = n, cand
				}
			}
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
		c1 := uint32(c8 & 0xFF)
		node := uint32(1)
		for i := 7; i >= 0; i-- {
			if i == 7 {
				for j := range bk {
					bk[j] = m.bucket(hj[j], bk[j])
				}
			} else if i == 3 {
				// Load every context's bucket before looking into any
				// (their cache misses overlap), then find them.
				for j := range bk {
					hj[j] = hash32(hs[j], node)
					bk[j] = m.slot(hj[j])
					touch |= t[bk[j]]
				}
				m.touch = touch
				for j := range bk {
					bk[j] = m.bucket(hj[j], bk[j])
				}
			}
			nib := node
			if i < 4 {
				nib = 1<<(3-uint(i)) | node&(1<<(3-uint(i))-1)
			}
			c0 := &m.o0[node]
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
			w2 := &m.w2[node+min(a, 2)*256]
			for j := range bk {
				q[j] = &t[bk[j]+nib]
			}
			q[litHashed] = &d[d0+node]
			q[litHashed+1] = &d[d1+node]
			q[litHashed+2] = &d[d2+node]
			s[0] = int32(str[*c0>>4])
			for j, p := range q {
				s[1+j] = int32(str[m.sm[j][*p]>>20])
			}
			s[litCtx+1] = int32(str[*cm>>4])
			s[litCtx+2] = int32(str[*co>>4])
			var d1a, d1b, d2a, d2b int64
			for j := 0; j < litInputs; j += 2 {
				d1a += int64(w[j]) * int64(s[j])
				d1b += int64(w[j+1]) * int64(s[j+1])
				d2a += int64(w2[j]) * int64(s[j])
				d2b += int64(w2[j+1]) * int64(s[j+1])
			}
			pm1 := int32((d1a + d1b) >> 16)
			pm2 := int32((d2a + d2b) >> 16)
			p1 := st.squash(pm1)
			p2 := st.squash(pm2)
			pm := (pm1 + pm2) >> 1
			pa, ia := apm(m.apm1[:], node, pm)
			pb2, ib := apm(m.apm2[:], node|(c1>>4)<<8, pm)
			p := (st.squash(pm) + 3*((pa+pb2)>>1) + 2) >> 2
			bit := c.code(int(y>>i)&1, min(max(p, 1), 4095))
			apmUpdate(m.apm1[:], ia, bit)
			apmUpdate(m.apm2[:], ib, bit)
			st.update(c0, bit)
			for j, p := range q {
				x := *p
				m.sm[j].update(x, bit)
				*p = states.next[x][bit]
			}
			st.update(cm, bit)
			st.update(co, bit)
			e1 := ((int32(bit) << 12) - p1) * lrLit
			e2 := ((int32(bit) << 12) - p2) * lrLit
			for j := range s {
				w[j] += (s[j]*e1 + 1<<15) >> 16
				w2[j] += (s[j]*e2 + 1<<15) >> 16
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
		align++
	}
}

// p returns the 12-bit probability of state s.
func (sm *stateMap) p(s uint8) int32 { return int32(sm[s] >> 20) }

// push appends v to the history and moves the match (a new one is
// looked for before the next byte).
func (m *litModel) push(v byte) {
	if m.mlen > 0 {
		if m.hist[m.mptr&m.hmask] == v {
			m.mlen++
			m.mptr++
		} else {
			m.mlen = 0
		}
	}
	m.hist[m.pos&m.hmask] = v
	m.pos++
	m.c8 = m.c8<<8 | uint64(v)
}
