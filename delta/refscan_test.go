package delta

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"sort"
	"testing"
)

// x86Ref is piece.x86 as it was before its first-byte table (a chain of
// tests per byte), kept as the specification the faster scan must match:
// encoder and decoder of every format version 3 and 4 patch rely on it.
func (p *piece) x86Ref() {
	buf := p.buf
	for i := 0; i+5 <= len(buf); {
		op := buf[i]
		// ol: bytes before the displacement; imm: bytes after it; op2:
		// bytes that must be the same in new for a vote.
		ol, imm, code := 0, 0, true
		switch {
		case op == 0xE8 || op == 0xE9:
			ol = 1
		case i+6 > len(buf):
		case op == 0x0F && buf[i+1]&0xF0 == 0x80:
			ol = 2
		case op == 0xFF && (buf[i+1] == 0x15 || buf[i+1] == 0x25):
			ol, code = 2, false
		case x86ModRM[op] != 0 && buf[i+1]&0xC7 == 0x05:
			ol, code = 2, false
			imm = [4]int{0, 0, 1, 4}[x86ModRM[op]]
		case op == 0x0F && i+7 <= len(buf) && x86ModRM0F[buf[i+1]] != 0 && buf[i+2]&0xC7 == 0x05:
			ol, code = 3, false
			imm = [4]int{0, 0, 1, 4}[x86ModRM0F[buf[i+1]]]
		}
		if ol == 0 || i+ol+4+imm > len(buf) {
			i++
			continue
		}
		f := i + ol
		pc := p.ov + uint64(f+4+imm)
		t := pc + uint64(int64(int32(binary.LittleEndian.Uint32(buf[f:]))))
		if !p.m.inOld(t, code) {
			i++
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
		i = f + 4 + imm
	}
}

// TestX86ScanMatchesRef runs both scanners over bytes dense in the
// opcodes they look for (and over a real executable when
// UPKIT_X86_SCAN_FILE names one), in predict, view and vote modes: the
// rewritten bytes and the votes must be identical.
func TestX86ScanMatchesRef(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	lead := []byte{0xE8, 0xE9, 0x0F, 0xFF, 0x8B, 0x8D, 0x89, 0x83, 0x81, 0xC7, 0x00, 0x48, 0x15, 0x25, 0x05, 0x85, 0xB6, 0x80}
	var bufs [][]byte
	for n := 0; n < 64; n++ {
		n := r.IntN(4096) + 1
		b := make([]byte, 0, n+8)
		for len(b) < n {
			switch r.IntN(4) {
			case 0: // an opcode byte, maybe a RIP-relative ModRM, a near displacement
				b = append(b, lead[r.IntN(len(lead))])
				if r.IntN(2) == 0 {
					b = append(b, 0x05)
				}
				b = binary.LittleEndian.AppendUint32(b, uint32(int32(r.IntN(2*n+8192)-n-4096)))
			case 1:
				b = append(b, lead[r.IntN(len(lead))])
			default:
				b = append(b, byte(r.Uint32()))
			}
		}
		b = b[:n]
		bufs = append(bufs, b)
	}
	if path := os.Getenv("UPKIT_X86_SCAN_FILE"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		bufs = append(bufs, b)
	}
	for _, b := range bufs {
		size := uint64(len(b))
		m := &refModel{arch: archX86, ptrBits: 64,
			old: []segment{{off: 0, size: size, vaddr: 0x400000, kind: segCode}, {off: size, size: 1 << 20, vaddr: 0x400000 + size, kind: segData}},
			new: []segment{{off: 0, size: size, vaddr: 0x400100, kind: segCode}},
			tab: []shiftEntry{{start: 0, shift: 0}, {start: 0x400000 + size/3, shift: 0x40}, {start: 0x400000 + size/2, shift: -0x1000}}}
		m.bounds()
		nb := bytes.Clone(b)
		for i := 0; i+4 <= len(nb); i += 97 {
			nb[i] ^= byte(i)
		}
		for _, view := range []bool{false, true} {
			for _, voting := range []bool{false, true} {
				got, want := bytes.Clone(b), bytes.Clone(b)
				var gv, wv []vote
				p := piece{m: m, buf: got, ov: 0x400000, nv: 0x400100, seg: 0x400000, votes: &gv, view: view}
				q := piece{m: m, buf: want, ov: 0x400000, nv: 0x400100, seg: 0x400000, votes: &wv, view: view}
				if voting {
					p.nb, q.nb = nb, nb
				}
				p.x86()
				q.x86Ref()
				if !bytes.Equal(got, want) {
					i := 0
					for got[i] == want[i] {
						i++
					}
					t.Fatalf("view %v voting %v: %d-byte buffer differs from the reference scan first at %d", view, voting, len(b), i)
				}
				if len(gv) != len(wv) {
					t.Fatalf("view %v voting %v: %d votes, reference %d", view, voting, len(gv), len(wv))
				}
				for i := range gv {
					if gv[i] != wv[i] {
						t.Fatalf("vote %d: %+v, reference %+v", i, gv[i], wv[i])
					}
				}
				if !view && !voting && bytes.Equal(got, b) && len(b) > 1000 {
					t.Fatalf("%d-byte buffer: no reference rewritten; the test checks nothing", len(b))
				}
			}
		}
	}
}

// BenchmarkX86Scan predicts the references of a real x86-64 executable
// (UPKIT_X86_SCAN_FILE) as apply does.
func BenchmarkX86Scan(b *testing.B) {
	path := os.Getenv("UPKIT_X86_SCAN_FILE")
	if path == "" {
		b.Skip("set UPKIT_X86_SCAN_FILE to an x86-64 executable")
	}
	img, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	size := uint64(len(img))
	m := &refModel{arch: archX86, ptrBits: 64,
		old: []segment{{off: 0, size: size, vaddr: 0x400000, kind: segCode}},
		new: []segment{{off: 0, size: size, vaddr: 0x400000, kind: segCode}},
		tab: []shiftEntry{{start: 0, shift: 0}, {start: 0x400000 + size/3, shift: 0x40}}}
	m.bounds()
	buf := make([]byte, len(img))
	b.SetBytes(int64(len(img)))
	for b.Loop() {
		copy(buf, img)
		m.predict(buf, 0, 0)
	}
}

// TestTargetShift checks the target map's lookup against sort.Search: the
// shift of the last entry starting at or before t (the first entry's for a
// t before it).
func TestTargetShift(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := 1; n < 70; n++ {
		m := &refModel{}
		start := uint64(r.IntN(100))
		for range n {
			m.tab = append(m.tab, shiftEntry{start: start, shift: int64(r.IntN(2000) - 1000)})
			start += uint64(r.IntN(50) + 1)
		}
		for q := uint64(0); q < start+100; q++ {
			i := sort.Search(len(m.tab), func(i int) bool { return m.tab[i].start > q })
			want := m.tab[max(i-1, 0)].shift
			if got := m.targetShift(q); got != want {
				t.Fatalf("%d entries, target %d: shift %d, want %d", n, q, got, want)
			}
		}
	}
	if (&refModel{}).targetShift(5) != 0 {
		t.Fatal("an empty map moves a target")
	}
}
