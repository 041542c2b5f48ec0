package delta

import (
	"context"
	"math/bits"
)

// matcher finds, for any position of new, the longest exact match in old
// through old's suffix array.
type matcher struct {
	old []byte
	sa  []int32
	// first indexes sa by the first two bytes of each suffix (old's
	// one-byte last suffix reads as if followed by a zero byte, which
	// keeps it in its place: just before the longer suffixes it is a
	// prefix of): the suffixes whose key is k are sa[first[k]:first[k+1]].
	// A search for a pattern of two bytes or more starts at that range
	// rather than at the whole array: the same answer in about half the
	// probes (12.6 instead of 23 on esbuild-x64-jump), each a cache miss.
	// Three bytes (a 64 MiB table) saved half the probes that two leave,
	// but added a cache miss of its own: create 3% faster for 126 MB more.
	first []int32
}

// newMatcher indexes old's suffix array sa by the first two bytes of each
// suffix.
func newMatcher(old []byte, sa []int32) *matcher {
	m := &matcher{old: old, sa: sa}
	n := len(old)
	if n == 0 {
		return m
	}
	m.first = make([]int32, 1<<16+1)
	count := m.first[1:] // count[k] suffixes have key k, turned into starts below
	for i := 0; i+1 < n; i++ {
		count[int(old[i])<<8|int(old[i+1])]++
	}
	count[int(old[n-1])<<8]++
	// first[k+1] = first[k] + count[k]; count aliases first[1:].
	for k := 1; k < len(m.first); k++ {
		m.first[k] += m.first[k-1]
	}
	return m
}

// longest returns the position in old and the length of the longest prefix
// of p that occurs in old (0, 0 when none). Binary search over the suffix
// array, skipping the prefix already known to be shared with both bounds.
func (m *matcher) longest(p []byte) (pos, n int) {
	lo, hi := -1, len(m.sa) // sa[lo] < p <= sa[hi]
	llcp, hlcp := 0, 0
	if len(p) >= 2 && m.first != nil {
		// Every suffix before the range of p's first two bytes is below
		// p, every one after it above: start the search at its bounds,
		// with their exact common prefixes with p (0 or 1 byte).
		k := int(p[0])<<8 | int(p[1])
		lo, hi = int(m.first[k])-1, int(m.first[k+1])
		if lo >= 0 {
			llcp = commonPrefix(m.old[m.sa[lo]:], p)
		}
		if hi < len(m.sa) {
			hlcp = commonPrefix(m.old[m.sa[hi]:], p)
		}
	}
	for hi-lo > 1 {
		mid := int(uint(lo+hi) >> 1)
		s := m.old[m.sa[mid]:]
		k := min(llcp, hlcp)
		lim := min(len(s), len(p))
		for k < lim && s[k] == p[k] {
			k++
		}
		if k == len(p) || (k < len(s) && s[k] > p[k]) {
			hi, hlcp = mid, k
		} else {
			lo, llcp = mid, k
		}
	}
	if lo >= 0 && llcp >= hlcp {
		return int(m.sa[lo]), llcp
	}
	if hi < len(m.sa) {
		return int(m.sa[hi]), hlcp
	}
	return 0, 0
}

// commonPrefix is the length of the longest common prefix of a and b.
func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// emitFunc receives one operation: add addLen bytes of old from oldPos
// (with the diff against new), then copyLen literal bytes of new.
type emitFunc func(oldPos, addLen, copyLen int) error

// diff walks new from start to end and emits operations that cover it
// exactly once, in order. The strategy is bsdiff's (Percival, "Naive
// differences of executable code"): find exact matches through the suffix
// array, keep a match only when it beats the current alignment by a margin,
// then extend each alignment forwards and backwards approximately while at
// least half of the bytes agree, so that code whose pointers moved becomes
// long "add" runs whose diff bytes are mostly zero.
//
// A new image of splitMin bytes or more is matched in two halves at once,
// on two goroutines (the suffix array is shared, read-only): the halves'
// operations are emitted in order, so the output does not depend on the
// scheduling or on the number of CPUs, only on where the halves meet.
func diff(ctx context.Context, old, new []byte, emit emitFunc) error {
	if len(new) == 0 {
		return nil
	}
	if len(old) == 0 {
		return emit(0, 0, len(new))
	}
	// The suffix array takes seconds for large images and cannot stop
	// half-way: a cancelled ctx returns at once and leaves it to finish
	// (and be dropped) in the background.
	saDone := make(chan []int32, 1)
	go func() { saDone <- suffixArray(old) }()
	var m *matcher
	select {
	case sa := <-saDone:
		m = newMatcher(old, sa)
	case <-ctx.Done():
		return ctx.Err()
	}
	if len(new) < splitMin {
		return scanRange(ctx, m, new, 0, len(new), emit)
	}
	// The second half's operations wait in a slice while the first
	// half's go out.
	half := len(new) / 2
	type result struct {
		ops []op
		err error
	}
	second := make(chan result, 1)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		var ops []op
		err := scanRange(sctx, m, new, half, len(new), func(a, b, c int) error {
			ops = append(ops, op{a, b, c})
			return nil
		})
		second <- result{ops, err}
	}()
	if err := scanRange(ctx, m, new, 0, half, emit); err != nil {
		cancel()
		<-second
		return err
	}
	r := <-second
	if r.err != nil {
		return r.err
	}
	for _, o := range r.ops {
		if err := emit(o.oldPos, o.add, o.copy); err != nil {
			return err
		}
	}
	return nil
}

// splitMin is the size of new from which diff matches its two halves
// concurrently. Where they meet, the first half's alignment is not
// carried over, which costs a few bytes of patch (esbuild-x64-jump +35,
// esbuild-arm64-jump -1) for the matching's wall time nearly halved on
// two CPUs (their create 11.5 s -> 9.3 s and 11.9 s -> 9.6 s; CPU time
// unchanged). Two halves, not one per CPU: the output must not depend on
// the machine.
const splitMin = 1 << 20

// scanRange emits the operations that cover new[from:to], matching
// new[scan:to] against old through m at each position scan.
func scanRange(ctx context.Context, m *matcher, new []byte, from, to int, emit emitFunc) error {
	old := m.old
	n, nn := len(old), to
	scan, length, pos := from, 0, 0
	lastScan, lastPos, lastOffset := from, min(from, n), 0
	iter := 0
	for scan < nn {
		oldScore := 0
		scan += length
		scsc := scan
		for ; scan < nn; scan++ {
			if iter++; iter&0xffff == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			pos, length = m.longest(new[scan:nn])
			for ; scsc < scan+length; scsc++ {
				if o := scsc + lastOffset; o >= 0 && o < n && old[o] == new[scsc] {
					oldScore++
				}
			}
			if (length == oldScore && length != 0) || length > oldScore+jumpMargin(pos-(scan+lastOffset)) {
				break
			}
			if o := scan + lastOffset; o >= 0 && o < n && old[o] == new[scan] {
				oldScore--
			}
		}
		if length == oldScore && scan != nn {
			continue
		}
		// Extend the previous alignment forwards from lastScan.
		lenf := 0
		{
			s, best := 0, 0
			for i := 0; lastScan+i < scan && lastPos+i < n; {
				if old[lastPos+i] == new[lastScan+i] {
					s++
				}
				i++
				if 2*s-i > 2*best-lenf {
					best, lenf = s, i
				}
			}
		}
		// Extend the new match backwards from scan.
		lenb := 0
		if scan < nn {
			s, best := 0, 0
			for i := 1; scan >= lastScan+i && pos >= i; i++ {
				if old[pos-i] == new[scan-i] {
					s++
				}
				if 2*s-i > 2*best-lenb {
					best, lenb = s, i
				}
			}
		}
		// Split an overlap where it scores best.
		if lastScan+lenf > scan-lenb {
			overlap := lastScan + lenf - (scan - lenb)
			s, best, lens := 0, 0, 0
			for i := 0; i < overlap; i++ {
				if new[lastScan+lenf-overlap+i] == old[lastPos+lenf-overlap+i] {
					s++
				}
				if new[scan-lenb+i] == old[pos-lenb+i] {
					s--
				}
				if s > best {
					best, lens = s, i+1
				}
			}
			lenf += lens - overlap
			lenb -= lens
		}
		end := scan - lenb
		if scan == nn {
			end = nn
		}
		if err := emit(lastPos, lenf, end-(lastScan+lenf)); err != nil {
			return err
		}
		lastScan, lastPos, lastOffset = scan-lenb, pos-lenb, pos-scan
	}
	return nil
}

// jumpMargin is how many more bytes an exact match must cover than the
// current alignment before the scan switches to it, for a match dist bytes
// away from the current alignment: 8 (bsdiff's) within 256 bytes, 2 more
// per doubling of the distance beyond, because a far jump costs more to
// code and often is a coincidental repeat of common code elsewhere, left
// again soon after (esbuild-x64-jump: 131k operations become 52k, the
// patch 6% smaller).
func jumpMargin(dist int) int {
	if dist < 0 {
		dist = -dist
	}
	if b := bits.Len(uint(dist)); b > 8 {
		return 8 + 2*(b-8)
	}
	return 8
}
