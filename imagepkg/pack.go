package imagepkg

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/klauspost/compress/zstd"

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
	// GOMAXPROCS). The output does not depend on it: the encoder always
	// runs in its concurrent-blocks mode (fixed 8 MiB jobs with a fixed
	// overlap), with at least 2 goroutines.
	Concurrency int
	// TempDir is where Pack spools the stored payload ("" means
	// os.TempDir()). PackPath uses the output file's directory.
	TempDir string
	// Progress, when set, is called after every read of the payload with
	// the number of payload bytes read so far (for progress displays).
	Progress func(read int64)
	// Digest, when set, receives every byte written to the output, so that
	// the caller gets the package digest (e.g. sha256.New()) without
	// reading the package again.
	Digest hash.Hash
}

// zstd encoder settings. Changing them changes packages' bytes: the golden
// file test pins them.
const (
	encoderLevel  = zstd.SpeedDefault
	encoderWindow = 2 << 20 // as zstd -3; concurrent-blocks jobs are 4 windows (8 MiB)
)

// Pack reads the whole payload from payload, and writes a signed package to
// out. Because the metadata (payload size and digest, stored size) precedes
// the payload, Pack first spools the stored (compressed or raw) payload to
// an anonymous temporary file (created in opts.TempDir and unlinked at once)
// while hashing it, then writes header, metadata, signature block and the
// spooled payload to out. Memory use does not depend on the payload size; disk use is the
// stored size once more.
//
// The output depends only on the payload bytes, opts (except Concurrency
// and TempDir) and the signature: with an Ed25519 signer the same inputs
// give the same bytes. Pack returns the metadata written. out receives
// nothing unless the payload was read completely and signed; if writing to
// out fails midway, out holds a partial package (PackPath writes to a
// temporary file and renames it only on success).
func Pack(ctx context.Context, out io.Writer, payload io.Reader, opts PackOptions, s spec.Signer) (*Metadata, error) {
	meta, err := metadataFromOptions(opts)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, fmt.Errorf("%w: no signer", ErrInvalidOptions)
	}
	spool, err := os.CreateTemp(opts.TempDir, ".upkit-spool-*")
	if err != nil {
		return nil, fmt.Errorf("imagepkg: creating the payload spool file: %w", err)
	}
	// Unlinked at once: nothing is left behind even if the process dies.
	os.Remove(spool.Name())
	defer spool.Close()
	h := sha256.New()
	src := &ctxReader{ctx: ctx, r: io.TeeReader(payload, h), progress: opts.Progress}
	var size, stored int64
	switch meta.Payload.Compression {
	case CompressionZstd:
		size, err = compress(spool, src, opts.Concurrency)
	default:
		// (hide ReadFrom, so that the 1 MiB buffer is used)
		size, err = io.CopyBuffer(struct{ io.Writer }{spool}, src, make([]byte, ReadBufferSize))
	}
	if err != nil {
		return nil, fmt.Errorf("imagepkg: storing the payload: %w", err)
	}
	if stored, err = spool.Seek(0, io.SeekCurrent); err != nil {
		return nil, fmt.Errorf("imagepkg: payload spool file: %w", err)
	}
	meta.Payload.Size = size
	meta.Payload.StoredSize = stored
	meta.Payload.SHA256 = spec.HashDigest(h).String()
	header, err := signHeader(ctx, meta, s)
	if err != nil {
		return nil, err
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("imagepkg: payload spool file: %w", err)
	}
	if _, err := out.Write(header); err != nil {
		return nil, fmt.Errorf("imagepkg: writing the package header: %w", err)
	}
	if opts.Digest != nil {
		opts.Digest.Write(header)
	}
	n, err := copyPayload(ctx, out, spool, stored, opts.Digest)
	if err != nil {
		return nil, fmt.Errorf("imagepkg: writing the payload: %w", err)
	}
	if n != stored {
		return nil, fmt.Errorf("imagepkg: writing the payload: copied %d of %d bytes", n, stored)
	}
	return meta, nil
}

// copyPayload copies the spool (size bytes, positioned at 0) to dst and, if
// digest is set, hashes it. Between two files the kernel copies
// (copy_file_range) while another goroutine hashes, so that the copy and
// the hash overlap.
func copyPayload(ctx context.Context, dst io.Writer, src *os.File, size int64, digest hash.Hash) (int64, error) {
	f, ok := dst.(*os.File)
	if !ok {
		if digest != nil {
			dst = io.MultiWriter(dst, digest)
		}
		// (hide ReadFrom/WriteTo, so that the 1 MiB buffer is used)
		return io.CopyBuffer(struct{ io.Writer }{dst}, &ctxReader{ctx: ctx, r: src}, make([]byte, ReadBufferSize))
	}
	var hashErr error
	done := make(chan struct{})
	if digest != nil {
		go func() {
			defer close(done)
			_, hashErr = io.CopyBuffer(digest, &ctxReader{ctx: ctx, r: io.NewSectionReader(src, 0, size)}, make([]byte, ReadBufferSize))
		}()
	} else {
		close(done)
	}
	// The kernel copies (copy_file_range) in steps, so that a cancelled
	// ctx stops a large copy soon.
	var n int64
	var err error
	for {
		if err = ctx.Err(); err != nil {
			break
		}
		var k int64
		k, err = io.CopyN(f, src, kernelCopyStep)
		n += k
		if err == io.EOF {
			err = nil
			break
		}
		if err != nil {
			break
		}
	}
	<-done
	if err == nil && hashErr != nil {
		err = fmt.Errorf("hashing the payload: %w", hashErr)
	}
	return n, err
}

// kernelCopyStep is how much copyPayload copies between ctx checks.
const kernelCopyStep = 64 << 20

// compress zstd-compresses src into dst and returns the uncompressed size.
func compress(dst io.Writer, src io.Reader, concurrency int) (int64, error) {
	if concurrency <= 0 {
		concurrency = runtime.GOMAXPROCS(0)
	}
	// The concurrent-blocks mode is only active with 2 or more goroutines,
	// and its output differs from the single-goroutine mode's: always use
	// it so that the bytes do not depend on the machine.
	concurrency = max(concurrency, 2)
	enc, err := zstd.NewWriter(dst,
		zstd.WithEncoderLevel(encoderLevel),
		zstd.WithWindowSize(encoderWindow),
		zstd.WithEncoderConcurrency(concurrency),
		zstd.WithConcurrentBlocks(true),
		zstd.WithEncoderCRC(true),
		zstd.WithZeroFrames(true),
	)
	if err != nil {
		return 0, fmt.Errorf("creating zstd encoder: %w", err)
	}
	n, err := enc.ReadFrom(src)
	if err != nil {
		enc.Close()
		return n, err
	}
	if err := enc.Close(); err != nil {
		return n, fmt.Errorf("zstd: %w", err)
	}
	return n, nil
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

// signHeader encodes header and metadata, signs them and returns every
// byte that precedes the payload.
func signHeader(ctx context.Context, meta *Metadata, s spec.Signer) ([]byte, error) {
	mj, err := MarshalMetadata(meta)
	if err != nil {
		return nil, err
	}
	keyID, err := hex.DecodeString(s.KeyID())
	if err != nil || len(keyID) != keyIDSize || hex.EncodeToString(keyID) != s.KeyID() {
		return nil, fmt.Errorf("%w: signer key ID %q is not 64 lowercase hex digits", ErrInvalidOptions, s.KeyID())
	}
	head := make([]byte, fixedHeaderSize, fixedHeaderSize+len(mj)+2+MaxSignatureBlock)
	copy(head, Magic)
	binary.BigEndian.PutUint16(head[8:], FormatVersion)
	binary.BigEndian.PutUint16(head[10:], 0)
	binary.BigEndian.PutUint32(head[12:], uint32(len(mj)))
	head = append(head, mj...)
	msg := signedMessage(head)
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
	return head, nil
}

// signerAlgorithm finds the signer's algorithm. A spec.PublicSigner gives
// its public key: its ID must be the signer's key ID and the signature
// must verify, before anything is written. Other signers' algorithm is
// told from the signature's encoding (an ASN.1 DER pair: ECDSA P-256; 64
// other bytes: Ed25519).
func signerAlgorithm(s spec.Signer, msg, sig []byte) (string, error) {
	if ps, ok := s.(spec.PublicSigner); ok && ps.Public() != nil {
		key := ps.Public()
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
