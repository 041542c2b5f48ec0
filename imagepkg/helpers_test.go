package imagepkg_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/spec"
)

// goldenCreated is the fixed creation time of test packages.
var goldenCreated = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testOptions(compression string) imagepkg.PackOptions {
	return imagepkg.PackOptions{
		Component:       "rootfs",
		Type:            imagepkg.TypeOS,
		Version:         "1.2.3-rc.1+build.5",
		SecurityVersion: 7,
		Hardware:        []string{"rpi4", "imx8mm-evk"},
		Compression:     compression,
		Created:         goldenCreated,
	}
}

// pack packs payload in memory with signer s.
func pack(t testing.TB, payload []byte, opts imagepkg.PackOptions, s spec.Signer) []byte {
	t.Helper()
	if opts.TempDir == "" {
		opts.TempDir = t.TempDir()
	}
	var out bytes.Buffer
	if _, err := imagepkg.Pack(context.Background(), &out, bytes.NewReader(payload), opts, s); err != nil {
		t.Fatalf("Pack: %v", err)
	}
	return out.Bytes()
}

// mixedPayload returns n deterministic bytes: alternating blocks of
// pseudo-random bytes, repetitive text and zeros.
func mixedPayload(n int, seed uint64) []byte {
	b := make([]byte, 0, n)
	r := rand.New(rand.NewPCG(seed, 1))
	text := []byte("upkit test payload: the quick brown fox jumps over the lazy dog 0123456789\n")
	for len(b) < n {
		chunk := min(n-len(b), 4096+r.IntN(60000))
		switch r.IntN(3) {
		case 0:
			for i := 0; i < chunk; i++ {
				b = append(b, byte(r.Uint32()))
			}
		case 1:
			for i := 0; i < chunk; i++ {
				b = append(b, text[i%len(text)])
			}
		default:
			b = append(b, make([]byte, chunk)...)
		}
	}
	return b
}

// genReader streams n deterministic bytes without holding them: 1 MiB
// stripes of pseudo-random bytes, repeated text and zeros, in turn.
type genReader struct {
	rng       *rand.ChaCha8
	remaining int64
	off       int64
}

func newGenReader(n int64, seed byte) *genReader {
	var s [32]byte
	s[0] = seed
	return &genReader{rng: rand.NewChaCha8(s), remaining: n}
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.remaining <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.remaining {
		p = p[:g.remaining]
	}
	const stripe = 1 << 20
	const text = "upkit streaming payload text\n"
	done := 0
	for done < len(p) {
		n := min(len(p)-done, int(stripe-g.off%stripe))
		seg := p[done : done+n]
		switch (g.off / stripe) % 3 {
		case 0:
			g.rng.Read(seg)
		case 1:
			for i := range seg {
				seg[i] = text[(g.off+int64(i))%int64(len(text))]
			}
		default:
			clear(seg)
		}
		done += n
		g.off += int64(n)
	}
	g.remaining -= int64(len(p))
	return len(p), nil
}
