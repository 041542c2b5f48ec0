package imagepkg_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
)

// zeroReader yields n zero bytes.
type zeroReader struct{ n int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

func zstdStream(t *testing.T, src io.Reader, opts ...zstd.EOption) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.ReadFrom(src); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func lyingPackage(t *testing.T, size int64, stored []byte) []byte {
	t.Helper()
	m := &imagepkg.Metadata{
		SchemaVersion: 1, Component: "bomb", Type: "firmware", Version: "1.0.0",
		Hardware: []string{"hw"}, Created: goldenCreated,
		Payload: imagepkg.PayloadInfo{Kind: "file", Compression: "zstd", Size: size,
			SHA256: digestOf(make([]byte, size)), StoredSize: int64(len(stored))},
	}
	pkg, err := imagepkg.BuildForTest(context.Background(), m, stored, testkeys.Ed25519(1))
	if err != nil {
		t.Fatal(err)
	}
	return pkg
}

// TestDecompressionBomb: the metadata declares 1000 bytes, the zstd stream
// expands to 1 GiB of zeros. Reading stops right after the declared size,
// with ErrPayloadSize, without decompressing (or allocating) the rest.
func TestDecompressionBomb(t *testing.T) {
	bomb := zstdStream(t, &zeroReader{n: 1 << 30}, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
	if len(bomb) > 1<<20 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	pkg := lyingPackage(t, 1000, bomb)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p, err := imagepkg.Verify(context.Background(), bytes.NewReader(pkg), testkeys.Ed25519(1).Public())
	runtime.ReadMemStats(&after)
	if !errors.Is(err, imagepkg.ErrPayloadSize) {
		t.Fatalf("got %v, want ErrPayloadSize", err)
	}
	if p == nil {
		t.Fatal("Verify returned no Reader with a payload error")
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Fatalf("verifying a bomb allocated %d MiB", alloc>>20)
	}
	// Reading it directly never yields more than the declared size.
	p, _ = imagepkg.Open(bytes.NewReader(pkg))
	got, err := io.ReadAll(p.Payload())
	if len(got) != 1000 || !errors.Is(err, imagepkg.ErrPayloadSize) {
		t.Fatalf("read %d bytes, err %v; want 1000 bytes and ErrPayloadSize", len(got), err)
	}
}

// TestPayloadShorterThanDeclared: a valid stream that ends early.
func TestPayloadShorterThanDeclared(t *testing.T) {
	pkg := lyingPackage(t, 5000, zstdStream(t, &zeroReader{n: 4000}))
	_, err := imagepkg.Verify(context.Background(), bytes.NewReader(pkg), testkeys.Ed25519(1).Public())
	if !errors.Is(err, imagepkg.ErrPayloadSize) {
		t.Fatalf("got %v, want ErrPayloadSize", err)
	}
	if err := verifyByRead(pkg, testkeys.Ed25519(1).Public()); !errors.Is(err, imagepkg.ErrPayloadSize) {
		t.Fatalf("Read: got %v, want ErrPayloadSize", err)
	}
}

// TestHugeDeclaredSize: sizes near the int64 limit are handled without
// overflow.
func TestHugeDeclaredSize(t *testing.T) {
	m := &imagepkg.Metadata{
		SchemaVersion: 1, Component: "huge", Type: "os", Version: "1.0.0",
		Hardware: []string{"hw"}, Created: goldenCreated,
		Payload: imagepkg.PayloadInfo{Kind: "file", Compression: "none", Size: math.MaxInt64,
			SHA256: digestOf(nil), StoredSize: math.MaxInt64},
	}
	pkg, err := imagepkg.BuildForTest(context.Background(), m, []byte("short"), testkeys.Ed25519(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imagepkg.Verify(context.Background(), bytes.NewReader(pkg), testkeys.Ed25519(1).Public()); !errors.Is(err, imagepkg.ErrTruncated) {
		t.Fatalf("none: got %v, want ErrTruncated", err)
	}
	m.Payload.Compression = "zstd"
	stream := zstdStream(t, &zeroReader{n: 1 << 20})
	m.Payload.StoredSize = int64(len(stream))
	pkg, _ = imagepkg.BuildForTest(context.Background(), m, stream, testkeys.Ed25519(1))
	if _, err := imagepkg.Verify(context.Background(), bytes.NewReader(pkg), testkeys.Ed25519(1).Public()); !errors.Is(err, imagepkg.ErrPayloadSize) {
		t.Fatalf("zstd: got %v, want ErrPayloadSize", err)
	}
}

// TestZstdWindowLimit: a frame asking for a 64 MiB window is refused before
// any window is allocated.
func TestZstdWindowLimit(t *testing.T) {
	stream := zstdStream(t, &zeroReader{n: 1 << 20}, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(64<<20))
	pkg := lyingPackage(t, 1<<20, stream)
	_, err := imagepkg.Verify(context.Background(), bytes.NewReader(pkg), testkeys.Ed25519(1).Public())
	if !errors.Is(err, imagepkg.ErrUnsupported) {
		t.Fatalf("got %v, want ErrUnsupported", err)
	}
}

// TestMemoryFlat streams a 64 MiB payload through Verify, from a file, and
// checks that the heap in use never grows by more than a constant (the
// 1 MiB read buffer, the 8 MiB zstd window and decoder buffers), far below
// the payload size. It measures memory, not time.
func TestMemoryFlat(t *testing.T) {
	const size = 64 << 20
	const limit = 24 << 20
	s := testkeys.Ed25519(1)
	dir := t.TempDir()
	for _, comp := range []string{imagepkg.CompressionNone, imagepkg.CompressionZstd} {
		path := filepath.Join(dir, comp+".upk")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		opts := testOptions(comp)
		opts.TempDir = dir
		if _, err := imagepkg.Pack(context.Background(), f, newGenReader(size, 1), opts, s); err != nil {
			t.Fatal(err)
		}
		f.Close()

		f, err = os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		var (
			peak uint64
			wg   sync.WaitGroup
			stop = make(chan struct{})
		)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ms runtime.MemStats
			for {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
		}()
		p, err := imagepkg.Verify(context.Background(), f, s.Public())
		close(stop)
		wg.Wait()
		f.Close()
		if err != nil {
			t.Fatalf("%s: Verify: %v", comp, err)
		}
		if p.Metadata.Payload.Size != size {
			t.Fatalf("%s: size %d", comp, p.Metadata.Payload.Size)
		}
		growth := int64(peak) - int64(base.HeapInuse)
		t.Logf("%s: stored %d bytes, heap in use grew by at most %.1f MiB while verifying %d MiB", comp, p.Metadata.Payload.StoredSize, float64(growth)/(1<<20), size>>20)
		if growth > limit {
			t.Errorf("%s: heap in use grew by %d MiB while verifying a %d MiB payload (limit %d MiB)", comp, growth>>20, size>>20, limit>>20)
		}
	}
}
