package partslots

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"unsafe"
)

// directAlign is the alignment of direct reads: offsets, lengths and
// memory. 4096 covers logical blocks of 512 and 4096 bytes.
const directAlign = 4096

// directChunk is the most one read of the medium asks for.
const directChunk = 256 << 10

// directReader reads a block device opened with O_DIRECT, so that what it
// returns is what the medium holds, not what the kernel keeps in memory
// for the device. The difference matters for a slot that is mounted (the
// running root file system, read as a delta base or checked at commit):
// ext4, even mounted read-only, fills in block bitmaps it writes lazily in
// its buffers of the device, and a buffered read of the device returns
// those bytes, which are not on the medium and do not hash to the image
// written there. Each ReadAt reads the aligned blocks around what is asked
// into an aligned buffer and copies the part asked for.
type directReader struct {
	f   *os.File
	mu  sync.Mutex
	buf []byte // directChunk bytes at an address aligned to directAlign
}

func newDirectReader(f *os.File) *directReader {
	raw := make([]byte, directChunk+directAlign)
	shift := 0
	if rem := int(uintptr(unsafe.Pointer(&raw[0])) & (directAlign - 1)); rem != 0 {
		shift = directAlign - rem
	}
	return &directReader{f: f, buf: raw[shift : shift+directChunk]}
}

// ReadAt implements io.ReaderAt.
func (r *directReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("partslots: reading %s at negative offset %d", r.f.Name(), off)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		start := pos &^ (directAlign - 1)
		skip := int(pos - start)
		want := min(skip+len(p)-n, directChunk)
		want = (want + directAlign - 1) &^ (directAlign - 1)
		got, err := r.f.ReadAt(r.buf[:want], start)
		if got > skip {
			n += copy(p[n:], r.buf[skip:got])
		}
		if n == len(p) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if got <= skip {
			return n, io.EOF
		}
	}
	return n, nil
}

// Close closes the device.
func (r *directReader) Close() error { return r.f.Close() }

// openReader opens a slot for reading: a block device with O_DIRECT (see
// directReader), falling back to a buffered read where the device refuses
// O_DIRECT; a regular file as it is.
func openReader(path string, block bool) (io.Closer, io.ReaderAt, error) {
	if block && oDirect != 0 {
		f, err := os.OpenFile(path, os.O_RDONLY|oDirect, 0)
		if err == nil {
			r := newDirectReader(f)
			return r, r, nil
		}
		if !errors.Is(err, errDirectUnsupported) {
			return nil, nil, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	return f, f, nil
}
