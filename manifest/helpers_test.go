package manifest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/spec"
)

// Fixture: root keys 1, 2, 3 (threshold 2), release keys 4, 5 (threshold 2).
// Keys 6 and up are spares for rotations and strangers.
var (
	tCreated     = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tNow         = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	tRelExpires  = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	tRootExpires = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
)

func key(n int) *testkeys.Signer { return testkeys.Ed25519(n) }

func signers(ns ...int) []spec.Signer {
	var out []spec.Signer
	for _, n := range ns {
		out = append(out, key(n))
	}
	return out
}

func keyIDs(ns ...int) []string {
	var out []string
	for _, n := range ns {
		out = append(out, key(n).KeyID())
	}
	return out
}

// makeRoot builds a root with the given root and release key numbers.
func makeRoot(version uint64, rootKeys []int, rootThreshold int, releaseKeys []int, releaseThreshold int) *Root {
	r := &Root{
		SchemaVersion: SchemaVersion,
		Version:       version,
		Expires:       tRootExpires,
		Keys:          map[string]Key{},
		Roles: Roles{
			Root:    Role{KeyIDs: keyIDs(rootKeys...), Threshold: rootThreshold},
			Release: Role{KeyIDs: keyIDs(releaseKeys...), Threshold: releaseThreshold},
		},
	}
	for _, n := range append(append([]int{}, rootKeys...), releaseKeys...) {
		id, k := KeyOf(key(n).Public())
		r.Keys[id] = k
	}
	return r
}

func goodRoot() *Root { return makeRoot(1, []int{1, 2, 3}, 2, []int{4, 5}, 2) }

func goodRelease() *Release {
	return &Release{
		SchemaVersion: SchemaVersion,
		Product:       "acme-gateway",
		Version:       7,
		Created:       tCreated,
		Expires:       tRelExpires,
		Images: []Image{
			{
				Component:       "rootfs",
				Type:            "os",
				Version:         "2.4.1",
				SecurityVersion: 3,
				Hardware:        []string{"acme-gw100", "acme-gw200"},
				Package:         Blob{Digest: digestOf("rootfs.upk"), Size: 104857700},
				Payload:         Blob{Digest: digestOf("rootfs.img"), Size: 104857600},
				Deltas: []Delta{{
					FromPayloadDigest: digestOf("rootfs-2.4.0.img"),
					FromPackageDigest: digestOf("rootfs-2.4.0.upk"),
					Digest:            digestOf("rootfs-2.4.0-2.4.1.delta"),
					Size:              812345,
				}},
			},
			{
				Component:       "app",
				Type:            "app",
				Version:         "1.0.0-rc.1+build.5",
				SecurityVersion: 0,
				Hardware:        []string{"acme-gw100"},
				Package:         Blob{Digest: digestOf("app.upk"), Size: 2048},
				Payload:         Blob{Digest: digestOf("app.tar"), Size: 10240},
			},
		},
	}
}

// digestOf returns a fake but well-formed digest named by s.
func digestOf(s string) string {
	const hexd = "0123456789abcdef"
	var b strings.Builder
	b.WriteString("sha256:")
	h := uint64(1469598103934665603)
	for i := 0; i < 64; i++ {
		for _, c := range []byte(s) {
			h = (h ^ uint64(c)) * 1099511628211
		}
		h = (h ^ uint64(i)) * 1099511628211
		b.WriteByte(hexd[h>>60])
	}
	return b.String()
}

func signEnvelope(t testing.TB, env *Envelope, ss ...spec.Signer) []byte {
	t.Helper()
	for _, s := range ss {
		if err := Sign(context.Background(), env, s); err != nil {
			t.Fatalf("Sign: %v", err)
		}
	}
	b, err := env.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	return b
}

func signedRoot(t testing.TB, r *Root, ss ...spec.Signer) []byte {
	t.Helper()
	env, err := NewRootEnvelope(r)
	if err != nil {
		t.Fatalf("NewRootEnvelope: %v", err)
	}
	return signEnvelope(t, env, ss...)
}

func signedRelease(t testing.TB, r *Release, ss ...spec.Signer) []byte {
	t.Helper()
	env, err := NewReleaseEnvelope(r)
	if err != nil {
		t.Fatalf("NewReleaseEnvelope: %v", err)
	}
	return signEnvelope(t, env, ss...)
}

// signedRawPayload signs raw payload bytes as they are: for tests that need a
// payload NewReleaseEnvelope would refuse to produce.
func signedRawPayload(t testing.TB, payloadType string, payload []byte, ss ...spec.Signer) []byte {
	t.Helper()
	return signEnvelope(t, &Envelope{PayloadType: payloadType, Payload: payload}, ss...)
}

func payloadOf(t testing.TB, env []byte) []byte {
	t.Helper()
	e, err := ParseEnvelope(env)
	if err != nil {
		t.Fatalf("ParseEnvelope: %v", err)
	}
	return e.Payload
}

// wantErr fails unless err matches every sentinel in want.
func wantErr(t testing.TB, err error, want ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Fatalf("got error %q, want it to match %q", err, w)
		}
	}
}

// wantNotErr fails if err matches sentinel.
func wantNotErr(t testing.TB, err, sentinel error) {
	t.Helper()
	if errors.Is(err, sentinel) {
		t.Fatalf("error %q should not match %q", err, sentinel)
	}
}

func testECDSA() *testkeys.Signer { return testkeys.ECDSA() }
