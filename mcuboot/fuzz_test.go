package mcuboot_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/mcuboot"
)

// FuzzParse feeds arbitrary bytes to the parser and the verifier: no panic,
// every error wraps a sentinel, nothing is read past the declared areas,
// and an image that verifies under the test key hashes to its SHA256 TLV
// and parses the same way again.
func FuzzParse(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join("testdata", "golden.bin"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add(golden[:40])
	f.Add(append(bytes.Clone(golden), 0xff))
	key := testkeys.Ed25519(1)
	for _, opts := range []mcuboot.Options{
		{HeaderSize: 32, PadHeader: true, SlotSize: 0x800, Confirm: true, SecurityCounter: 2},
		{HeaderSize: 32, PadHeader: true, SlotSize: 0x800, Pad: true, Align: 16, MaxSectors: 8, EraseZero: true},
		{HeaderSize: 32, PadHeader: true, SlotSize: 0x800, Test: true, OverwriteOnly: true, LoadAddr: 0x2000},
	} {
		f.Add(sign(f, []byte("tiny firmware"), opts, key))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		img, k, err := mcuboot.Verify(ctx, bytes.NewReader(data), int64(len(data)), key.Public())
		if err != nil {
			if !hasSentinel(err) {
				t.Fatalf("Verify error without sentinel: %v", err)
			}
		} else {
			if k.ID != key.KeyID() || img.End > int64(len(data)) || img.TLVOffset > img.End {
				t.Fatalf("verified image with key %s, end %d of %d", k.ID, img.End, len(data))
			}
			sum := sha256.Sum256(data[:img.TLVOffset])
			if !bytes.Equal(sum[:], img.Hash) {
				t.Fatal("verified image whose signed region does not hash to its SHA256 TLV")
			}
			again, err := mcuboot.Parse(bytes.NewReader(data), int64(len(data)))
			if err != nil || again.End != img.End || again.SecurityCounter != img.SecurityCounter {
				t.Fatalf("parsing again: %v", err)
			}
		}
		s, err := mcuboot.ParseSlot(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !hasSentinel(err) {
				t.Fatalf("ParseSlot error without sentinel: %v", err)
			}
			return
		}
		if s.End > int64(len(data)) || s.ProtectedOffset > s.TLVOffset || s.TLVOffset >= s.End {
			t.Fatalf("ParseSlot offsets %d %d %d of %d", s.ProtectedOffset, s.TLVOffset, s.End, len(data))
		}
	})
}
