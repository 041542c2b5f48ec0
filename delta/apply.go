package delta

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/upkit/upkit/spec"

	"github.com/klauspost/compress/zstd"
)

// chunkSize is the size of Apply's fixed buffers (hashing old, reading the
// decompressed body).
const chunkSize = 32 << 10

// Apply reads a patch from patch and writes the new image to out.
//
// Order of work: the header is read and bounds-checked; the old image's
// size and sha256 (read through old by random access) are checked against
// the header, and ErrWrongBase is returned before anything is written to
// out; then the body is decoded block by block and each block written to
// out in order; finally the output's size and sha256 are checked (ErrNewDigest)
// and the patch must end exactly where its header says (ErrTrailingData).
//
// Each block's operations are checked against the block and the old image
// before its sections are decoded. Where a block has add and copy runs,
// Apply decodes the add runs (old bytes plus the diff) on a second
// goroutine while it decodes the copy runs, so old's ReadAt may be called
// from two goroutines at once, as io.ReaderAt allows; the output and the
// errors are those of decoding in turn.
//
// On any error out may have received part of the image, which must be
// discarded (ApplyFile does that). Allocation is bounded by
// Header.MaxApplyMemory plus a small constant, whatever the image size, and
// the header's fields are themselves capped by MaxWindow, MaxBlockSize,
// MaxCtrlSize and MaxModelBits; patch is read sequentially, once. A
// cancelled ctx stops Apply between blocks with ctx.Err(). The returned
// header is nil only when it could not be read. Errors wrap ErrMagic,
// ErrVersion, ErrCorrupt, ErrTruncated, ErrBounds or ErrTrailingData (bad
// patch), ErrWrongBase (wrong old image) or ErrNewDigest (output differs
// from the header's digest); I/O errors from old, patch and out are
// wrapped as they are.
func Apply(ctx context.Context, old io.ReaderAt, oldSize int64, patch io.Reader, out io.Writer) (*Header, error) {
	h, err := ReadHeader(patch)
	if err != nil {
		return nil, err
	}
	if oldSize != h.OldSize {
		return h, fmt.Errorf("%w: old image is %d bytes, patch is for %d", ErrWrongBase, oldSize, h.OldSize)
	}
	buf := make([]byte, chunkSize)
	sum := sha256.New()
	// (the old image may be large: ctx is checked between chunks)
	for off := int64(0); off < oldSize; {
		if err := ctx.Err(); err != nil {
			return h, err
		}
		n, err := old.ReadAt(buf[:min(int64(len(buf)), oldSize-off)], off)
		sum.Write(buf[:n])
		off += int64(n)
		if n == 0 && err == nil {
			err = io.ErrNoProgress
		}
		if err != nil && !(err == io.EOF && off == oldSize) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return h, fmt.Errorf("delta: reading old image: %w", err)
		}
	}
	if !bytes.Equal(sum.Sum(nil), h.OldSHA256[:]) {
		return h, fmt.Errorf("%w: old image %s, patch is for %s", ErrWrongBase, spec.HashDigest(sum), h.OldDigest())
	}
	if err := ctx.Err(); err != nil {
		return h, err
	}

	src := &eofReader{r: patch}
	body := &io.LimitedReader{R: src, N: h.BodySize}
	a := &applier{h: h, old: old, src: src, body: body, buf: buf, out: out}
	if h.Algorithm == AlgBlocksZstd {
		dec, err := zstd.NewReader(body,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(uint64(h.Window)),
			zstd.WithDecoderMaxMemory(uint64(h.Window)))
		if err != nil {
			return h, fmt.Errorf("delta: zstd decoder: %w", err)
		}
		defer dec.Close()
		a.br = bufio.NewReaderSize(dec, chunkSize)
	} else {
		a.br = bufio.NewReaderSize(body, chunkSize)
	}
	sum.Reset()
	a.sum = sum
	if h.Version >= 3 {
		refs, err := readRefs(a.br, h.OldSize, h.NewSize, h.Version)
		if err != nil {
			if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrBounds) {
				return h, err
			}
			return h, a.bodyErr("the refs section", err)
		}
		a.refs = refs
	}
	if err := a.run(ctx); err != nil {
		return h, err
	}
	// The body must end exactly at BodySize, and the patch there.
	if body.N != 0 {
		if src.eof {
			return h, fmt.Errorf("%w: patch ends %d bytes before its declared end", ErrTruncated, body.N)
		}
		return h, fmt.Errorf("%w: %d bytes of the body unused", ErrCorrupt, body.N)
	}
	var one [1]byte
	if n, err := io.ReadFull(patch, one[:]); n > 0 {
		return h, fmt.Errorf("%w: patch is longer than its declared %d bytes", ErrTrailingData, h.PatchSize())
	} else if err != nil && !errors.Is(err, io.EOF) {
		return h, fmt.Errorf("delta: reading patch: %w", err)
	}
	if a.written != h.NewSize {
		return h, fmt.Errorf("%w: output is %d bytes, header declares %d", ErrCorrupt, a.written, h.NewSize)
	}
	if !bytes.Equal(a.sum.Sum(nil), h.NewSHA256[:]) {
		return h, fmt.Errorf("%w: output %s, header declares %s", ErrNewDigest, spec.HashDigest(a.sum), h.NewDigest())
	}
	return h, nil
}

type applier struct {
	h       *Header
	old     io.ReaderAt
	br      *bufio.Reader
	src     *eofReader
	body    *io.LimitedReader
	buf     []byte // chunkSize scratch
	ctrl    []byte // grows to at most h.CtrlSize
	blk     []byte // grows to at most h.BlockSize
	out     io.Writer
	sum     hashWriter
	oldPos  int64
	written int64
	model   *diffModel // allocated at the first add run
	rc      rangeCoder
	refs    *refModel    // version 3: the references to predict (nil: none)
	lit     litCoder     // versions 3 and 4: extra bytes' model, allocated at the first copy
	dbuf    []byte       // a coded diff section read ahead (at most parDiffMax bytes)
	drd     bytes.Reader // reads dbuf
	prc     rangeCoder   // decodes dbuf on the second goroutine
	done    chan error   // the second goroutine's result (allocated with dbuf)
	cm      *ctrlModel   // version 3: control model
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

// bodyErr maps an error from the decompressed stream to a sentinel.
func (a *applier) bodyErr(what string, err error) error {
	switch {
	case a.src.eof || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: body ends inside %s (output byte %d)", ErrTruncated, what, a.written)
	case a.src.err != nil:
		return fmt.Errorf("delta: reading patch: %w", a.src.err)
	case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return fmt.Errorf("%w: body window above the header's %d bytes: %v", ErrBounds, a.h.Window, err)
	case a.body.N == 0:
		return fmt.Errorf("%w: body ends inside %s (output byte %d): %v", ErrTruncated, what, a.written, err)
	}
	return fmt.Errorf("%w: reading %s (output byte %d): %v", ErrCorrupt, what, a.written, err)
}

func (a *applier) run(ctx context.Context) error {
	for blockNo := 0; ; blockNo++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		outLen, err := binary.ReadUvarint(a.br)
		if err != nil {
			return a.bodyErr("a block header", err)
		}
		if outLen == 0 {
			break
		}
		if outLen > uint64(a.h.BlockSize) {
			return fmt.Errorf("%w: block %d has %d output bytes, header allows %d", ErrBounds, blockNo, outLen, a.h.BlockSize)
		}
		if a.written+int64(outLen) > a.h.NewSize {
			return fmt.Errorf("%w: block %d makes the output longer than the declared %d bytes", ErrBounds, blockNo, a.h.NewSize)
		}
		ctrlLen, err := binary.ReadUvarint(a.br)
		if err != nil {
			return a.bodyErr("a block header", err)
		}
		if a.h.Version >= 3 {
			if err := a.decodeCtrl(blockNo, ctrlLen, outLen); err != nil {
				return err
			}
		} else {
			if ctrlLen == 0 || ctrlLen > uint64(a.h.CtrlSize) {
				return fmt.Errorf("%w: block %d has %d control bytes, header allows 1..%d", ErrBounds, blockNo, ctrlLen, a.h.CtrlSize)
			}
			a.ctrl = grow(a.ctrl, int(ctrlLen))
			if _, err := io.ReadFull(a.br, a.ctrl); err != nil {
				return a.bodyErr("a control section", err)
			}
		}
		a.blk = grow(a.blk, int(outLen))
		if err := a.block(blockNo); err != nil {
			return err
		}
		if _, err := a.out.Write(a.blk); err != nil {
			return fmt.Errorf("delta: writing output: %w", err)
		}
		a.sum.Write(a.blk)
		a.written += int64(outLen)
	}
	// After the end marker the (decompressed) stream must end too.
	if _, err := a.br.ReadByte(); err == nil {
		return fmt.Errorf("%w: data after the end marker", ErrCorrupt)
	} else if !errors.Is(err, io.EOF) {
		return a.bodyErr("the end of the body", err)
	}
	return nil
}

// decodeCtrl decodes a coded control section of n bytes (version 3) into
// a.ctrl, as the varints of version 2: operations until they cover the
// block's outLen bytes, at most CtrlSize bytes of them.
func (a *applier) decodeCtrl(blockNo int, n, outLen uint64) error {
	if n < a.minCoded() || n > MaxImageSize*2 {
		return fmt.Errorf("%w: block %d: coded control section of %d bytes", ErrCorrupt, blockNo, n)
	}
	if a.cm == nil {
		a.cm = newCtrlModel()
	}
	a.rc.initDecoder(a.br, int64(n), a.pad())
	a.ctrl = a.ctrl[:0]
	for covered := uint64(0); covered < outLen; {
		seek, add, cp := a.cm.op(&a.rc, 0, 0, 0)
		if a.rc.err != nil {
			if errors.Is(a.rc.err, errCtrlValue) {
				return fmt.Errorf("%w: block %d: coded control value out of range", ErrCorrupt, blockNo)
			}
			return a.codedErr(blockNo, &a.rc)
		}
		if add > outLen-covered || cp > outLen-covered-add || add+cp == 0 {
			return fmt.Errorf("%w: block %d: operation (add %d, copy %d) does not fit the block's %d remaining bytes", ErrBounds, blockNo, add, cp, outLen-covered)
		}
		covered += add + cp
		if len(a.ctrl)+3*binary.MaxVarintLen64 > int(a.h.CtrlSize) {
			return fmt.Errorf("%w: block %d: control section above the header's %d bytes", ErrBounds, blockNo, a.h.CtrlSize)
		}
		a.ctrl = binary.AppendVarint(a.ctrl, seek)
		a.ctrl = binary.AppendUvarint(a.ctrl, add)
		a.ctrl = binary.AppendUvarint(a.ctrl, cp)
	}
	if a.rc.limit > 0 {
		return fmt.Errorf("%w: block %d: %d bytes of the coded control section unused", ErrCorrupt, blockNo, a.rc.limit)
	}
	return nil
}

// pad is how many implied zero bytes follow a coded section.
func (a *applier) pad() int64 {
	if a.h.Version >= 4 {
		return codedPad
	}
	return 0
}

// minCoded is the shortest coded section (version 4 flushes with 1 to 4
// bytes, version 3 with 4).
func (a *applier) minCoded() uint64 {
	if a.h.Version >= 4 {
		return 1
	}
	return 4
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// parDiffMax is the largest coded diff section that Apply reads ahead
// into memory, so that a block's add runs (the diff coder) and copy runs
// (the extra-byte coder) decode at once on two CPUs: they write disjoint
// bytes of the block, and each coder has its own section and models. A
// larger section is decoded in turn, as on one CPU.
const parDiffMax = 256 << 10

// twoCPUs reports whether Apply may run a second goroutine (a variable:
// the tests count the blocks decoded at once, or force one at a time).
var twoCPUs = func() bool { return runtime.GOMAXPROCS(0) >= 2 }

// opAt parses the operation at the start of ops, already checked by
// checkOps: seek, add, copy and its length.
func opAt(ops []byte) (seek int64, add, cp uint64, n int) {
	seek, n1 := binary.Varint(ops)
	add, n2 := binary.Uvarint(ops[n1:])
	cp, n3 := binary.Uvarint(ops[n1+n2:])
	return seek, add, cp, n1 + n2 + n3
}

// checkOps checks the control section in a.ctrl against the block and the
// old image, before anything is decoded, and reports whether it has add
// and copy runs and the old offset where it leaves the cursor.
func (a *applier) checkOps(blockNo int) (hasAdd, hasCopy bool, end int64, err error) {
	ops := a.ctrl
	o := uint64(0)
	pos := a.oldPos
	for len(ops) > 0 {
		seek, n1 := binary.Varint(ops)
		if n1 <= 0 {
			return false, false, 0, fmt.Errorf("%w: block %d: bad control varint", ErrCorrupt, blockNo)
		}
		add, n2 := binary.Uvarint(ops[n1:])
		if n2 <= 0 {
			return false, false, 0, fmt.Errorf("%w: block %d: bad control varint", ErrCorrupt, blockNo)
		}
		cp, n3 := binary.Uvarint(ops[n1+n2:])
		if n3 <= 0 {
			return false, false, 0, fmt.Errorf("%w: block %d: bad control varint", ErrCorrupt, blockNo)
		}
		ops = ops[n1+n2+n3:]
		rest := uint64(len(a.blk)) - o
		if add > rest || cp > rest-add || add+cp == 0 {
			return false, false, 0, fmt.Errorf("%w: block %d: operation (add %d, copy %d) does not fit the block's %d remaining bytes", ErrBounds, blockNo, add, cp, rest)
		}
		if seek < -pos || seek > a.h.OldSize-pos {
			return false, false, 0, fmt.Errorf("%w: block %d: seek %d from old offset %d leaves the old image (%d bytes)", ErrBounds, blockNo, seek, pos, a.h.OldSize)
		}
		pos += seek
		if int64(add) > a.h.OldSize-pos {
			return false, false, 0, fmt.Errorf("%w: block %d: add of %d bytes at old offset %d passes the end of old (%d bytes)", ErrBounds, blockNo, add, pos, a.h.OldSize)
		}
		pos += int64(add)
		o += add + cp
		hasAdd = hasAdd || add > 0
		hasCopy = hasCopy || cp > 0
	}
	if o != uint64(len(a.blk)) {
		return false, false, 0, fmt.Errorf("%w: block %d: operations cover %d of its %d bytes", ErrCorrupt, blockNo, o, len(a.blk))
	}
	return hasAdd, hasCopy, pos, nil
}

// codedErr maps the error of a range decoder rc to a sentinel.
func (a *applier) codedErr(blockNo int, rc *rangeCoder) error {
	if errors.Is(rc.err, errCodedOverrun) {
		return fmt.Errorf("%w: block %d: coded diff longer than its declared length", ErrCorrupt, blockNo)
	}
	return a.bodyErr("a coded diff section", rc.err)
}

// block fills a.blk from the control section in a.ctrl: the add runs (old
// bytes, references predicted, plus the decoded diff) and the copy runs
// (the extra section), in that order in the patch.
func (a *applier) block(blockNo int) error {
	hasAdd, hasCopy, end, err := a.checkOps(blockNo)
	if err != nil {
		return err
	}
	startPos := a.oldPos
	a.oldPos = end
	// inTurn decodes the add runs from r, then the copy runs.
	inTurn := func(r io.ByteReader, n uint64) error {
		a.rc.initDecoder(r, int64(n), a.pad())
		if err := a.addRuns(blockNo, &a.rc, startPos); err != nil {
			return err
		}
		return a.copyRuns(blockNo, startPos)
	}
	n, err := binary.ReadUvarint(a.br)
	if err != nil {
		return a.bodyErr("a coded diff length", err)
	}
	if !hasAdd {
		if n != 0 {
			return fmt.Errorf("%w: block %d: coded diff of %d bytes for no add operation", ErrCorrupt, blockNo, n)
		}
		return a.copyRuns(blockNo, startPos)
	}
	if n < a.minCoded() || n > MaxImageSize*2 {
		return fmt.Errorf("%w: block %d: coded diff of %d bytes", ErrCorrupt, blockNo, n)
	}
	if a.model == nil {
		a.model = newDiffModel(int(a.h.ModelBits))
	}
	if !hasCopy || n > parDiffMax || !twoCPUs() {
		return inTurn(a.br, n)
	}
	// Both coders at once: the coded diff is read ahead.
	if a.dbuf == nil {
		// Once, at its bound: growing it section by section would leave
		// each smaller buffer to the garbage collector, resident until
		// it runs. Only the pages written become resident.
		a.dbuf = make([]byte, parDiffMax)
		a.done = make(chan error, 1)
	}
	dbuf := a.dbuf[:n]
	if got, err := io.ReadFull(a.br, dbuf); err != nil {
		// The patch ends (or fails) inside the declared section: decode
		// in turn from the bytes read, then the stream, so that the
		// error is the one decoding in turn meets (the decoder may need
		// fewer bytes than declared, and the error is then theirs).
		a.drd.Reset(dbuf[:got])
		return inTurn(&thenReader{&a.drd, a.br}, n)
	}
	a.drd.Reset(dbuf)
	// a.prc reads exactly its limit from memory: its only error is an
	// overrun, so addRuns' errors do not look at the stream the main
	// goroutine reads (bodyErr).
	a.prc.initDecoder(&a.drd, int64(n), a.pad())
	go func() { a.done <- a.addRuns(blockNo, &a.prc, startPos) }()
	cerr := a.copyRuns(blockNo, startPos)
	// The add runs come first in the patch: their error is the one to
	// report, as when they are decoded first.
	if err := <-a.done; err != nil {
		return err
	}
	return cerr
}

// thenReader reads the bytes of first, then those of then.
type thenReader struct {
	first *bytes.Reader
	then  io.ByteReader
}

func (r *thenReader) ReadByte() (byte, error) {
	if r.first.Len() > 0 {
		return r.first.ReadByte()
	}
	return r.then.ReadByte()
}

// addRuns decodes the add runs of the block with rc, started on its
// coded diff section: old bytes, references predicted, plus the diff.
func (a *applier) addRuns(blockNo int, rc *rangeCoder, pos int64) error {
	o := 0
	for ops := a.ctrl; len(ops) > 0; {
		seek, add, cp, n := opAt(ops)
		ops = ops[n:]
		pos += seek
		if add > 0 {
			dst := a.blk[o : o+int(add)]
			if n, err := a.old.ReadAt(dst, pos); n < len(dst) {
				if err == nil || errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("delta: reading old image at %d: %w", pos, err)
			}
			a.refs.predict(dst, pos, a.written+int64(o))
			a.model.codeRun(rc, nil, dst)
			if rc.err != nil {
				return a.codedErr(blockNo, rc)
			}
		}
		pos += int64(add)
		o += int(add) + int(cp)
	}
	if rc.limit > 0 {
		return fmt.Errorf("%w: block %d: %d bytes of the coded diff unused", ErrCorrupt, blockNo, rc.limit)
	}
	return nil
}

// copyRuns decodes the copy runs of the block from the extra section
// (version 3 and later: coded by the extra-byte model, its length first;
// version 2: raw). cur is the old cursor at the block's start.
func (a *applier) copyRuns(blockNo int, cur int64) error {
	o := 0
	coding := false
	rawExtra := false
	for ops := a.ctrl; len(ops) > 0; {
		seek, add, cp, n := opAt(ops)
		ops = ops[n:]
		cur += seek + int64(add)
		o += int(add)
		if cp == 0 {
			continue
		}
		dst := a.blk[o : o+int(cp)]
		at := a.written + int64(o) // dst's offset in new
		o += int(cp)
		if a.h.Version < 3 || rawExtra {
			if _, err := io.ReadFull(a.br, dst); err != nil {
				return a.bodyErr("an extra section", err)
			}
			continue
		}
		if !coding {
			n, err := binary.ReadUvarint(a.br)
			if err != nil {
				return a.bodyErr("a coded extra length", err)
			}
			if n == 0 { // stored: the raw bytes follow
				rawExtra = true
				if _, err := io.ReadFull(a.br, dst); err != nil {
					return a.bodyErr("an extra section", err)
				}
				continue
			}
			if n < a.minCoded() || n > MaxImageSize*2 {
				return fmt.Errorf("%w: block %d: coded extra of %d bytes", ErrCorrupt, blockNo, n)
			}
			if a.lit == nil {
				if a.h.Version == 3 {
					a.lit = newLit3Model(int(a.h.ModelBits))
				} else {
					a.lit = newLitModel(int(a.h.ModelBits))
				}
			}
			a.rc.initDecoder(a.br, int64(n), a.pad())
			coding = true
		}
		// The old bytes from the cursor on are the context (zeros past
		// the end of old); the decoded bytes replace them in place.
		k := 0
		if cur < a.h.OldSize {
			k = int(min(int64(len(dst)), a.h.OldSize-cur))
			if n, err := a.old.ReadAt(dst[:k], cur); n < k {
				if err == nil || errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("delta: reading old image at %d: %w", cur, err)
			}
		}
		clear(dst[k:])
		a.lit.code(&a.rc, dst, dst, at)
		if a.rc.err != nil {
			return a.codedErr(blockNo, &a.rc)
		}
	}
	if coding && a.rc.limit > 0 {
		return fmt.Errorf("%w: block %d: %d bytes of the coded extra unused", ErrCorrupt, blockNo, a.rc.limit)
	}
	return nil
}

// eofReader records whether the patch ended (or failed) under the decoder.
type eofReader struct {
	r   io.Reader
	eof bool
	err error
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if errors.Is(err, io.EOF) {
		e.eof = true
	} else if err != nil {
		e.err = err
	}
	return n, err
}
