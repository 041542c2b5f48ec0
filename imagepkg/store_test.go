package imagepkg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// failAfter fails every write once n bytes were written.
type failAfter struct {
	n   int
	buf bytes.Buffer
}

var errDiskFull = errors.New("disk full")

func (f *failAfter) Write(b []byte) (int, error) {
	if f.buf.Len()+len(b) > f.n {
		return 0, errDiskFull
	}
	return f.buf.Write(b)
}

// brokenReader yields n bytes, then fails.
type brokenReader struct{ n int }

var errBrokenDisk = errors.New("I/O error")

func (r *brokenReader) Read(b []byte) (int, error) {
	if r.n == 0 {
		return 0, errBrokenDisk
	}
	k := min(len(b), r.n)
	for i := range b[:k] {
		b[i] = byte(i * 7)
	}
	r.n -= k
	return k, nil
}

// noGoroutinesLeft fails t if more goroutines run than before, after a
// grace period for the ones that are finishing.
func noGoroutinesLeft(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left running (was %d):\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStorePayloadFrames(t *testing.T) {
	payload := make([]byte, 3*FrameSize+12345)
	for i := range payload {
		payload[i] = byte(i / 1000)
	}
	for _, compress := range []bool{false, true} {
		for _, workers := range []int{1, 3} {
			var out bytes.Buffer
			h := sha256.New()
			n, err := storePayload(&out, bytes.NewReader(payload), h, compress, workers)
			if err != nil || n != int64(len(payload)) {
				t.Fatalf("compress %v, %d workers: %d bytes, %v", compress, workers, n, err)
			}
			if want := sha256.Sum256(payload); !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatalf("compress %v: digest differs", compress)
			}
			got := out.Bytes()
			if compress {
				dec, err := zstd.NewReader(bytes.NewReader(got))
				if err != nil {
					t.Fatal(err)
				}
				got, err = io.ReadAll(dec)
				dec.Close()
				if err != nil {
					t.Fatal(err)
				}
				// Four independent frames, each with the zstd magic.
				if c := bytes.Count(out.Bytes(), []byte{0x28, 0xb5, 0x2f, 0xfd}); c < 4 {
					t.Fatalf("%d frame magics, want at least 4", c)
				}
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("compress %v, %d workers: stored payload does not give the payload back", compress, workers)
			}
		}
	}
}

func TestStorePayloadEmpty(t *testing.T) {
	var out bytes.Buffer
	n, err := storePayload(&out, bytes.NewReader(nil), sha256.New(), true, 2)
	if err != nil || n != 0 {
		t.Fatal(n, err)
	}
	if !bytes.HasPrefix(out.Bytes(), []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Fatalf("empty payload: %x, want one empty zstd frame", out.Bytes())
	}
}

// A failing write or read stops every goroutine and returns that error.
func TestStorePayloadErrors(t *testing.T) {
	before := runtime.NumGoroutine()
	big := bytes.Repeat([]byte("abc"), 6*FrameSize)
	for _, compress := range []bool{false, true} {
		w := &failAfter{n: 100} // less than one frame, compressed or not
		if _, err := storePayload(w, bytes.NewReader(big), sha256.New(), compress, 2); !errors.Is(err, errDiskFull) {
			t.Fatalf("compress %v: failing writer: %v", compress, err)
		}
		if _, err := storePayload(io.Discard, &brokenReader{n: 2*FrameSize + 5}, sha256.New(), compress, 2); !errors.Is(err, errBrokenDisk) {
			t.Fatalf("compress %v: failing reader: %v", compress, err)
		}
	}
	noGoroutinesLeft(t, before)
}

// An uncompressed file payload is copied by the kernel and hashed apart:
// the result must be the bytes hashed, and a file that changes meanwhile
// is refused.
func TestCopyFileHashed(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	payload := bytes.Repeat([]byte("0123456789abcdef"), 3*ReadBufferSize/16+7)
	if err := os.WriteFile(in, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := dst.Seek(100, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := copyFileHashed(context.Background(), dst, src, h, nil)
	if err != nil || n != int64(len(payload)) {
		t.Fatalf("copied %d, %v", n, err)
	}
	got, _ := os.ReadFile(dst.Name())
	if want := sha256.Sum256(payload); !bytes.Equal(got[100:], payload) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("copy or hash differs from the input")
	}

	// The input grows while it is being hashed.
	src.Seek(0, io.SeekStart)
	dst.Seek(100, io.SeekStart)
	grown := false
	_, err = copyFileHashed(context.Background(), dst, src, sha256.New(), func(int64) {
		if !grown {
			grown = true
			f, _ := os.OpenFile(in, os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("more"))
			f.Close()
		}
	})
	if err == nil || !strings.Contains(err.Error(), "changed while being packed") {
		t.Fatalf("input changed during the copy: %v", err)
	}

	// A cancelled context stops both the copy and the hash.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	src.Seek(0, io.SeekStart)
	if _, err := copyFileHashed(ctx, dst, src, sha256.New(), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
