package delta

import (
	"encoding/binary"
	"math/rand/v2"
)

// Synthetic programs for the reference tests: functions that call each
// other and refer to a data table of pointers, laid out for one
// architecture. Version 2 of a program grows some functions and inserts
// new ones, so that almost every reference changes while the code around
// it does not: what a recompiled release looks like to a differ.

type synthFunc struct {
	filler int   // filler instructions before the references
	calls  []int // indexes of called functions
	data   []int // indexes of referenced data slots
	extra  int   // filler added in version 2
}

type synthProg struct {
	arch  uint8
	funcs []synthFunc
	ndata int
}

func newSynthProg(arch uint8, seed uint64, n int) *synthProg {
	r := rand.New(rand.NewPCG(seed, 11))
	p := &synthProg{arch: arch, ndata: n}
	for i := 0; i < n; i++ {
		f := synthFunc{filler: 2 + r.IntN(12)}
		for k := r.IntN(4); k >= 0; k-- {
			f.calls = append(f.calls, r.IntN(n))
		}
		for k := r.IntN(3); k >= 0; k-- {
			f.data = append(f.data, r.IntN(n))
		}
		if r.IntN(8) == 0 {
			f.extra = 1 + r.IntN(6)
		}
		p.funcs = append(p.funcs, f)
	}
	return p
}

// Layout: code at textAddr, the data table after it at dataAddr.
const (
	synthText = 0x401000
	synthData = 0x801000
)

func (p *synthProg) insnSize() int {
	if p.arch == archThumb {
		return 2
	}
	if p.arch == archX86 {
		return 3
	}
	return 4
}

// build returns the code and the data of version v (1 or 2).
func (p *synthProg) build(v int) (code, data []byte) {
	fill := func(k int) int {
		if v == 2 {
			return p.funcs[k].filler + p.funcs[k].extra
		}
		return p.funcs[k].filler
	}
	size := func(k int) int {
		f := &p.funcs[k]
		n := fill(k) * p.insnSize()
		switch p.arch {
		case archX86:
			n += 5*len(f.calls) + 7*len(f.data) + 6 + 1 // calls, leas, jcc, ret
		case archARM64:
			n += 4*len(f.calls) + 8*len(f.data) + 4 + 4
		case archARM32:
			n += 4*len(f.calls) + 4 + 4*len(f.data) // bl..., bx lr, literal pool
		case archThumb:
			n += 4*len(f.calls) + 2 + 4*len(f.data)
			n = (n + 3) &^ 3
		}
		return (n + 15) &^ 15
	}
	// Version 2 inserts a new function before every tenth.
	var addr []int
	var order []int // function index, or -1 for an inserted one
	pc := 0
	for k := range p.funcs {
		if v == 2 && k%10 == 5 {
			order = append(order, -1)
			pc += 48
		}
		addr = append(addr, pc)
		order = append(order, k)
		pc += size(k)
	}
	code = make([]byte, pc)
	le := binary.LittleEndian
	dataAddr := func(i int) uint64 {
		if v == 2 {
			i += i / 7 // data grows too
		}
		return synthData + uint64(8*i)
	}
	pos := 0
	for _, k := range order {
		if k < 0 {
			for i := 0; i < 48; i++ {
				code[pos+i] = byte(0x90 + i%3)
			}
			pos += 48
			continue
		}
		f := &p.funcs[k]
		start := pos
		put32 := func(w uint32) { le.PutUint32(code[pos:], w); pos += 4 }
		put16 := func(h uint32) { le.PutUint16(code[pos:], uint16(h)); pos += 2 }
		for i := 0; i < fill(k); i++ {
			switch p.arch {
			case archX86:
				copy(code[pos:], []byte{0x48, 0x89, 0xc7 + byte(i%3)})
				pos += 3
			case archARM64:
				put32(0xAA0103E0 + uint32(i%5))
			case archARM32:
				put32(0xE1A00000 + uint32(i%5))
			case archThumb:
				put16(0x4600 + uint32(i%7))
			}
		}
		here := func() int64 { return synthText + int64(pos) }
		for _, c := range f.calls {
			t := int64(synthText + addr[c])
			switch p.arch {
			case archX86:
				code[pos] = 0xE8
				le.PutUint32(code[pos+1:], uint32(t-(here()+5)))
				pos += 5
			case archARM64:
				put32(0x94000000 | uint32((t-here())>>2)&0x3FFFFFF)
			case archARM32:
				put32(0xEB000000 | uint32((t-here()-8)>>2)&0xFFFFFF)
			case archThumb:
				d := uint32(t - here() - 4)
				s := d >> 24 & 1
				put16(0xF000 | s<<10 | d>>12&0x3FF)
				put16(0xD000 | (^(d>>23^s)&1)<<13 | (^(d>>22^s)&1)<<11 | d>>1&0x7FF)
			}
		}
		for _, d := range f.data {
			t := int64(dataAddr(d))
			switch p.arch {
			case archX86:
				copy(code[pos:], []byte{0x48, 0x8D, 0x05})
				le.PutUint32(code[pos+3:], uint32(t-(here()+7)))
				pos += 7
			case archARM64:
				pg := uint32(t>>12 - here()>>12)
				put32(0x90000000 | (pg&3)<<29 | (pg>>2&0x7FFFF)<<5 | 1)
				put32(0x91000000 | uint32(t&0xFFF)<<10 | 1<<5 | 1)
			}
		}
		switch p.arch {
		case archX86:
			copy(code[pos:], []byte{0x0F, 0x84})
			le.PutUint32(code[pos+2:], uint32(int64(synthText+start)-(here()+6)))
			pos += 6
			code[pos] = 0xC3
			pos++
		case archARM64:
			put32(0x54000000 | uint32((int64(synthText+start)-here())>>2)&0x7FFFF<<5)
			put32(0xD65F03C0)
		case archARM32:
			put32(0xE12FFF1E)
			for _, d := range f.data {
				put32(uint32(dataAddr(d)))
			}
		case archThumb:
			put16(0x4770)
			for pos&3 != 0 {
				put16(0xBF00)
			}
			for _, d := range f.data {
				put32(uint32(dataAddr(d)))
			}
		}
		for pos < start+size(k) {
			code[pos] = 0
			pos++
		}
	}
	// The data table: a pointer to each function, 8 bytes apart.
	n := p.ndata
	if v == 2 {
		n += n / 7
	}
	data = make([]byte, 8*n+8)
	for i := range p.funcs {
		j := i
		if v == 2 {
			j += i / 7
		}
		if 8*j+8 <= len(data) {
			if p.arch == archARM32 || p.arch == archThumb {
				le.PutUint32(data[8*j:], uint32(synthText+addr[i]))
			} else {
				le.PutUint64(data[8*j:], uint64(synthText+addr[i]))
			}
		}
	}
	return code, data
}

// image returns version v as an ELF file (x86-64, AArch64, ARM) or, for
// Thumb, raw code then data as firmware is.
func (p *synthProg) image(v int) []byte {
	code, data := p.build(v)
	if p.arch == archThumb {
		return append(code, data...)
	}
	machine := map[uint8]uint16{archX86: emX86_64, archARM64: emAARCH64, archARM32: emARM}[p.arch]
	return synthELF(machine, p.arch != archARM32, code, data)
}

// synthELF is a minimal ELF file: header, .text at synthText, .data at
// synthData, a .bss after it, and the section headers.
func synthELF(machine uint16, is64 bool, code, data []byte) []byte {
	le := binary.LittleEndian
	const textOff = 0x1000
	dataOff := (textOff + len(code) + 0xFFF) &^ 0xFFF
	shoff := (dataOff + len(data) + 15) &^ 15
	type sec struct {
		typ, flags   uint32
		addr, off, n uint64
	}
	secs := []sec{{}, {1, 6, synthText, textOff, uint64(len(code))}, {1, 3, synthData, uint64(dataOff), uint64(len(data))},
		{8, 3, synthData + uint64(len(data)+15)&^15, 0, 4096}}
	shent := 40
	if is64 {
		shent = 64
	}
	b := make([]byte, shoff+shent*len(secs))
	copy(b, "\x7fELF")
	b[5], b[6] = 1, 1
	le.PutUint16(b[16:], 2)
	le.PutUint16(b[18:], machine)
	if is64 {
		b[4] = 2
		le.PutUint64(b[40:], uint64(shoff))
		le.PutUint16(b[58:], uint16(shent))
		le.PutUint16(b[60:], uint16(len(secs)))
	} else {
		b[4] = 1
		le.PutUint32(b[32:], uint32(shoff))
		le.PutUint16(b[46:], uint16(shent))
		le.PutUint16(b[48:], uint16(len(secs)))
	}
	copy(b[textOff:], code)
	copy(b[dataOff:], data)
	for i, s := range secs {
		h := b[shoff+i*shent:]
		le.PutUint32(h[4:], s.typ)
		if is64 {
			le.PutUint64(h[8:], uint64(s.flags))
			le.PutUint64(h[16:], s.addr)
			le.PutUint64(h[24:], s.off)
			le.PutUint64(h[32:], s.n)
		} else {
			le.PutUint32(h[8:], s.flags)
			le.PutUint32(h[12:], uint32(s.addr))
			le.PutUint32(h[16:], uint32(s.off))
			le.PutUint32(h[20:], uint32(s.n))
		}
	}
	return b
}
