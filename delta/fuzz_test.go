package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"runtime"
	"testing"
)

// fuzzOld is the old image every FuzzApply input is applied to; the seeds
// are valid patches from it, so mutations get past the wrong-base check.
func fuzzOld() []byte { return codeLike(20, 3000) }

// hashCount hashes and counts the output without keeping it.
type hashCount struct {
	n int64
	h interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
}

func (w *hashCount) Write(p []byte) (int, error) { w.n += int64(len(p)); return w.h.Write(p) }

// FuzzApply applies arbitrary bytes as a patch: Apply must never panic,
// must succeed only with the declared image, and must not allocate more
// than the header's bound (plus a fixed allowance for the decoder and
// bookkeeping).
func FuzzApply(f *testing.F) {
	old := fuzzOld()
	small := &Options{BlockSize: 512, CtrlSize: 64, Window: 1 << 10, ModelBits: MinModelBits}
	for _, p := range []struct {
		new  []byte
		opts *Options
	}{
		{shiftPointers(old, 16, 1000, []byte("fuzz")), nil},
		{old, nil},
		{gen(21, 2000), small},
		{shiftPointers(old, 0x300, 10, gen(22, 300)), small},
		{nil, nil},
	} {
		f.Add(createPatch(f, old, p.new, p.opts))
	}
	// Hand-made patches whose zstd frames carry no checksum, so that
	// mutations reach the block parser and the diff decoder.
	new := append(bytes.Clone(old[:1000]), "ABCDEF"...)
	body := block(1006, [][3]int64{{0, 1000, 6}}, zeroDiff(old[:1000]), []byte("ABCDEF"))
	f.Add(rawNoCRC(old, new, append(body, 0)))

	f.Fuzz(func(t *testing.T, patch []byte) {
		w := &hashCount{h: sha256.New()}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		h, err := Apply(context.Background(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch), w)
		runtime.ReadMemStats(&after)
		if h != nil {
			const allowance = 1 << 20
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(h.MaxApplyMemory())+allowance {
				t.Fatalf("Apply allocated %d bytes, header bound %d + %d", alloc, h.MaxApplyMemory(), allowance)
			}
		}
		if err == nil {
			if w.n != h.NewSize || !bytes.Equal(w.h.Sum(nil), h.NewSHA256[:]) {
				t.Fatalf("Apply succeeded with %d bytes not matching the header", w.n)
			}
		}
	})
}

// rawNoCRC is raw without the zstd frame checksum.
func rawNoCRC(old, new, body []byte) []byte {
	var z bytes.Buffer
	enc, err := zstdNoCRC(&z)
	if err != nil {
		panic(err)
	}
	enc.Write(body)
	enc.Close()
	h := &Header{Version: Version, Algorithm: AlgBlocksZstd, Window: 1 << 10, BlockSize: 1 << 11, CtrlSize: 64,
		ModelBits: MinModelBits, OldSize: int64(len(old)), NewSize: int64(len(new)),
		OldSHA256: sha256.Sum256(old), NewSHA256: sha256.Sum256(new), BodySize: int64(z.Len())}
	hb, err := h.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return append(hb, z.Bytes()...)
}
