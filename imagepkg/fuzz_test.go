package imagepkg_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
)

var sentinels = []error{
	imagepkg.ErrMagic, imagepkg.ErrVersion, imagepkg.ErrUnsupported, imagepkg.ErrMetadata,
	imagepkg.ErrMetadataTooLarge, imagepkg.ErrSignatureBlock, imagepkg.ErrUnknownKey,
	imagepkg.ErrSignature, imagepkg.ErrTruncated, imagepkg.ErrPayloadDigest,
	imagepkg.ErrPayloadSize, imagepkg.ErrTrailingData, imagepkg.ErrPadding,
}

func hasSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzOpen feeds arbitrary bytes to the package parser and the payload
// reader: no panic, every error wraps a sentinel, and the payload reader
// never yields more than the declared size.
func FuzzOpen(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join("testdata", "golden-v2.upk"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add(golden[:100])
	f.Add(golden[:len(golden)-1])
	f.Add(append(bytes.Clone(golden), 0))
	f.Add([]byte(imagepkg.Magic))
	v1, err := os.ReadFile(filepath.Join("testdata", "golden-v1.upk"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(v1)
	f.Add(pack(f, []byte("uncompressed payload"), testOptions("none"), testkeys.Ed25519(1)))
	key := testkeys.Ed25519(1).Public()
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := imagepkg.Verify(context.Background(), bytes.NewReader(data), key)
		if err != nil && !hasSentinel(err) {
			t.Fatalf("Verify error without sentinel: %v", err)
		}
		// Exercise the payload reader even when the signature fails.
		p, err := imagepkg.Open(bytes.NewReader(data))
		if err != nil {
			if !hasSentinel(err) {
				t.Fatalf("Open error without sentinel: %v", err)
			}
			return
		}
		if p.HeaderSize > int64(len(data)) || p.HeaderSize > imagepkg.MaxHeaderSize {
			t.Fatalf("HeaderSize %d for %d bytes", p.HeaderSize, len(data))
		}
		n, err := io.Copy(io.Discard, io.LimitReader(p.Payload(), 64<<20))
		if n > p.Metadata.Payload.Size {
			t.Fatalf("payload reader returned %d bytes, declared %d", n, p.Metadata.Payload.Size)
		}
		if err != nil && !hasSentinel(err) {
			t.Fatalf("payload error without sentinel: %v", err)
		}
		// The same through WriteTo.
		p, _ = imagepkg.Open(bytes.NewReader(data))
		cw := &capWriter{limit: 64 << 20}
		wt, ok := p.Payload().(io.WriterTo)
		if !ok {
			t.Fatal("payload reader has no WriteTo")
		}
		_, err = wt.WriteTo(cw)
		if cw.n > p.Metadata.Payload.Size {
			t.Fatalf("WriteTo wrote %d bytes, declared %d", cw.n, p.Metadata.Payload.Size)
		}
		if err != nil && !hasSentinel(err) && !errors.Is(err, errCap) {
			t.Fatalf("WriteTo error without sentinel: %v", err)
		}
	})
}

var errCap = errors.New("capWriter: limit reached")

// capWriter discards up to limit bytes, then fails.
type capWriter struct{ n, limit int64 }

func (c *capWriter) Write(b []byte) (int, error) {
	if c.n+int64(len(b)) > c.limit {
		return 0, errCap
	}
	c.n += int64(len(b))
	return len(b), nil
}
