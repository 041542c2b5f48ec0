package device_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/upkit/upkit/device"
)

// seedState is a valid encoded state with an installed image and a pending
// update: the seed both state fuzz targets start from.
func seedState(f *testing.F) []byte {
	good, err := device.EncodeState(&device.State{
		RootEnvelope: []byte(`{"payloadType":"x"}`), RootVersion: 1, Product: "gw", ReleaseVersion: 3,
		NewestCreated:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		SecurityCounters: map[string]uint64{"rootfs": 2},
		Installed: map[string]device.InstalledImage{"rootfs": {Version: "1.0.0", SecurityVersion: 2,
			PayloadDigest: "sha256:" + string(bytes.Repeat([]byte("a"), 64)), PayloadSize: 10, Slot: device.SlotA}},
		Pending: &device.Pending{Product: "gw", ReleaseVersion: 4, Images: map[string]device.InstalledImage{
			"app": {Version: "2.0.0", SecurityVersion: 1, PayloadDigest: "sha256:" + string(bytes.Repeat([]byte("b"), 64)), PayloadSize: 7, Slot: device.SlotB},
		}},
	})
	if err != nil {
		f.Fatal(err)
	}
	return good
}

// checkDecoded holds for every input: an error wraps ErrStateCorrupt, and
// an accepted state re-encodes to a file that decodes and encodes to the
// same bytes again.
func checkDecoded(t *testing.T, st *device.State, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, device.ErrStateCorrupt) {
			t.Fatalf("error %v does not wrap ErrStateCorrupt", err)
		}
		return
	}
	once, err := device.EncodeState(st)
	if err != nil {
		t.Fatalf("accepted state does not encode: %v", err)
	}
	st2, err := device.DecodeState(once)
	if err != nil {
		t.Fatalf("re-encoded state does not decode: %v", err)
	}
	twice, err := device.EncodeState(st2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(once, twice) {
		t.Fatalf("encoding is not stable:\n%s\n%s", once, twice)
	}
}

// FuzzDecodeState: the state file comes from storage that may be damaged;
// decoding must never panic, and everything it accepts must re-encode to
// a state that decodes to the same thing (checkDecoded).
func FuzzDecodeState(f *testing.F) {
	good := seedState(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("upkit-device-state-v1\nsha256:00\n{}"))
	// The same state as written before generations (format v1).
	v1 := bytes.Replace(good, []byte("-v2\n"), []byte("-v1\n"), 1)
	v1 = bytes.Replace(v1, []byte(`"generation":0,`), nil, 1)
	_, body, _ := bytes.Cut(v1[bytes.IndexByte(v1, '\n')+1:], []byte("\n"))
	sum := sha256.Sum256(body)
	f.Add(append([]byte("upkit-device-state-v1\nsha256:"+hex.EncodeToString(sum[:])+"\n"), body...))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := device.DecodeState(data)
		checkDecoded(t, st, err)
	})
}

// FuzzDecodeStateBody fuzzes what FuzzDecodeState can hardly reach: the
// JSON body and its validation. A mutated body almost never matches the
// checksum line, so here each input is framed with the magic line and its
// correct checksum before decoding, as a state written by a buggy or older
// device would be. Same properties (checkDecoded).
func FuzzDecodeStateBody(f *testing.F) {
	good := seedState(f)
	magic := good[:bytes.Index(good, []byte("sha256:"))]
	_, body, _ := bytes.Cut(good[len(magic):], []byte("\n"))
	f.Add(body)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"rootEnvelope":"eA==","installed":{"x":{}}}`))
	frame := func(body []byte) []byte {
		sum := sha256.Sum256(body)
		out := append([]byte{}, magic...)
		out = append(out, "sha256:"+hex.EncodeToString(sum[:])+"\n"...)
		return append(out, body...)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := device.DecodeState(frame(body))
		checkDecoded(t, st, err)
	})
}
