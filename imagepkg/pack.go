package imagepkg

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"time"

	"github.com/upkit/upkit/spec"
)

// PackOptions say what to put in a package's metadata and how to store the
// payload. The payload's size and digest are computed by Pack.
type PackOptions struct {
	Component       string   // component name, spec.CheckName
	Type            string   // TypeOS, TypeApp, TypeFirmware or TypeBootloader
	Version         string   // semantic version
	SecurityVersion uint64   // anti-rollback counter
	Hardware        []string // compatible hardware names, in the order given
	// Compression is CompressionZstd or CompressionNone ("" means none).
	Compression string
	// Created is the creation time written to the metadata, truncated to
	// whole seconds, in UTC. The zero value means 1970-01-01T00:00:00Z, so
	// that packing stays reproducible; callers pass SOURCE_DATE_EPOCH or
	// the current time.
	Created time.Time
	// ModTime is the modification time of every entry of a directory
	// payload (PackPath), truncated to whole seconds. The zero value means
	// the Unix epoch; callers pass SOURCE_DATE_EPOCH when set.
	ModTime time.Time
	// Kind is the payload kind for Pack: KindFile ("" means file) or KindTar
	// when the reader yields a tar archive. PackPath sets it itself.
	Kind string
	// Concurrency is the number of zstd encoder goroutines (0 means
	// GOMAXPROCS, at most 4). The output does not depend on it: the
	// payload is compressed as independent frames of FrameSize bytes.
	// Memory grows with it: (Concurrency+2) frames in flight, about 8 MiB
	// each.
	Concurrency int
	// TempDir is where Pack spools the package when out is not a file it
	// can write in place ("" means os.TempDir()).
	TempDir string
	// Progress, when set, is called after every read of the payload with
	// the number of payload bytes read so far (for progress displays).
	Progress func(read int64)
	// Digest, when set, receives every byte written to the output, so that
	// the caller gets the package digest (e.g. sha256.New()) without
	// reading the package again.
	Digest hash.Hash
}

// Pack reads the whole payload from payload, and writes a signed package to
// out.
//
// The metadata (payload size and digest, stored size) precedes the payload,
// so Pack reserves room for the header, streams the payload to its place
// after it while hashing (and compressing) it in one pass, then signs and
// writes the header in front. When out is a file it can seek in (an
// *os.File on a regular file), the package is written there in place, from
// out's current offset; otherwise Pack writes it to an anonymous temporary
// file (created in opts.TempDir and unlinked at once) and copies it to out.
// Memory use does not depend on the payload size.
//
// The output depends only on the payload bytes, opts (except Concurrency
// and TempDir) and the signature: with an Ed25519 signer the same inputs
// give the same bytes. Pack returns the metadata written. On error, out
// holds a partial package (PackPath writes to a temporary file and renames
// it only on success).
func Pack(ctx context.Context, out io.Writer, payload io.Reader, opts PackOptions, s spec.Signer) (*Metadata, error) {
	meta, err := metadataFromOptions(opts)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, fmt.Errorf("%w: no signer", ErrInvalidOptions)
	}
	if f, ok := out.(*os.File); ok {
		if base, err := f.Seek(0, io.SeekCurrent); err == nil {
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
				end, err := packInPlace(ctx, f, base, payload, meta, opts, s)
				if err != nil {
					return nil, err
				}
				if opts.Digest != nil {
					if err := hashRange(ctx, opts.Digest, f, base, end); err != nil {
						return nil, err
					}
				}
				return meta, nil
			}
		}
	}
	spool, err := os.CreateTemp(opts.TempDir, ".upkit-spool-*")
	if err != nil {
		return nil, fmt.Errorf("imagepkg: creating the package spool file: %w", err)
	}
	// Unlinked at once: nothing is left behind even if the process dies.
	os.Remove(spool.Name())
	defer spool.Close()
	end, err := packInPlace(ctx, spool, 0, payload, meta, opts, s)
	if err != nil {
		return nil, err
	}
	if opts.Digest != nil {
		out = io.MultiWriter(out, opts.Digest)
	}
	// (hide ReadFrom/WriteTo, so that the 1 MiB buffer is used)
	n, err := io.CopyBuffer(struct{ io.Writer }{out}, &ctxReader{ctx: ctx, r: io.NewSectionReader(spool, 0, end)}, make([]byte, ReadBufferSize))
	if err != nil {
		return nil, fmt.Errorf("imagepkg: writing the package: %w", err)
	}
	if n != end {
		return nil, fmt.Errorf("imagepkg: writing the package: copied %d of %d bytes", n, end)
	}
	return meta, nil
}

// packInPlace writes the package for meta (payload fields still to be
// filled) into f at offset base: the payload first, at base + the reserved
// header size, then the header. It returns the package's size.
func packInPlace(ctx context.Context, f *os.File, base int64, payload io.Reader, meta *Metadata, opts PackOptions, s spec.Signer) (int64, error) {
	reserved, err := reserveHeader(meta, s)
	if err != nil {
		return 0, err
	}
	if _, err := f.Seek(base+int64(reserved), io.SeekStart); err != nil {
		return 0, fmt.Errorf("imagepkg: package file: %w", err)
	}
	h := sha256.New()
	var size, stored int64
	if in, ok := payload.(*os.File); ok && meta.Payload.Compression != CompressionZstd && isRegular(in) {
		size, err = copyFileHashed(ctx, f, in, h, opts.Progress)
		stored = size
	} else {
		src := &ctxReader{ctx: ctx, r: payload, progress: opts.Progress}
		cw := &countingWriter{w: f}
		size, err = storePayload(cw, src, h, meta.Payload.Compression == CompressionZstd, opts.Concurrency)
		stored = cw.n
	}
	if err != nil {
		return 0, fmt.Errorf("imagepkg: storing the payload: %w", err)
	}
	meta.Payload.Size = size
	meta.Payload.StoredSize = stored
	meta.Payload.SHA256 = spec.HashDigest(h).String()
	header, err := signHeader(ctx, meta, s, reserved)
	if err != nil {
		return 0, err
	}
	if _, err := f.WriteAt(header, base); err != nil {
		return 0, fmt.Errorf("imagepkg: writing the package header: %w", err)
	}
	end := int64(reserved) + stored
	if _, err := f.Seek(base+end, io.SeekStart); err != nil {
		return 0, fmt.Errorf("imagepkg: package file: %w", err)
	}
	return end, nil
}

func isRegular(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode().IsRegular()
}

// kernelCopyStep is how much copyFileHashed copies between checks of ctx.
const kernelCopyStep = 64 << 20

// copyFileHashed stores the regular file src, from its current offset, at
// dst's current offset, uncompressed: the kernel copies it
// (copy_file_range) while another goroutine hashes it, reading it a second
// time, so that the copy costs no time beyond the hash. src must not change
// meanwhile: its size and modification time are compared before and after,
// and the bytes copied must be the bytes hashed.
func copyFileHashed(ctx context.Context, dst, src *os.File, h hash.Hash, progress func(int64)) (int64, error) {
	start, err := src.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	before, err := src.Stat()
	if err != nil {
		return 0, err
	}
	size := before.Size() - start
	var hashed int64
	var hashErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := &ctxReader{ctx: ctx, r: io.NewSectionReader(src, start, size), progress: progress}
		hashed, hashErr = io.CopyBuffer(h, r, make([]byte, ReadBufferSize))
	}()
	var copied int64
	for copied < size && err == nil {
		if err = ctx.Err(); err != nil {
			break
		}
		var k int64
		k, err = io.CopyN(dst, src, min(kernelCopyStep, size-copied))
		copied += k
	}
	<-done
	if err != nil {
		return copied, err
	}
	if hashErr != nil {
		return copied, hashErr
	}
	after, err := src.Stat()
	if err != nil {
		return copied, err
	}
	if copied != size || hashed != size || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		return copied, fmt.Errorf("input %s changed while being packed", src.Name())
	}
	return copied, nil
}

// hashRange writes bytes [base, base+n) of f to h, stopping when ctx is
// done.
func hashRange(ctx context.Context, h hash.Hash, f *os.File, base, n int64) error {
	got, err := io.CopyBuffer(h, &ctxReader{ctx: ctx, r: io.NewSectionReader(f, base, n)}, make([]byte, ReadBufferSize))
	if err != nil {
		return fmt.Errorf("imagepkg: hashing the package: %w", err)
	}
	if got != n {
		return fmt.Errorf("imagepkg: hashing the package: read %d of %d bytes", got, n)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// ctxReader stops reading when ctx is done, and reports progress.
type ctxReader struct {
	ctx      context.Context
	r        io.Reader
	progress func(int64)
	n        int64
}

func (c *ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(b)
	c.n += int64(n)
	if c.progress != nil {
		c.progress(c.n)
	}
	return n, err
}

// CheckPackOptions checks the fields of opts that become metadata
// (component, type, version, hardware, compression, kind) as Pack would,
// before any payload is read: a tool can refuse bad input early. Errors
// wrap ErrInvalidOptions and name the field.
func CheckPackOptions(opts PackOptions) error {
	_, err := metadataFromOptions(opts)
	return err
}

// metadataFromOptions builds and validates the metadata, with a placeholder
// payload digest, before any payload byte is read.
func metadataFromOptions(opts PackOptions) (*Metadata, error) {
	created := opts.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	m := &Metadata{
		SchemaVersion:   SchemaVersion,
		Component:       opts.Component,
		Type:            opts.Type,
		Version:         opts.Version,
		SecurityVersion: opts.SecurityVersion,
		Hardware:        append([]string(nil), opts.Hardware...),
		Created:         created.UTC().Truncate(time.Second),
		Payload: PayloadInfo{
			Kind:        opts.Kind,
			Compression: opts.Compression,
			SHA256:      spec.Digest{}.String(),
		},
	}
	if m.Payload.Kind == "" {
		m.Payload.Kind = KindFile
	}
	if m.Payload.Compression == "" {
		m.Payload.Compression = CompressionNone
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	return m, nil
}

// reserveHeader returns the header size Pack reserves before the payload:
// the header as it will be with the largest payload sizes the metadata can
// hold and the longest signature of the signer's algorithm (or any
// algorithm, when the signer does not say). It depends only on the options
// and the key, so that packing stays reproducible.
func reserveHeader(meta *Metadata, s spec.Signer) (int, error) {
	m := *meta
	m.Payload.Size, m.Payload.StoredSize = math.MaxInt64, math.MaxInt64
	mj, err := MarshalMetadata(&m)
	if err != nil {
		return 0, err
	}
	sigBlock := MaxSignatureBlock
	if key := signerKey(s); key != nil {
		switch key.Algorithm {
		case spec.AlgorithmEd25519:
			sigBlock = keyIDSize + 1 + 64
		case spec.AlgorithmECDSAP256:
			sigBlock = keyIDSize + 1 + 72
		}
	}
	n := fixedHeaderSize + len(mj) + 2 + sigBlock
	if len(mj) > MaxMetadataSize {
		return 0, fmt.Errorf("%w: metadata of %d bytes, limit %d", ErrInvalidOptions, len(mj), MaxMetadataSize)
	}
	return n, nil
}

// signHeader encodes the fixed header and metadata, signs them and returns
// every byte that precedes the payload, zero-padded to payloadOffset.
func signHeader(ctx context.Context, meta *Metadata, s spec.Signer, payloadOffset int) ([]byte, error) {
	mj, err := MarshalMetadata(meta)
	if err != nil {
		return nil, err
	}
	keyID, err := hex.DecodeString(s.KeyID())
	if err != nil || len(keyID) != keyIDSize || hex.EncodeToString(keyID) != s.KeyID() {
		return nil, fmt.Errorf("%w: signer key ID %q is not 64 lowercase hex digits", ErrInvalidOptions, s.KeyID())
	}
	head := make([]byte, fixedHeaderSize, payloadOffset)
	copy(head, Magic)
	binary.BigEndian.PutUint16(head[8:], FormatVersion)
	binary.BigEndian.PutUint16(head[10:], 0)
	binary.BigEndian.PutUint32(head[12:], uint32(len(mj)))
	binary.BigEndian.PutUint32(head[16:], uint32(payloadOffset))
	head = append(head, mj...)
	msg := signedMessage(FormatVersion, head)
	sig, err := s.Sign(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("imagepkg: signing the package: %w", err)
	}
	alg, err := signerAlgorithm(s, msg, sig)
	if err != nil {
		return nil, err
	}
	if err := checkSignatureShape(alg, sig); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignerMisbehaving, err)
	}
	algByte, err := algorithmByte(alg)
	if err != nil {
		return nil, err
	}
	blockLen := keyIDSize + 1 + len(sig)
	if blockLen > MaxSignatureBlock {
		return nil, fmt.Errorf("%w: signature of %d bytes", ErrSignerMisbehaving, len(sig))
	}
	head = binary.BigEndian.AppendUint16(head, uint16(blockLen))
	head = append(head, keyID...)
	head = append(head, algByte)
	head = append(head, sig...)
	if len(head) > payloadOffset {
		return nil, fmt.Errorf("%w: a %d-byte %s signature does not fit the %d bytes reserved for it", ErrSignerMisbehaving, len(sig), alg, payloadOffset-len(head)+len(sig))
	}
	if pad := payloadOffset - len(head); pad > MaxHeaderPadding {
		return nil, fmt.Errorf("%w: %d bytes of header padding, limit %d", ErrSignerMisbehaving, pad, MaxHeaderPadding)
	}
	return head[:payloadOffset], nil // the padding: zeros from make
}

// signerKey returns the signer's public key if it is a spec.PublicSigner.
func signerKey(s spec.Signer) *spec.PublicKey {
	if ps, ok := s.(spec.PublicSigner); ok {
		return ps.Public()
	}
	return nil
}

// signerAlgorithm finds the signer's algorithm. A spec.PublicSigner gives
// its public key: its ID must be the signer's key ID and the signature
// must verify, before anything is written. Other signers' algorithm is
// told from the signature's encoding (an ASN.1 DER pair: ECDSA P-256; 64
// other bytes: Ed25519).
func signerAlgorithm(s spec.Signer, msg, sig []byte) (string, error) {
	if key := signerKey(s); key != nil {
		if key.ID != s.KeyID() {
			return "", fmt.Errorf("%w: KeyID %s does not match its public key %s", ErrSignerMisbehaving, s.KeyID(), key.ID)
		}
		if err := key.Verify(msg, sig); err != nil {
			return "", fmt.Errorf("%w: the signature does not verify with the signer's own key: %v", ErrSignerMisbehaving, err)
		}
		return key.Algorithm, nil
	}
	switch {
	case isECDSADER(sig):
		return spec.AlgorithmECDSAP256, nil
	case len(sig) == 64:
		return spec.AlgorithmEd25519, nil
	}
	return "", fmt.Errorf("%w: cannot tell the algorithm of a %d-byte signature", ErrSignerMisbehaving, len(sig))
}
