package imagepkg

import (
	"fmt"
	"hash"
	"io"
	"runtime"

	"github.com/klauspost/compress/zstd"
)

// zstd encoder settings. Changing them changes packages' bytes: the golden
// file test pins them.
const (
	encoderLevel  = zstd.SpeedDefault // about zstd -3
	encoderWindow = 2 << 20           // as zstd -3
	// FrameSize is the uncompressed size of every zstd frame Pack writes
	// but the last: the payload is cut into independent frames so that they
	// compress in parallel, with memory bounded by the frames in flight.
	FrameSize = 4 << 20
	// maxWorkers caps the default number of compressing goroutines, and so
	// the memory: every worker holds one frame's input and output.
	maxWorkers = 4
)

// frame is one FrameSize piece of the payload on its way through
// storePayload.
type frame struct {
	in, out []byte
	done    chan struct{} // closed when out is ready (or in, uncompressed)
}

// storePayload reads src to its end and writes the stored payload to dst:
// the bytes as they are, or (compress) each FrameSize piece as an
// independent zstd frame. Every byte read is hashed into h, in order, once.
// It returns the number of bytes read.
//
// Three kinds of goroutines work on a fixed ring of chunks: the reader
// (reads and hashes), workers (compress; none when storing as is) and the
// caller, who writes in order. Memory is the ring: (workers+2) chunks of
// FrameSize input and, compressed, about as much output, whatever the
// payload size. The bytes written depend only on the payload: frames are
// cut at fixed offsets and compressed independently.
func storePayload(dst io.Writer, src io.Reader, h hash.Hash, compress bool, workers int) (int64, error) {
	if workers <= 0 {
		workers = min(runtime.GOMAXPROCS(0), maxWorkers)
	}
	var encoders []*zstd.Encoder
	if compress {
		for range workers {
			enc, err := zstd.NewWriter(nil,
				zstd.WithEncoderLevel(encoderLevel),
				zstd.WithWindowSize(encoderWindow),
				zstd.WithEncoderConcurrency(1),
				zstd.WithEncoderCRC(true),
				zstd.WithSingleSegment(false),
				zstd.WithZeroFrames(true),
			)
			if err != nil {
				return 0, fmt.Errorf("creating zstd encoder: %w", err)
			}
			encoders = append(encoders, enc)
		}
	}
	nchunks := 3 // read, hash-and-queue, write
	if compress {
		nchunks = workers + 2
	}
	free := make(chan *frame, nchunks)
	for range nchunks {
		c := &frame{in: make([]byte, FrameSize)}
		if compress {
			c.out = make([]byte, 0, FrameSize+FrameSize/64+1024) // zstd's worst case for raw blocks, with room
		}
		free <- c
	}
	ordered := make(chan *frame, nchunks) // in payload order, to the writer
	work := make(chan *frame, nchunks)    // to the workers
	stop := make(chan struct{})           // closed when the writer gives up
	var total int64
	var readErr error
	go func() {
		defer close(ordered)
		defer close(work)
		for {
			var c *frame
			select {
			case c = <-free:
			case <-stop:
				return
			}
			n, err := readFrame(src, c.in[:FrameSize])
			total += int64(n)
			last := err == io.EOF || err == io.ErrUnexpectedEOF
			if err != nil && !last {
				readErr = err
				return
			}
			if n == 0 && !(compress && total == 0) {
				return // the end; an empty payload still gets one (empty) frame
			}
			c.in = c.in[:n]
			h.Write(c.in)
			c.done = make(chan struct{})
			ordered <- c
			if compress {
				work <- c
			} else {
				close(c.done)
			}
			if last {
				return
			}
		}
	}()
	for _, enc := range encoders {
		go func() {
			for c := range work {
				c.out = enc.EncodeAll(c.in, c.out[:0])
				close(c.done)
			}
		}()
	}
	var writeErr error
	for c := range ordered {
		<-c.done
		if writeErr == nil {
			b := c.in
			if compress {
				b = c.out
			}
			if writeErr = writePieces(dst, b); writeErr != nil {
				close(stop)
			}
		}
		c.in = c.in[:cap(c.in)]
		free <- c
	}
	// ordered is closed: the reader has stopped and closed work, so the
	// workers stop too once they finish the chunk they hold; none does,
	// as every chunk sent to them came back through ordered.
	if readErr != nil {
		return total, readErr
	}
	return total, writeErr
}

// ioPiece is the most one read or write system call moves. Reading a GiB
// from the page cache took 0.4 s in 1 MiB calls and up to twice that in
// 4 MiB calls here (a copy that fits the CPU's caches).
const ioPiece = 1 << 20

// readFrame is io.ReadFull in ioPiece calls.
func readFrame(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := io.ReadFull(r, b[n:min(n+ioPiece, len(b))])
		n += k
		if err != nil {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	return n, nil
}

// writePieces writes b in ioPiece calls.
func writePieces(w io.Writer, b []byte) error {
	for len(b) > 0 {
		k := min(len(b), ioPiece)
		if _, err := w.Write(b[:k]); err != nil {
			return err
		}
		b = b[k:]
	}
	return nil
}
