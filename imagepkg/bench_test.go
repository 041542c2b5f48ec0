package imagepkg_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
)

// The 1 GiB comparisons against zstd and openssl are in bench/imagepkg.sh;
// these measure the library alone on 64 MiB held in memory.
const benchSize = 64 << 20

func benchPayload(b *testing.B) []byte {
	b.Helper()
	data, err := io.ReadAll(newGenReader(benchSize, 9))
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func BenchmarkPack(b *testing.B) {
	payload := benchPayload(b)
	for _, comp := range []string{imagepkg.CompressionNone, imagepkg.CompressionZstd} {
		b.Run(comp, func(b *testing.B) {
			opts := testOptions(comp)
			opts.TempDir = b.TempDir()
			s := testkeys.Ed25519(1)
			b.SetBytes(benchSize)
			for b.Loop() {
				if _, err := imagepkg.Pack(context.Background(), io.Discard, bytes.NewReader(payload), opts, s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	payload := benchPayload(b)
	for _, comp := range []string{imagepkg.CompressionNone, imagepkg.CompressionZstd} {
		b.Run(comp, func(b *testing.B) {
			s := testkeys.Ed25519(1)
			pkg := pack(b, payload, testOptions(comp), s)
			b.SetBytes(benchSize)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := imagepkg.Verify(context.Background(), bytes.NewReader(pkg), s.Public()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
