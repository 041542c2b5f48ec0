package delta

import (
	"encoding/binary"
	"sort"
)

// ELF layout for the refs section (Create only). parseELF reads just enough
// of a little-endian ELF file to know its machine and where its allocated
// sections sit in the file and in memory; anything it does not understand
// makes it report ok = false, and Create then treats the image as raw
// bytes. Its input is the release engineer's image, but it is parsed as
// hostile anyway (FuzzParseELF): every offset is checked against the file.

const (
	emARM     = 40
	emX86_64  = 62
	emAARCH64 = 183
)

type elfInfo struct {
	machine uint16
	bits    uint8 // 32 or 64
	segs    []segment
}

func parseELF(b []byte) (info elfInfo, ok bool) {
	if len(b) < 52 || string(b[:4]) != "\x7fELF" || b[5] != 1 {
		return info, false
	}
	le := binary.LittleEndian
	info.machine = le.Uint16(b[18:])
	var shoff, shentsize, shnum uint64
	switch b[4] {
	case 1:
		info.bits = 32
		shoff, shentsize, shnum = uint64(le.Uint32(b[32:])), uint64(le.Uint16(b[46:])), uint64(le.Uint16(b[48:]))
	case 2:
		if len(b) < 64 {
			return info, false
		}
		info.bits = 64
		shoff, shentsize, shnum = le.Uint64(b[40:]), uint64(le.Uint16(b[58:])), uint64(le.Uint16(b[60:]))
	default:
		return info, false
	}
	size := uint64(len(b))
	want := uint64(40)
	if info.bits == 64 {
		want = 64
	}
	if shnum == 0 || shentsize < want || shoff > size || shnum > (size-shoff)/shentsize {
		return info, false
	}
	var segs, bss []segment
	for k := uint64(0); k < shnum; k++ {
		h := b[shoff+k*shentsize:]
		var typ uint32
		var flags, addr, off, sz, entsize uint64
		typ = le.Uint32(h[4:])
		if info.bits == 64 {
			flags, addr, off, sz, entsize = le.Uint64(h[8:]), le.Uint64(h[16:]), le.Uint64(h[24:]), le.Uint64(h[32:]), le.Uint64(h[56:])
		} else {
			flags, addr, off, sz, entsize = uint64(le.Uint32(h[8:])), uint64(le.Uint32(h[12:])), uint64(le.Uint32(h[16:])), uint64(le.Uint32(h[20:])), uint64(le.Uint32(h[36:]))
		}
		const shfAlloc, shfExec, shtNobits, shtRela = 2, 4, 8, 4
		if flags&shfAlloc == 0 || sz == 0 || addr+sz < addr {
			continue
		}
		if typ == shtNobits {
			bss = append(bss, segment{vaddr: addr, size: sz, kind: segBss})
			continue
		}
		if off > size || sz > size-off {
			continue
		}
		kind := uint8(segData)
		switch {
		case flags&shfExec != 0:
			kind = segCode
		case typ == shtRela && entsize == 24 && info.bits == 64:
			kind = segRela
		}
		segs = append(segs, segment{off: off, size: sz, vaddr: addr, kind: kind})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].off < segs[j].off })
	// Drop overlaps, merge neighbours of one kind that keep the same
	// offset-to-address relation.
	var out []segment
	for _, s := range segs {
		if n := len(out); n > 0 {
			p := &out[n-1]
			if s.off < p.off+p.size {
				continue
			}
			if s.kind == p.kind && s.vaddr-s.off == p.vaddr-p.off && s.off-(p.off+p.size) < 64 {
				p.size = s.off + s.size - p.off
				continue
			}
		}
		out = append(out, s)
	}
	// Address ranges without bytes, merged where they touch.
	sort.Slice(bss, func(i, j int) bool { return bss[i].vaddr < bss[j].vaddr })
	for _, s := range bss {
		if n := len(out); n > 0 && out[n-1].kind == segBss && s.vaddr <= out[n-1].vaddr+out[n-1].size {
			out[n-1].size = max(out[n-1].size, s.vaddr+s.size-out[n-1].vaddr)
			continue
		}
		out = append(out, s)
	}
	if len(out) == 0 || len(out) > MaxRefSegments {
		return info, false
	}
	info.segs = out
	return info, true
}
