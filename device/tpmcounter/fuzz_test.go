package tpmcounter

import (
	"context"
	"encoding/binary"
	"testing"
)

// replayTPM answers every command with the next of its responses.
type replayTPM struct{ rsps [][]byte }

func (r *replayTPM) Send([]byte) ([]byte, error) {
	if len(r.rsps) == 0 {
		return nil, context.Canceled
	}
	rsp := r.rsps[0]
	r.rsps = r.rsps[1:]
	return rsp, nil
}

func (r *replayTPM) Close() error { return nil }

// FuzzResponses: the TPM's responses are parsed by hand (readPublic, run,
// read). Whatever a TPM (or something posing as one) answers, Read and
// Raise return a counter or an error, never panic, and a counter they
// return came from an answer that said the index is an 8-byte counter.
func FuzzResponses(f *testing.F) {
	be := binary.BigEndian
	ok := func(tag uint16, params []byte) []byte {
		b := be.AppendUint16(nil, tag)
		b = be.AppendUint32(b, 0)
		b = be.AppendUint32(b, 0)
		if tag == tagSessions {
			b = be.AppendUint32(b, uint32(len(params)))
		}
		b = append(b, params...)
		b = append(b, 0, 0, 1, 0, 0) // the password session's response
		be.PutUint32(b[2:], uint32(len(b)))
		return b
	}
	pub := be.AppendUint16(nil, 14)
	pub = be.AppendUint32(pub, 0x01800100)
	pub = be.AppendUint16(pub, algSHA256)
	pub = be.AppendUint32(pub, counterAttributes|attrWritten)
	pub = be.AppendUint16(pub, 0)
	pub = be.AppendUint16(pub, 8)
	pub = append(pub, 0, 0)
	val := be.AppendUint16(nil, 8)
	val = be.AppendUint64(val, 5)
	f.Add(ok(tagNoSessions, pub), ok(tagSessions, val), ok(tagSessions, nil))
	f.Add([]byte{0x80, 1, 0, 0, 0, 10, 0, 0, 1, 0x8b}, ok(tagSessions, nil), ok(tagSessions, val))
	f.Fuzz(func(t *testing.T, r1, r2, r3 []byte) {
		c, err := New(Config{Indices: map[string]uint32{"rootfs": 0x01800100}, MaxStep: 4,
			Open: func() (TPM, error) { return &replayTPM{rsps: [][]byte{r1, r2, r3, r2, r3}}, nil }})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(context.Background(), "rootfs"); err == nil {
			p, perr := readPublic(&replayTPM{rsps: [][]byte{r1}}, 0x01800100)
			if perr != nil || p.attributes&ntMask != ntCounter || p.dataSize != 8 {
				t.Fatalf("Read returned a counter from %x", r1)
			}
		}
		_ = c.Raise(context.Background(), "rootfs", 3)
	})
}
