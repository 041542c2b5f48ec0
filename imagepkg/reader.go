package imagepkg

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/big"

	"github.com/klauspost/compress/zstd"

	"github.com/upkit/upkit/spec"
)

// Reader is an opened, parsed (not yet verified) image package. Its fields
// come from the package's bytes: trust them only after VerifySignature
// returned nil, and trust payload bytes only once Payload's reader reached
// io.EOF without error.
type Reader struct {
	FormatVersion int      // FormatVersion or FormatVersion1
	Metadata      Metadata // parsed, validated metadata
	MetadataBytes []byte   // the metadata JSON exactly as stored (and signed)
	KeyID         string   // lowercase hex key ID of the signer, from the signature block
	Algorithm     string   // spec.AlgorithmECDSAP256 or spec.AlgorithmEd25519
	Signature     []byte   // the signature bytes
	// HeaderSize is the number of bytes before the payload: the payload
	// offset of version 2 (20 + M + 2 + S + padding), 16 + M + 2 + S in
	// version 1.
	HeaderSize int64

	signed      []byte // the bytes the signature covers, after the context: fixed header and metadata
	r           io.Reader
	consumed    bool
	sigVerified bool
}

// Open reads and parses a package's header, metadata and signature block
// (and, in version 2, the padding up to the payload offset) from r, leaving
// r positioned at the first payload byte: Open reads exactly HeaderSize
// bytes (it does not read ahead). It accepts format versions 2 and 1. It
// checks the magic, version, flags, every length against its limit before
// allocating, the padding, and the metadata (see ParseMetadata). It does NOT
// verify the signature: call VerifySignature, then read Payload (or use
// Verify).
//
// Errors wrap ErrMagic, ErrVersion, ErrUnsupported, ErrMetadataTooLarge,
// ErrMetadata, ErrSignatureBlock, ErrPadding or ErrTruncated; read errors
// from r are wrapped as they are.
func Open(r io.Reader) (*Reader, error) {
	var fixed [fixedHeaderSize]byte
	if err := readFull(r, fixed[:8], "magic"); err != nil {
		return nil, err
	}
	if string(fixed[:8]) != Magic {
		return nil, fmt.Errorf("%w: offset 0: got %q", ErrMagic, fixed[:8])
	}
	if err := readFull(r, fixed[8:10], "header"); err != nil {
		return nil, err
	}
	version := int(binary.BigEndian.Uint16(fixed[8:]))
	fixedSize := fixedHeaderSize
	switch version {
	case FormatVersion:
	case FormatVersion1:
		fixedSize = fixedHeaderSizeV1
	default:
		return nil, fmt.Errorf("%w: offset 8: version %d, this reader supports %d and %d", ErrVersion, version, FormatVersion, FormatVersion1)
	}
	if err := readFull(r, fixed[10:fixedSize], "header"); err != nil {
		return nil, err
	}
	if f := binary.BigEndian.Uint16(fixed[10:]); f != 0 {
		return nil, fmt.Errorf("%w: offset 10: flags %#04x (no flags are defined in version %d)", ErrUnsupported, f, version)
	}
	m := binary.BigEndian.Uint32(fixed[12:])
	if m == 0 {
		return nil, fmt.Errorf("%w: offset 12: metadata length 0", ErrMetadata)
	}
	if m > MaxMetadataSize {
		return nil, fmt.Errorf("%w: offset 12: metadata length %d, limit %d", ErrMetadataTooLarge, m, MaxMetadataSize)
	}
	var payloadOffset int64
	if version == FormatVersion {
		payloadOffset = int64(binary.BigEndian.Uint32(fixed[16:]))
		// The signature block is at least MinSignatureBlock bytes: an
		// offset that leaves no room for it, or more padding than allowed
		// after the largest one, is refused before anything else is read.
		lo := int64(fixedSize) + int64(m) + 2 + MinSignatureBlock
		hi := int64(fixedSize) + int64(m) + 2 + MaxSignatureBlock + MaxHeaderPadding
		if payloadOffset < lo || payloadOffset > hi {
			return nil, fmt.Errorf("%w: offset 16: payload offset %d, want %d..%d for %d bytes of metadata", ErrPadding, payloadOffset, lo, hi, m)
		}
	}
	signed := make([]byte, fixedSize+int(m))
	copy(signed, fixed[:fixedSize])
	if err := readFull(r, signed[fixedSize:], "metadata"); err != nil {
		return nil, err
	}
	meta, err := ParseMetadata(signed[fixedSize:])
	if err != nil {
		return nil, fmt.Errorf("offset %d: %w", fixedSize, err)
	}
	off := int64(len(signed))
	var sl [2]byte
	if err := readFull(r, sl[:], "signature block length"); err != nil {
		return nil, err
	}
	s := int(binary.BigEndian.Uint16(sl[:]))
	if s < MinSignatureBlock || s > MaxSignatureBlock {
		return nil, fmt.Errorf("%w: offset %d: signature block length %d, want %d..%d", ErrSignatureBlock, off, s, MinSignatureBlock, MaxSignatureBlock)
	}
	block := make([]byte, s)
	if err := readFull(r, block, "signature block"); err != nil {
		return nil, err
	}
	alg, err := algorithmName(block[keyIDSize], off+2+keyIDSize)
	if err != nil {
		return nil, err
	}
	sig := block[keyIDSize+1:]
	if err := checkSignatureShape(alg, sig); err != nil {
		return nil, fmt.Errorf("%w: offset %d: %v", ErrSignatureBlock, off+2+keyIDSize+1, err)
	}
	end := off + 2 + int64(s)
	if version == FormatVersion {
		if err := readPadding(r, end, payloadOffset); err != nil {
			return nil, err
		}
		end = payloadOffset
	}
	return &Reader{
		FormatVersion: version,
		Metadata:      *meta,
		MetadataBytes: signed[fixedSize:],
		KeyID:         hex.EncodeToString(block[:keyIDSize]),
		Algorithm:     alg,
		Signature:     sig,
		HeaderSize:    end,
		signed:        signed,
		r:             r,
	}, nil
}

// readPadding reads the version 2 padding, bytes [from, to) of the package,
// which must all be zero: the payload offset is signed, the padding is not,
// so nothing else may be there.
func readPadding(r io.Reader, from, to int64) error {
	if to < from {
		return fmt.Errorf("%w: offset 16: payload offset %d is inside the signature block, which ends at %d", ErrPadding, to, from)
	}
	if to-from > MaxHeaderPadding {
		return fmt.Errorf("%w: offset 16: payload offset %d leaves %d bytes of padding, limit %d", ErrPadding, to, to-from, MaxHeaderPadding)
	}
	pad := make([]byte, to-from)
	if err := readFull(r, pad, "header padding"); err != nil {
		return err
	}
	for i, b := range pad {
		if b != 0 {
			return fmt.Errorf("%w: offset %d: byte %#02x, padding must be zero", ErrPadding, from+int64(i), b)
		}
	}
	return nil
}

func readFull(r io.Reader, b []byte, what string) error {
	n, err := io.ReadFull(r, b)
	if err == nil {
		return nil
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: reading the %s: got %d of %d bytes", ErrTruncated, what, n, len(b))
	}
	return fmt.Errorf("imagepkg: reading the %s: %w", what, err)
}

func algorithmName(b byte, off int64) (string, error) {
	switch b {
	case algECDSAP256:
		return spec.AlgorithmECDSAP256, nil
	case algEd25519:
		return spec.AlgorithmEd25519, nil
	}
	return "", fmt.Errorf("%w: offset %d: unknown signature algorithm %d (want 1 = ecdsa-p256 or 2 = ed25519)", ErrSignatureBlock, off, b)
}

func algorithmByte(alg string) (byte, error) {
	switch alg {
	case spec.AlgorithmECDSAP256:
		return algECDSAP256, nil
	case spec.AlgorithmEd25519:
		return algEd25519, nil
	}
	return 0, fmt.Errorf("%w: algorithm %q", spec.ErrUnsupportedKey, alg)
}

// checkSignatureShape checks a signature's encoding (not its validity):
// Ed25519 signatures are 64 bytes, ECDSA P-256 ones a DER SEQUENCE of two
// positive INTEGERs, at most 72 bytes.
func checkSignatureShape(alg string, sig []byte) error {
	switch alg {
	case spec.AlgorithmEd25519:
		if len(sig) != 64 {
			return fmt.Errorf("ed25519 signature of %d bytes, want 64", len(sig))
		}
	case spec.AlgorithmECDSAP256:
		if !isECDSADER(sig) {
			return fmt.Errorf("ecdsa-p256 signature of %d bytes is not an ASN.1 DER (r, s) pair", len(sig))
		}
	}
	return nil
}

func isECDSADER(sig []byte) bool {
	if len(sig) < 8 || len(sig) > 72 {
		return false
	}
	var v struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(sig, &v)
	return err == nil && len(rest) == 0 && v.R.Sign() > 0 && v.S.Sign() > 0
}

// SignedMessage returns the bytes the signature covers: SignatureContext
// followed by the fixed header and the metadata (bytes [0, 20+M)); in
// version 1, SignatureContextV1 and bytes [0, 16+M).
func (p *Reader) SignedMessage() []byte {
	return signedMessage(p.FormatVersion, p.signed)
}

func signedMessage(version int, headerAndMetadata []byte) []byte {
	context := SignatureContext
	if version == FormatVersion1 {
		context = SignatureContextV1
	}
	msg := make([]byte, 0, len(context)+len(headerAndMetadata))
	msg = append(msg, context...)
	return append(msg, headerAndMetadata...)
}

// VerifySignature checks the package signature against the trusted keys:
// the key whose ID equals KeyID must be among keys (else ErrUnknownKey),
// have the package's algorithm and verify the signature over
// SignedMessage (else ErrSignature). It reads nothing.
func (p *Reader) VerifySignature(keys ...*spec.PublicKey) error {
	var key *spec.PublicKey
	for _, k := range keys {
		if k != nil && k.ID == p.KeyID {
			key = k
			break
		}
	}
	if key == nil {
		return fmt.Errorf("%w: key ID %s is not among the %d trusted key(s)", ErrUnknownKey, p.KeyID, len(keys))
	}
	if key.Algorithm != p.Algorithm {
		return fmt.Errorf("%w: package says %s, key %s is %s", ErrSignature, p.Algorithm, p.KeyID, key.Algorithm)
	}
	if err := key.Verify(p.SignedMessage(), p.Signature); err != nil {
		return fmt.Errorf("%w: key %s: %v", ErrSignature, p.KeyID, err)
	}
	p.sigVerified = true
	return nil
}

// Payload returns a reader of the uncompressed payload. It may be called
// once (a second reader fails with ErrPayloadConsumed). The reader:
//   - never returns more than Metadata.Payload.Size bytes, and never reads
//     more than StoredSize bytes of the package, plus one byte to detect
//     trailing data;
//   - hashes and counts while streaming, and at the end returns, instead of
//     io.EOF, an error wrapping ErrTruncated (the package ended early),
//     ErrPayloadSize (more or fewer bytes than Size), ErrPayloadDigest (the
//     sha256 differs, or the compressed stream is corrupt), ErrUnsupported
//     (a zstd window above MaxDecoderWindow) or ErrTrailingData (bytes after
//     the payload);
//   - decompresses zstd in one goroutine of its own (so that decompression
//     and hashing run in parallel), with a window of at most
//     MaxDecoderWindow and 1 MiB of buffers, so its memory is bounded by a
//     constant.
//
// Bytes returned before io.EOF are unverified: act on them only after the
// reader returned io.EOF (Extract writes to a temporary file for that). Call
// Close on the returned reader if it implements io.Closer and is abandoned
// before io.EOF, to stop the decoder goroutine; at io.EOF or error it is
// stopped already, and never reads the package after that.
func (p *Reader) Payload() io.Reader {
	if p.consumed {
		return errReader{fmt.Errorf("%w", ErrPayloadConsumed)}
	}
	p.consumed = true
	pi := p.Metadata.Payload
	stored := &storedReader{r: p.r, remaining: pi.StoredSize, offset: p.HeaderSize}
	pr := &payloadReader{
		stored: stored,
		want:   pi,
		hash:   sha256.New(),
	}
	if pi.Compression == CompressionZstd {
		br := bufio.NewReaderSize(stored, 256<<10)
		dec, err := zstd.NewReader(br,
			zstd.WithDecoderConcurrency(1), // decodes in the pipe's goroutine
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(MaxDecoderWindow),
			zstd.WithDecoderMaxMemory(MaxDecoderWindow),
		)
		if err != nil {
			return errReader{fmt.Errorf("imagepkg: creating zstd decoder: %w", err)}
		}
		pr.pipe = newDecodePipe(dec)
	}
	return pr
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// storedReader yields exactly remaining bytes of r; an early EOF is
// ErrTruncated.
type storedReader struct {
	r         io.Reader
	remaining int64
	offset    int64 // package offset of the next byte
	err       error // sticky
}

func (s *storedReader) Read(b []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.remaining <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > s.remaining {
		b = b[:s.remaining]
	}
	n, err := s.r.Read(b)
	s.remaining -= int64(n)
	s.offset += int64(n)
	if err == io.EOF && s.remaining > 0 {
		s.err = fmt.Errorf("%w: payload ends at offset %d, %d stored bytes missing", ErrTruncated, s.offset, s.remaining)
		return n, s.err
	}
	if err != nil && err != io.EOF {
		s.err = fmt.Errorf("imagepkg: reading the payload at offset %d: %w", s.offset, err)
		return n, s.err
	}
	if s.remaining == 0 {
		return n, io.EOF
	}
	return n, nil
}

type payloadReader struct {
	stored *storedReader
	pipe   *decodePipe // nil when the payload is not compressed
	pend   []byte      // decoded bytes not yet returned by Read
	pendC  chunk       // the chunk pend belongs to
	want   PayloadInfo
	hash   hash.Hash
	n      int64
	err    error // sticky final result (io.EOF on success)
}

func (p *payloadReader) Read(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	if len(b) == 0 {
		return 0, nil
	}
	// Ask for one byte more than the declared size can still hold, so that
	// an overlong payload is detected without returning its extra bytes.
	if room := p.want.Size - p.n; room < int64(len(b)) { // 0 <= room, so room+1 <= len(b)
		b = b[:room+1]
	}
	var n int
	var err error
	if p.pipe == nil {
		n, err = p.stored.Read(b)
	} else {
		for len(p.pend) == 0 && p.pendC.err == nil {
			p.pipe.release(p.pendC.b)
			p.pendC = p.pipe.recv()
			p.pend = p.pendC.b
		}
		n = copy(b, p.pend)
		p.pend = p.pend[n:]
		if len(p.pend) == 0 {
			err = p.pendC.err
		}
	}
	if p.n+int64(n) > p.want.Size {
		n = int(p.want.Size - p.n)
		p.hash.Write(b[:n])
		p.n += int64(n)
		return n, p.fail(fmt.Errorf("%w: payload longer than the signed size %d", ErrPayloadSize, p.want.Size))
	}
	p.hash.Write(b[:n])
	p.n += int64(n)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		return n, p.finish()
	default:
		return n, p.fail(p.classify(err))
	}
}

// classify maps a source error to the package's sentinels.
func (p *payloadReader) classify(err error) error {
	if p.stored.err != nil { // truncation or I/O error below the decoder
		return p.stored.err
	}
	if p.pipe == nil {
		return err
	}
	if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		return fmt.Errorf("%w: zstd window above the %d-byte limit: %v", ErrUnsupported, MaxDecoderWindow, err)
	}
	return fmt.Errorf("%w: corrupt zstd payload after %d uncompressed bytes: %v", ErrPayloadDigest, p.n, err)
}

func (p *payloadReader) fail(err error) error {
	p.err = err
	if p.pipe != nil {
		p.pipe.stop()
	}
	return err
}

func (p *payloadReader) finish() error {
	if p.pipe != nil {
		p.pipe.stop() // the decoder no longer reads the package
		if p.stored.err != nil {
			return p.fail(p.stored.err)
		}
		if p.stored.remaining != 0 {
			return p.fail(fmt.Errorf("%w: zstd stream ended %d bytes before the signed stored size %d", ErrPayloadSize, p.stored.remaining, p.want.StoredSize))
		}
	}
	var probe [1]byte
	n, err := io.ReadFull(p.stored.r, probe[:])
	if n > 0 {
		return p.fail(fmt.Errorf("%w: at offset %d", ErrTrailingData, p.stored.offset))
	}
	if err != nil && err != io.EOF {
		return p.fail(fmt.Errorf("imagepkg: reading after the payload: %w", err))
	}
	if p.n != p.want.Size {
		return p.fail(fmt.Errorf("%w: %d bytes, signed size %d", ErrPayloadSize, p.n, p.want.Size))
	}
	if got := spec.HashDigest(p.hash).String(); got != p.want.SHA256 {
		return p.fail(fmt.Errorf("%w: got %s, signed %s", ErrPayloadDigest, got, p.want.SHA256))
	}
	p.err = io.EOF
	return io.EOF
}

// WriteTo writes the rest of the payload to w, with the checks and final
// errors of Read (nil instead of io.EOF on success). A zstd payload is
// written straight from the decoding buffers, saving a copy.
func (p *payloadReader) WriteTo(w io.Writer) (int64, error) {
	return p.copyTo(context.Background(), w)
}

func (p *payloadReader) copyTo(ctx context.Context, w io.Writer) (int64, error) {
	if p.err == io.EOF {
		return 0, nil
	}
	if p.err != nil {
		return 0, p.err
	}
	if p.pipe == nil || len(p.pend) > 0 {
		// Uncompressed (the read lands in the buffer that is hashed), or a
		// chunk half-consumed by Read.
		buf := make([]byte, ReadBufferSize)
		var total int64
		for {
			if err := ctx.Err(); err != nil {
				return total, p.fail(err)
			}
			n, err := p.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return total, p.fail(fmt.Errorf("imagepkg: writing the payload: %w", werr))
				}
				total += int64(n)
			}
			if err == io.EOF {
				return total, nil
			}
			if err != nil {
				return total, err
			}
			if p.pipe != nil && len(p.pend) == 0 {
				break // continue chunk by chunk
			}
		}
	}
	// Chunk by chunk, straight from the decoder's buffers.
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, p.fail(err)
		}
		p.pipe.release(p.pendC.b)
		p.pendC = p.pipe.recv()
		b := p.pendC.b
		over := false
		if room := p.want.Size - p.n; int64(len(b)) > room {
			b, over = b[:room], true
		}
		p.hash.Write(b)
		p.n += int64(len(b))
		n, werr := w.Write(b)
		total += int64(n)
		switch {
		case werr != nil:
			return total, p.fail(fmt.Errorf("imagepkg: writing the payload: %w", werr))
		case over:
			return total, p.fail(fmt.Errorf("%w: payload longer than the signed size %d", ErrPayloadSize, p.want.Size))
		case p.pendC.err == io.EOF:
			if err := p.finish(); err != io.EOF {
				return total, err
			}
			return total, nil
		case p.pendC.err != nil:
			return total, p.fail(p.classify(p.pendC.err))
		}
	}
}

// Close stops the decoder (if any) of an abandoned payload reader.
func (p *payloadReader) Close() error {
	if p.err == nil {
		p.fail(fmt.Errorf("%w: reader closed", ErrPayloadConsumed))
	}
	return nil
}

// Decoding pipeline: chunks of pipeChunk bytes, pipeChunks of them.
const (
	pipeChunk  = 256 << 10
	pipeChunks = 4
)

// chunk is decoded payload bytes, and the error that followed them.
type chunk struct {
	b   []byte
	err error
}

// decodePipe runs a zstd decoder in a goroutine of its own, filling a ring
// of buffers, so that decompression and hashing run in parallel. The
// goroutine sends chunks until one carries an error (io.EOF at the end),
// then closes the decoder and exits.
type decodePipe struct {
	full    chan chunk
	free    chan []byte
	done    chan struct{} // closed by stop
	exited  chan struct{} // closed when the goroutine has returned
	stopped bool
}

func newDecodePipe(dec *zstd.Decoder) *decodePipe {
	d := &decodePipe{
		full:   make(chan chunk, pipeChunks),
		free:   make(chan []byte, pipeChunks),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	for range pipeChunks {
		d.free <- make([]byte, pipeChunk)
	}
	go d.run(dec)
	return d
}

func (d *decodePipe) run(dec *zstd.Decoder) {
	defer close(d.exited)
	defer dec.Close()
	for {
		var b []byte
		select {
		case b = <-d.free:
		case <-d.done:
			return
		}
		n, err := io.ReadFull(dec, b)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF // a short last chunk
		}
		select {
		case d.full <- chunk{b[:n], err}:
		case <-d.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// recv returns the next chunk. It must not be called after a chunk with an
// error.
func (d *decodePipe) recv() chunk { return <-d.full }

// release gives a received chunk's buffer back.
func (d *decodePipe) release(b []byte) {
	if b != nil {
		d.free <- b[:cap(b)]
	}
}

// stop ends the goroutine and waits for it, so that the decoder reads
// nothing more; it decodes at most one more chunk.
func (d *decodePipe) stop() {
	if !d.stopped {
		d.stopped = true
		close(d.done)
	}
	<-d.exited
}

// VerifyPayload reads the whole payload and discards it, returning nil only
// if its size and digest match the metadata and nothing follows it (see
// Payload for the errors). It does not check the signature: call
// VerifySignature first. ctx is checked between chunks.
func (p *Reader) VerifyPayload(ctx context.Context) error {
	return drain(ctx, p.Payload())
}

// Verify opens the package read from r, verifies its signature against keys
// and streams the whole payload, checking its size and digest, then checks
// that nothing follows it. It returns the opened Reader (its payload is
// consumed) and nil only if everything holds; after a signature or payload
// error it returns the Reader too (for diagnostics: never trust it), after
// an Open error nil. Memory use does not depend
// on the payload size. ctx is checked between chunks.
func Verify(ctx context.Context, r io.Reader, keys ...*spec.PublicKey) (*Reader, error) {
	p, err := Open(r)
	if err != nil {
		return nil, err
	}
	if err := p.VerifySignature(keys...); err != nil {
		return p, err
	}
	if err := p.VerifyPayload(ctx); err != nil {
		return p, err
	}
	return p, nil
}

// drain reads src to its end with a ReadBufferSize buffer.
func drain(ctx context.Context, src io.Reader) error {
	if pr, ok := src.(*payloadReader); ok {
		_, err := pr.copyTo(ctx, io.Discard)
		return err
	}
	buf := make([]byte, ReadBufferSize)
	for {
		if err := ctx.Err(); err != nil {
			if c, ok := src.(io.Closer); ok {
				c.Close()
			}
			return err
		}
		_, err := src.Read(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
