package manifest

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/upkit/upkit/spec"
)

// TestOfflineMultiSigner: the release is created on one machine, each
// signer signs a copy on their own machine holding only their key, and the
// copies are combined; and sequential signing of one file keeps the
// signatures already there.
func TestOfflineMultiSigner(t *testing.T) {
	ctx := context.Background()
	env, err := NewReleaseEnvelope(goodRelease())
	if err != nil {
		t.Fatal(err)
	}
	unsigned, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	signOn := func(file []byte, s spec.Signer) []byte { // one offline machine
		e, err := ParseEnvelope(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := Sign(ctx, e, s); err != nil {
			t.Fatal(err)
		}
		out, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	a, b := signOn(unsigned, key(4)), signOn(unsigned, key(5))
	for _, single := range [][]byte{a, b} {
		_, err := VerifyRelease(goodRoot(), single, tNow)
		wantErr(t, err, ErrThreshold)
	}
	ea, _ := ParseEnvelope(a)
	eb, _ := ParseEnvelope(b)
	if err := CombineSignatures(ea, eb, eb); err != nil {
		t.Fatal(err)
	}
	if len(ea.Signatures) != 2 {
		t.Fatalf("combined %d signatures, want 2", len(ea.Signatures))
	}
	combined, _ := ea.Marshal()
	if _, err := VerifyRelease(goodRoot(), combined, tNow); err != nil {
		t.Fatalf("combined: %v", err)
	}
	// Sequential: B signs the file A already signed.
	seq := signOn(a, key(5))
	if !bytes.Equal(seq, combined) {
		t.Fatalf("sequential signing should give the same envelope as combining (Ed25519 is deterministic)")
	}
	// Re-signing by the same key replaces, does not duplicate.
	again := signOn(seq, key(4))
	if !bytes.Equal(again, seq) {
		t.Fatal("re-signing by the same key changed the envelope")
	}
	// Combining a different payload is refused.
	other := goodRelease()
	other.Version++
	eo, _ := NewReleaseEnvelope(other)
	if err := CombineSignatures(ea, eo); !errors.Is(err, ErrMismatch) {
		t.Fatalf("combine different payloads: %v, want ErrMismatch", err)
	}
}

func TestRotationAddAndRemoveKeys(t *testing.T) {
	// 1 -> 2: add root key 7 and raise the threshold to 3 of 4.
	r2 := makeRoot(2, []int{1, 2, 3, 7}, 3, []int{4, 5}, 2)
	root2, err := VerifyRoot(goodRoot(), signedRoot(t, r2, signers(1, 2, 7)...), tNow)
	if err != nil {
		t.Fatal(err)
	}
	// 2 -> 3 needs 3 of root 2's keys.
	r3 := makeRoot(3, []int{7}, 1, []int{4}, 1)
	_, err = VerifyRoot(root2, signedRoot(t, r3, signers(1, 7)...), tNow)
	wantErr(t, err, ErrThreshold)
	root3, err := VerifyRoot(root2, signedRoot(t, r3, signers(1, 2, 7)...), tNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(root3.Keys) != 2 || root3.Roles.Root.Threshold != 1 {
		t.Fatalf("root 3 = %+v", root3)
	}
}

func TestParseEnvelopeStrict(t *testing.T) {
	cases := map[string]string{
		"not an object":         `[]`,
		"missing payload":       `{"payloadType":"a","signatures":[]}`,
		"null signatures":       `{"payloadType":"a","payload":"e30=","signatures":null}`,
		"unknown member":        `{"payloadType":"a","payload":"e30=","signatures":[],"x":1}`,
		"unpadded base64":       `{"payloadType":"a","payload":"e30","signatures":[]}`,
		"url base64":            `{"payloadType":"a","payload":"-_8=","signatures":[]}`,
		"base64 with newline":   `{"payloadType":"a","payload":"e3\n0=","signatures":[]}`,
		"empty payload":         `{"payloadType":"a","payload":"","signatures":[]}`,
		"empty type":            `{"payloadType":"","payload":"e30=","signatures":[]}`,
		"sig missing keyid":     `{"payloadType":"a","payload":"e30=","signatures":[{"sig":"AQ=="}]}`,
		"empty sig":             `{"payloadType":"a","payload":"e30=","signatures":[{"keyid":"k","sig":""}]}`,
		"invalid utf-8":         "{\"payloadType\":\"\xff\",\"payload\":\"e30=\",\"signatures\":[]}",
		"truncated":             `{"payloadType":"a","payload":"e30=","signatures":[`,
		"case-variant member":   `{"payloadtype":"a","payload":"e30=","signatures":[]}`,
		"number for string":     `{"payloadType":1,"payload":"e30=","signatures":[]}`,
		"keyid with space":      `{"payloadType":"a","payload":"e30=","signatures":[{"keyid":"a b","sig":"AQ=="}]}`,
		"two top-level objects": `{"payloadType":"a","payload":"e30=","signatures":[]}{}`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseEnvelope([]byte(in))
			wantErr(t, err, ErrMalformed)
		})
	}
	env, err := ParseEnvelope([]byte(` {"signatures":[{"sig":"AQ==","keyid":"k"}],"payload":"e30=","payloadType":"a"} ` + "\n"))
	if err != nil || env.PayloadType != "a" || string(env.Payload) != "{}" || len(env.Signatures) != 1 {
		t.Fatalf("valid envelope: %v %+v", err, env)
	}
}

func TestPAE(t *testing.T) {
	// The DSSE specification's test vector.
	got := string(PAE("http://example.com/HelloWorld", []byte("hello world")))
	want := "DSSEv1 29 http://example.com/HelloWorld 11 hello world"
	if got != want {
		t.Fatalf("PAE = %q, want %q", got, want)
	}
}

func TestCheckSemver(t *testing.T) {
	for _, v := range []string{"0.0.0", "1.2.3", "10.20.30", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-0.3.7", "1.0.0-x.7.z.92", "1.0.0+20130313144700", "1.0.0-beta+exp.sha.5114f85", "1.0.0-rc.1+build.5"} {
		if err := checkSemver("v", v); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	for _, v := range []string{"", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "v1.2.3", "1.2.3-", "1.2.3-01", "1.2.3+", "1.2.3-a..b", "1.2.3-é", " 1.2.3", "1.2.-3"} {
		if err := checkSemver("v", v); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: accepted", v)
		}
	}
}

func TestValidateRelease(t *testing.T) {
	cases := map[string]func(r *Release){
		"no images":           func(r *Release) { r.Images = nil },
		"version 0":           func(r *Release) { r.Version = 0 },
		"bad product":         func(r *Release) { r.Product = "-x" },
		"expires before":      func(r *Release) { r.Expires = r.Created },
		"fractional time":     func(r *Release) { r.Expires = r.Expires.Add(1) },
		"bad digest":          func(r *Release) { r.Images[0].Package.Digest = "sha256:ABC" },
		"uppercase digest":    func(r *Release) { r.Images[0].Package.Digest = strings.ToUpper(r.Images[0].Package.Digest) },
		"sha512 digest":       func(r *Release) { r.Images[0].Package.Digest = "sha512:" + r.Images[0].Package.Digest[7:] },
		"negative size":       func(r *Release) { r.Images[0].Payload.Size = -1 },
		"zero package size":   func(r *Release) { r.Images[0].Package.Size = 0 },
		"huge size":           func(r *Release) { r.Images[0].Package.Size = MaxBlobSize + 1 },
		"no hardware":         func(r *Release) { r.Images[0].Hardware = nil },
		"duplicate hardware":  func(r *Release) { r.Images[0].Hardware = []string{"a", "a"} },
		"bad semver":          func(r *Release) { r.Images[0].Version = "2.4" },
		"same package twice":  func(r *Release) { r.Images[1].Package = r.Images[0].Package },
		"delta from itself":   func(r *Release) { r.Images[0].Deltas[0].FromPayloadDigest = r.Images[0].Payload.Digest },
		"two deltas one base": func(r *Release) { r.Images[0].Deltas = append(r.Images[0].Deltas, r.Images[0].Deltas[0]) },
		"empty delta":         func(r *Release) { r.Images[0].Deltas[0].Size = 0 },
		"schema 2":            func(r *Release) { r.SchemaVersion = 2 },
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			r := goodRelease()
			breakIt(r)
			_, err := NewReleaseEnvelope(r)
			wantErr(t, err, ErrMalformed)
		})
	}
}

func TestValidateRoot(t *testing.T) {
	cases := map[string]func(r *Root){
		"version 0":             func(r *Root) { r.Version = 0 },
		"no expiry":             func(r *Root) { r.Expires = r.Expires.AddDate(-3000, 0, 0) },
		"threshold 0":           func(r *Root) { r.Roles.Release.Threshold = 0 },
		"threshold over keys":   func(r *Root) { r.Roles.Root.Threshold = 4 },
		"role key not listed":   func(r *Root) { r.Roles.Release.KeyIDs[0] = key(9).KeyID() },
		"role key twice":        func(r *Root) { r.Roles.Root.KeyIDs[1] = r.Roles.Root.KeyIDs[0] },
		"unused key":            func(r *Root) { id, k := KeyOf(key(9).Public()); r.Keys[id] = k },
		"empty role":            func(r *Root) { r.Roles.Release = Role{} },
		"bad key id":            func(r *Root) { r.Keys["nothex"] = r.Keys[key(1).KeyID()] },
		"non-canonical PEM":     func(r *Root) { k := r.Keys[key(1).KeyID()]; k.Public += "\n"; r.Keys[key(1).KeyID()] = k },
		"unsupported algorithm": func(r *Root) { k := r.Keys[key(1).KeyID()]; k.Algorithm = "rsa"; r.Keys[key(1).KeyID()] = k },
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			r := goodRoot()
			breakIt(r)
			_, err := NewRootEnvelope(r)
			wantErr(t, err, ErrMalformed)
		})
	}
}

// TestFieldNamesComplete: the case-variant check knows every JSON member
// name of the wire structs, so a field added later is covered too.
func TestFieldNamesComplete(t *testing.T) {
	known := map[string]bool{}
	for _, n := range fieldNames() {
		known[n] = true
	}
	for _, v := range []any{envelopeJSON{}, signatureJSON{}, rootWire{}, Key{}, Roles{}, Role{}, releaseWire{}, Image{}, Blob{}, Delta{}} {
		rt := reflect.TypeOf(v)
		for i := 0; i < rt.NumField(); i++ {
			name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			if !known[name] {
				t.Errorf("%s.%s: JSON name %q missing from fieldNames", rt.Name(), rt.Field(i).Name, name)
			}
		}
	}
}
