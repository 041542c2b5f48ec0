package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// Defaults used when Options (or one of its fields) is zero.
const (
	DefaultBlockSize = 512 << 10
	DefaultCtrlSize  = 64 << 10
	DefaultModelBits = 19
)

// Options tunes Create. The zero value (or nil) selects the defaults.
type Options struct {
	// BlockSize is the most output bytes per block (1..MaxBlockSize;
	// default DefaultBlockSize). Apply holds one block in memory.
	BlockSize int
	// CtrlSize is the most control bytes per block (1..MaxCtrlSize;
	// default DefaultCtrlSize); blocks are cut early to respect it.
	CtrlSize int
	// ModelBits sets the diff model's table size (MinModelBits..
	// MaxModelBits; default DefaultModelBits): more compresses better,
	// and Apply needs about 5<<ModelBits bytes for it.
	ModelBits int

	noRefs bool // tests: no reference prediction
}

func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	if r.BlockSize == 0 {
		r.BlockSize = DefaultBlockSize
	}
	if r.CtrlSize == 0 {
		r.CtrlSize = DefaultCtrlSize
	}
	if r.ModelBits == 0 {
		r.ModelBits = DefaultModelBits
	}
	switch {
	case r.BlockSize < 1 || r.BlockSize > MaxBlockSize:
		return r, fmt.Errorf("%w: block size %d: want 1..%d", ErrOptions, r.BlockSize, MaxBlockSize)
	case r.CtrlSize < 3*binary.MaxVarintLen64 || r.CtrlSize > MaxCtrlSize:
		return r, fmt.Errorf("%w: control size %d: want %d..%d", ErrOptions, r.CtrlSize, 3*binary.MaxVarintLen64, MaxCtrlSize)
	case r.ModelBits < MinModelBits || r.ModelBits > MaxModelBits:
		return r, fmt.Errorf("%w: model bits %d: want %d..%d", ErrOptions, r.ModelBits, MinModelBits, MaxModelBits)
	}
	return r, nil
}

// Create writes to w a patch that turns old into new, and returns its
// header. The same inputs and options always give the same bytes.
//
// Memory: besides old and new, the suffix array of old (4 bytes per byte)
// and the models (Header.MaxApplyMemory's share) while matching, plus the
// patch itself, which is written to w in one piece at the end (its length
// is in the header). CPUs: a new image of 1 MiB or more is matched in
// two halves on two goroutines, and the diff coding runs on a second
// goroutine beside the cutting into blocks; neither changes the output.
// ctx is checked periodically; a cancelled Create returns ctx.Err() and
// writes nothing. Errors wrap ErrOptions (invalid Options) or ErrTooLarge,
// or are ctx's or w's.
func Create(ctx context.Context, old, new []byte, w io.Writer, opts *Options) (*Header, error) {
	return writePatch(ctx, old, new, w, opts, func(emit emitFunc) error { return diff(ctx, old, new, emit) }, true)
}

// writePatch writes the patch whose operations ops emits.
// With rematch, a second matching runs on views of the images in which
// references read as their targets (see rematch).
func writePatch(ctx context.Context, old, new []byte, w io.Writer, opts *Options, ops func(emitFunc) error, rematch bool) (*Header, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if int64(len(old)) > MaxImageSize || int64(len(new)) > MaxImageSize {
		return nil, fmt.Errorf("%w: old %d, new %d bytes (max %d)", ErrTooLarge, len(old), len(new), int64(MaxImageSize))
	}
	h := &Header{
		Version:   Version,
		Algorithm: AlgBlocks,
		BlockSize: uint32(o.BlockSize),
		CtrlSize:  uint32(o.CtrlSize),
		ModelBits: uint8(o.ModelBits),
		OldSize:   int64(len(old)),
		NewSize:   int64(len(new)),
		OldSHA256: sha256.Sum256(old),
		NewSHA256: sha256.Sum256(new),
	}
	// Phase 1: the operations (suffix array and all) give the uncompressed
	// block stream. Phase 2 compresses it, once the suffix array is garbage:
	// the two never hold memory at the same time.
	//
	// The diff coding of each block runs on a second goroutine while the
	// matching goes on (blocks pass in order through a short channel, so
	// the output does not depend on scheduling).
	var list []op
	if err := ops(func(oldPos, addLen, copyLen int) error {
		list = append(list, op{oldPos, addLen, copyLen})
		return nil
	}); err != nil {
		return nil, err
	}
	// The references to predict, from this first alignment.
	var refs *refModel
	if !o.noRefs {
		refs = chooseRefs(old, new, list)
		if refs != nil && rematch {
			if list, refs, err = rematchRefs(ctx, old, new, list, refs); err != nil {
				return nil, err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	blocks := make(chan pendingBlock, 2)
	var raw bytes.Buffer
	raw.Write(appendRefs(nil, refs, Version))
	encoded := make(chan error, 1)
	go func() { encoded <- encodeBlocks(ectx, blocks, &raw, old, new, o.ModelBits, refs) }()
	bw := &blockWriter{ctx: ectx, blocks: blocks, old: old, new: new, blockSize: o.BlockSize, ctrlSize: o.CtrlSize}
	for _, x := range list {
		if err = bw.op(x.oldPos, x.add, x.copy); err != nil {
			break
		}
	}
	if err == nil {
		err = bw.finish()
	}
	if err != nil {
		cancel()
	}
	close(blocks)
	if eerr := <-encoded; err == nil {
		err = eerr
	}
	if err != nil {
		return nil, err
	}
	h.BodySize = int64(raw.Len())
	hb, err := h.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(hb); err != nil {
		return nil, fmt.Errorf("delta: writing patch: %w", err)
	}
	if _, err := raw.WriteTo(w); err != nil {
		return nil, fmt.Errorf("delta: writing patch: %w", err)
	}
	return h, nil
}

// blockWriter cuts the operation sequence into blocks that respect the
// block and control size limits and hands them to encodeBlocks.
type blockWriter struct {
	ctx                 context.Context
	blocks              chan<- pendingBlock // closed blocks, to encodeBlocks
	old, new            []byte
	blockSize, ctrlSize int

	ctrl         []byte
	runs, copies []addRun // add runs and copy spans of the block, in order
	out          int      // output bytes in the current block
	newPos       int      // next byte of new to produce
	oldCursor    int64    // the decoder's position in old
}

// op receives one operation of the diff: add addLen bytes of old starting
// at oldPos (plus the diff), then copyLen bytes of new as extra. Operations
// arrive in new-file order; oldPos is absolute.
func (b *blockWriter) op(oldPos, addLen, copyLen int) error {
	if oldPos < 0 || addLen < 0 || copyLen < 0 || oldPos+addLen > len(b.old) || b.newPos+addLen+copyLen > len(b.new) {
		return fmt.Errorf("delta: internal error: operation (old %d, add %d, copy %d) at new %d out of range", oldPos, addLen, copyLen, b.newPos)
	}
	for addLen > 0 || copyLen > 0 {
		room := b.blockSize - b.out
		if room == 0 || len(b.ctrl)+3*binary.MaxVarintLen64 > b.ctrlSize {
			if err := b.flush(); err != nil {
				return err
			}
			continue
		}
		a := min(addLen, room)
		c := min(copyLen, room-a)
		var seek int64
		if a > 0 {
			seek = int64(oldPos) - b.oldCursor
			b.oldCursor = int64(oldPos + a)
		}
		b.ctrl = binary.AppendVarint(b.ctrl, seek)
		b.ctrl = binary.AppendUvarint(b.ctrl, uint64(a))
		b.ctrl = binary.AppendUvarint(b.ctrl, uint64(c))
		if a > 0 {
			b.runs = append(b.runs, addRun{oldPos: oldPos, newPos: b.newPos, n: a})
		}
		if c > 0 {
			b.copies = append(b.copies, addRun{oldPos: int(b.oldCursor), newPos: b.newPos + a, n: c})
		}
		b.newPos += a + c
		b.out += a + c
		oldPos += a
		addLen -= a
		copyLen -= c
	}
	return nil
}

// flush closes the current block: its control section, add runs and copy
// spans are kept for encode.
func (b *blockWriter) flush() error {
	if b.out == 0 {
		return nil
	}
	blk := pendingBlock{
		out:    b.out,
		ctrl:   bytes.Clone(b.ctrl),
		runs:   append([]addRun(nil), b.runs...),
		copies: append([]addRun(nil), b.copies...),
	}
	b.ctrl, b.runs, b.copies = b.ctrl[:0], b.runs[:0], b.copies[:0]
	b.out = 0
	select {
	case b.blocks <- blk:
		return nil
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
}

func (b *blockWriter) finish() error {
	if b.newPos != len(b.new) {
		return fmt.Errorf("delta: internal error: diff covered %d of %d bytes", b.newPos, len(b.new))
	}
	return b.flush()
}

// encodeBlocks writes the uncompressed block stream of the blocks received
// from in, in order: each block's header, control section, coded diff
// (through the context-mixing model) and extra bytes, then the end marker
// once in is closed. It stops early with ctx's error.
func encodeBlocks(ctx context.Context, in <-chan pendingBlock, raw *bytes.Buffer, old, new []byte, modelBits int, refs *refModel) error {
	var model *diffModel
	var lit *litModel
	var coded, dif, pred, extra, oc, ctrl []byte
	var cm *ctrlModel
	var statCtrl, statDiff, statExtra int
	var hdr [2 * binary.MaxVarintLen64]byte
	for blk := range in {
		if err := ctx.Err(); err != nil {
			return err
		}
		coded = coded[:0]
		if len(blk.runs) > 0 {
			if model == nil {
				model = newDiffModel(modelBits)
			}
			rc := newEncoder(coded)
			for _, r := range blk.runs {
				o := old[r.oldPos : r.oldPos+r.n]
				if refs.active() {
					pred = append(pred[:0], o...)
					refs.predict(pred, int64(r.oldPos), int64(r.newPos))
					o = pred
				}
				nw := new[r.newPos : r.newPos+r.n]
				dif = dif[:0]
				for j := range o {
					dif = append(dif, nw[j]-o[j])
				}
				model.codeRun(rc, dif, o)
				if debugDump != nil {
					debugDump("diff", dif, o)
					var pl []byte
					pl = binary.LittleEndian.AppendUint64(pl, uint64(r.newPos))
					pl = binary.LittleEndian.AppendUint64(pl, uint64(r.oldPos))
					debugDump("diffpos", pl, nil)
				}
			}
			coded = rc.finish()
		}
		// The control section, coded.
		if cm == nil {
			cm = newCtrlModel()
		}
		rc := newEncoder(ctrl[:0])
		for ops := blk.ctrl; len(ops) > 0; {
			seek, n1 := binary.Varint(ops)
			add, n2 := binary.Uvarint(ops[n1:])
			cp, n3 := binary.Uvarint(ops[n1+n2:])
			ops = ops[n1+n2+n3:]
			cm.op(rc, seek, add, cp)
		}
		ctrl = rc.finish()
		h := binary.AppendUvarint(hdr[:0], uint64(blk.out))
		h = binary.AppendUvarint(h, uint64(len(ctrl)))
		raw.Write(h)
		raw.Write(ctrl)
		statCtrl += len(ctrl)
		raw.Write(binary.AppendUvarint(hdr[:0], uint64(len(coded))))
		raw.Write(coded)
		statDiff += len(coded)
		extra, oc = extra[:0], oc[:0]
		for _, c := range blk.copies {
			extra = append(extra, new[c.newPos:c.newPos+c.n]...)
			oc = appendOld(oc, old, c.oldPos, c.n)
		}
		if debugDump != nil {
			debugDump("extra", extra, oc)
			var pl []byte
			for _, c := range blk.copies {
				pl = binary.LittleEndian.AppendUint64(pl, uint64(c.newPos))
				pl = binary.LittleEndian.AppendUint64(pl, uint64(c.n))
			}
			debugDump("extrapos", pl, nil)
			debugDump("ctrl", blk.ctrl, nil)
		}
		if len(extra) > 0 && incompressible(extra) {
			// Random-looking bytes (already compressed data): stored as
			// they are, which applies at memcpy speed.
			raw.WriteByte(0)
			raw.Write(extra)
		} else if len(extra) > 0 {
			if lit == nil {
				lit = newLitModel(modelBits)
			}
			rc := newEncoder(coded[:0])
			e, o := extra, oc
			for _, c := range blk.copies {
				lit.code(rc, e[:c.n], o[:c.n], int64(c.newPos))
				e, o = e[c.n:], o[c.n:]
			}
			coded = rc.finish()
			raw.Write(binary.AppendUvarint(hdr[:0], uint64(len(coded))))
			raw.Write(coded)
			statExtra += len(coded)
		}
	}
	raw.WriteByte(0) // end marker
	if debugRefs {
		fmt.Fprintf(os.Stderr, "sections: ctrl %d, coded diff %d, coded extra %d (raw stream %d)\n", statCtrl, statDiff, statExtra, raw.Len())
	}
	return nil
}

// debugDump, set by experiments, sees each block's sections before coding.
var debugDump func(kind string, a, b []byte)

// pendingBlock is one block between the two phases of Create.
type pendingBlock struct {
	out          int
	ctrl         []byte
	runs, copies []addRun
}

// addRun is one add operation: n bytes at oldPos in old and newPos in new
// (for a copy span, oldPos is the old cursor where the span starts).
type addRun struct{ oldPos, newPos, n int }

// appendOld appends the n old bytes from pos (zeros past the end of old):
// the context of extra bytes whose old cursor is at pos.
func appendOld(b, old []byte, pos, n int) []byte {
	if pos < len(old) {
		b = append(b, old[pos:min(pos+n, len(old))]...)
		n -= min(n, len(old)-pos)
	}
	for ; n > 0; n-- {
		b = append(b, 0)
	}
	return b
}

// incompressible reports whether b's order-0 entropy is above 7.9 bits a
// byte: then the literal model cannot gain enough to pay for its time.
func incompressible(b []byte) bool {
	if len(b) < 4096 {
		return false
	}
	var h [256]int
	for _, x := range b {
		h[x]++
	}
	e := 0.0
	n := float64(len(b))
	for _, c := range h {
		if c > 0 {
			p := float64(c) / n
			e -= p * math.Log2(p)
		}
	}
	return e > 7.9
}
