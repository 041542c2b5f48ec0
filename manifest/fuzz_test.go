package manifest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"
	"time"
)

func addSeeds(f *testing.F, seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	for _, name := range []string{"root.golden.json", "release.golden.json"} {
		if b, err := os.ReadFile("testdata/" + name); err == nil {
			f.Add(b)
		}
	}
}

// checkSentinel fails unless err matches one of the package's parse errors.
func checkSentinel(t *testing.T, err error) {
	t.Helper()
	for _, s := range []error{ErrMalformed, ErrTooLarge} {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("error without a sentinel: %v", err)
}

// FuzzParseEnvelope: no panics, errors carry a sentinel, and what parses
// survives Marshal -> ParseEnvelope unchanged.
func FuzzParseEnvelope(f *testing.F) {
	addSeeds(f,
		[]byte(`{"payloadType":"a","payload":"e30=","signatures":[]}`),
		[]byte(`{"payloadType":"a","payload":"e30=","signatures":[{"keyid":"k","sig":"AQ=="},{"keyid":"k","sig":"AQ=="}]}`),
		[]byte(`{"payloadType":"a","payloadType":"b","payload":"e30=","signatures":[]}`),
		[]byte(`{"payloadType":"a","payload":"e30","signatures":[]}`),
		[]byte(`{"PayloadType":"a","payload":"e30=","signatures":null} x`),
		[]byte(`{"payloadType":"a","payload":"e31=","signatures":[]}`),
		[]byte(`{"payloadType":"a","payload":"e3\r\n0=","signatures":[]}`),
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := ParseEnvelope(data)
		if err != nil {
			checkSentinel(t, err)
			return
		}
		// Canonical base64: the accepted text is the one encoding of the bytes.
		var raw struct{ Payload string }
		if err := json.Unmarshal(data, &raw); err != nil || raw.Payload != base64.StdEncoding.EncodeToString(env.Payload) {
			t.Fatalf("accepted a non-canonical payload encoding %.40q (%v)", raw.Payload, err)
		}
		out, err := env.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed envelope: %v", err)
		}
		env2, err := ParseEnvelope(out)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(env, env2) {
			t.Fatalf("round trip changed the envelope")
		}
	})
}

// FuzzParseRoot: no panics; a parsed root re-encodes (NewRootEnvelope) to a
// payload that parses to the same root.
func FuzzParseRoot(f *testing.F) {
	f.Add(payloadOf(f, signedRoot(f, goodRoot(), signers(1, 2)...)))
	f.Add([]byte(`{"schemaVersion":1,"version":1,"expires":"2027-01-01T00:00:00Z","keys":{},"roles":{"root":{"keyids":[],"threshold":1},"release":{"keyids":[],"threshold":1}}}`))
	f.Add([]byte(`{"schemaVersion":2}`))
	f.Add([]byte(`{"version":1,"version":9}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRoot(data)
		if err != nil {
			checkSentinel(t, err)
			return
		}
		env, err := NewRootEnvelope(r)
		if err != nil {
			t.Fatalf("NewRootEnvelope of a parsed root: %v", err)
		}
		r2, err := ParseRoot(env.Payload)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the root")
		}
	})
}

// FuzzParseRelease: no panics; a parsed release re-encodes to a payload that
// parses to the same release.
func FuzzParseRelease(f *testing.F) {
	f.Add(payloadOf(f, signedRelease(f, goodRelease(), signers(4, 5)...)))
	f.Add([]byte(`{"schemaVersion":1,"product":"p","version":1,"created":"2026-01-01T00:00:00Z","expires":"2026-01-02T00:00:00Z","images":[]}`))
	f.Add([]byte(`{"version":1,"version":9}`))
	f.Add([]byte(`{"schemaVersion":1,"images":[{"deltas":[{"size":-1}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRelease(data)
		if err != nil {
			checkSentinel(t, err)
			return
		}
		env, err := NewReleaseEnvelope(r)
		if err != nil {
			t.Fatalf("NewReleaseEnvelope of a parsed release: %v", err)
		}
		r2, err := ParseRelease(env.Payload)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the release")
		}
	})
}

// FuzzVerifyRelease feeds arbitrary envelopes to VerifyRelease and
// VerifyRoot against the fixture root: no panics, and nothing is accepted
// unless its payload is byte-identical to one the fixture keys signed.
func FuzzVerifyRelease(f *testing.F) {
	goodRel := signedRelease(f, goodRelease(), signers(4, 5)...)
	goodRoot2 := signedRoot(f, rotatedRoot(), signers(1, 2)...)
	f.Add(goodRel)
	f.Add(goodRoot2)
	f.Add(signedRelease(f, goodRelease(), signers(4)...))
	f.Add(bytes.Replace(goodRel, []byte(`"signatures"`), []byte(`"signatures":[],"x"`), 1))
	relPayload, rootPayload := payloadOf(f, goodRel), payloadOf(f, goodRoot2)
	now := time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		root := goodRoot()
		if _, err := VerifyRelease(root, data, now); err == nil {
			env, _ := ParseEnvelope(data)
			if !bytes.Equal(env.Payload, relPayload) {
				t.Fatalf("accepted a release payload nobody signed: %q", env.Payload)
			}
		}
		if _, err := VerifyRoot(root, data, now); err == nil {
			env, _ := ParseEnvelope(data)
			if !bytes.Equal(env.Payload, rootPayload) {
				t.Fatalf("accepted a root payload nobody signed: %q", env.Payload)
			}
		}
	})
}
