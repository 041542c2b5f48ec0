package delta_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/upkit/upkit/delta"
)

func Example() {
	ctx := context.Background()
	old := []byte(strings.Repeat("firmware 1.0: the quick brown fox jumps over the lazy dog\n", 200))
	new := bytes.ReplaceAll(old, []byte("1.0"), []byte("1.1"))

	// Release side: make the patch.
	var patch bytes.Buffer
	h, err := delta.Create(ctx, old, new, &patch, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("patch smaller than new image:", patch.Len() < len(new))

	// Device side: the header first, to check sizes and memory.
	hdr, err := delta.ReadHeader(bytes.NewReader(patch.Bytes()))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("for old image:", hdr.OldSize, "bytes,", hdr.OldDigest() == h.OldDigest())

	// Apply: old by random access, patch as a stream, new written in order.
	var out bytes.Buffer
	if _, err := delta.Apply(ctx, bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch.Bytes()), &out); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("rebuilt new image:", bytes.Equal(out.Bytes(), new))

	// The wrong base is refused before any output.
	out.Reset()
	_, err = delta.Apply(ctx, bytes.NewReader(new), int64(len(new)), bytes.NewReader(patch.Bytes()), &out)
	fmt.Println("wrong base refused:", errors.Is(err, delta.ErrWrongBase), "output bytes:", out.Len())
	// Output:
	// patch smaller than new image: true
	// for old image: 11600 bytes, true
	// rebuilt new image: true
	// wrong base refused: true output bytes: 0
}
