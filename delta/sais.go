package delta

// Suffix array construction by induced sorting (SA-IS, Nong, Zhang and
// Chan 2009), written for this package. The text is []byte at the top level
// and []int32 (names of LMS substrings) in the recursion. Memory: the
// 4-byte-per-position result, which also holds the reduced problem, plus a
// 1-bit-per-position type map and the bucket arrays.

type symbol interface{ ~byte | ~int32 }

// suffixArray returns the suffix array of text: the start positions of all
// suffixes, in lexicographic order.
func suffixArray(text []byte) []int32 {
	sa := make([]int32, len(text))
	sais(text, sa, 256, nil)
	return sa
}

// bitset is a fixed-size set of bits (the S/L type of each position).
type bitset []uint64

func newBitset(n int) bitset     { return make(bitset, (n+63)/64) }
func (b bitset) set(i int)       { b[i>>6] |= 1 << (uint(i) & 63) }
func (b bitset) get(i int) bool  { return b[i>>6]&(1<<(uint(i)&63)) != 0 }
func isLMS(s bitset, i int) bool { return i > 0 && s.get(i) && !s.get(i-1) }

// buckets sets bkt[c] to the start (or, with end, the end) of the bucket of
// symbol c in the suffix array. Counting again each time keeps a single
// k-sized array alive, which matters when k is large in the recursion.
func buckets[T symbol](t []T, bkt []int32, end bool) {
	clear(bkt)
	for _, c := range t {
		bkt[int(c)]++
	}
	var sum int32
	for c, n := range bkt {
		sum += n
		if end {
			bkt[c] = sum
		} else {
			bkt[c] = sum - n
		}
	}
}

// sais fills sa (len(sa) == len(t)) with the suffix array of t, whose
// symbols are in [0, k). scratch, when at least k long, holds the bucket
// array instead of a new allocation (the recursion passes the unused middle
// of the parent's sa).
func sais[T symbol](t []T, sa []int32, k int, scratch []int32) {
	n := len(t)
	switch n {
	case 0:
		return
	case 1:
		sa[0] = 0
		return
	}
	// Types: S (set) or L. t[n-1] is L (the virtual sentinel is smaller).
	stype := newBitset(n)
	for i := n - 2; i >= 0; i-- {
		if t[i] < t[i+1] || (t[i] == t[i+1] && stype.get(i+1)) {
			stype.set(i)
		}
	}
	var bkt []int32
	if len(scratch) >= k {
		bkt = scratch[:k]
	} else {
		bkt = make([]int32, k)
	}

	// Step 1: LMS positions at the ends of their buckets, then induce.
	for i := range sa {
		sa[i] = -1
	}
	buckets(t, bkt, true)
	nlms := 0
	for i := n - 1; i >= 1; i-- {
		if isLMS(stype, i) {
			c := int(t[i])
			bkt[c]--
			sa[bkt[c]] = int32(i)
			nlms++
		}
	}
	induce(t, sa, stype, bkt)
	if nlms == 0 {
		return // t is non-increasing: the induced order is final
	}

	// Step 2: the sorted LMS substrings, compacted into sa[:m], are named.
	m := 0
	for i := 0; i < n; i++ {
		if isLMS(stype, int(sa[i])) {
			sa[m] = sa[i]
			m++
		}
	}
	for i := m; i < n; i++ {
		sa[i] = -1
	}
	name := int32(0)
	prev := -1
	for i := 0; i < m; i++ {
		p := int(sa[i])
		if prev < 0 || !equalLMS(t, stype, prev, p) {
			name++
		}
		prev = p
		sa[m+p/2] = name - 1
	}
	// Reduced string, in text order of the LMS positions, compacted into
	// the tail of sa; its suffix array goes to the head (m <= n/2, so the
	// two do not overlap).
	j := n - 1
	for i := n - 1; i >= m; i-- {
		if sa[i] >= 0 {
			sa[j] = sa[i]
			j--
		}
	}
	s1 := sa[n-m:]
	sa1 := sa[:m]
	if int(name) == m {
		for i, c := range s1 {
			sa1[c] = int32(i)
		}
	} else {
		sais(s1, sa1, int(name), sa[m:n-m])
	}
	// Step 3: LMS suffixes in their true order, then induce again.
	j = 0
	for i := 1; i < n; i++ {
		if isLMS(stype, i) {
			s1[j] = int32(i)
			j++
		}
	}
	for i := range sa1 {
		sa1[i] = s1[sa1[i]]
	}
	for i := m; i < n; i++ {
		sa[i] = -1
	}
	buckets(t, bkt, true)
	for i := m - 1; i >= 0; i-- {
		p := sa[i]
		sa[i] = -1
		c := int(t[p])
		bkt[c]--
		sa[bkt[c]] = p
	}
	induce(t, sa, stype, bkt)
}

// induce sorts the L-type suffixes from the placed LMS ones, then the
// S-type suffixes from the L-type ones.
func induce[T symbol](t []T, sa []int32, stype bitset, bkt []int32) {
	n := len(t)
	buckets(t, bkt, false)
	c := int(t[n-1])
	sa[bkt[c]] = int32(n - 1)
	bkt[c]++
	for i := 0; i < n; i++ {
		j := int(sa[i]) - 1
		if j >= 0 && !stype.get(j) {
			c := int(t[j])
			sa[bkt[c]] = int32(j)
			bkt[c]++
		}
	}
	buckets(t, bkt, true)
	for i := n - 1; i >= 0; i-- {
		j := int(sa[i]) - 1
		if j >= 0 && stype.get(j) {
			c := int(t[j])
			bkt[c]--
			sa[bkt[c]] = int32(j)
		}
	}
}

// equalLMS reports whether the LMS substrings starting at a and b are equal.
func equalLMS[T symbol](t []T, stype bitset, a, b int) bool {
	n := len(t)
	for d := 0; ; d++ {
		if a+d == n || b+d == n {
			return false // the sentinel is unique
		}
		if t[a+d] != t[b+d] || stype.get(a+d) != stype.get(b+d) {
			return false
		}
		if d > 0 {
			la, lb := isLMS(stype, a+d), isLMS(stype, b+d)
			if la || lb {
				return la && lb
			}
		}
	}
}
