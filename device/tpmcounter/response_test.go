package tpmcounter

import (
	"bytes"
	"testing"
)

// TestCheckResponse: a response read from a device is taken only when its
// header states the size read.
func TestCheckResponse(t *testing.T) {
	ok := []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0}
	if _, err := checkResponse(ok); err != nil {
		t.Fatalf("a 10-byte success response: %v", err)
	}
	for name, b := range map[string][]byte{
		"short":        ok[:9],
		"size too big": {0x80, 0x01, 0, 0, 0, 11, 0, 0, 0, 0},
		"size small":   append(bytes.Clone(ok), 0),
	} {
		if _, err := checkResponse(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
