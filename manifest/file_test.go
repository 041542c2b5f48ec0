package manifest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Documents over the size limit are refused before parsing, with
// ErrTooLarge; a release handed where a root is expected names what it is.
func TestReadFileLimits(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, make([]byte, MaxDocumentSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadFile(big)
	wantErr(t, err, ErrTooLarge)
	_, _, err = ReadReleaseFile(big)
	wantErr(t, err, ErrTooLarge)
	rel := filepath.Join(dir, "release.json")
	env, _ := json.Marshal(map[string]any{"payloadType": ReleasePayloadType, "payload": "e30=", "signatures": []any{}})
	if err := os.WriteFile(rel, env, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = ReadRootFile(rel)
	wantErr(t, err, ErrPayloadType)
	if !strings.Contains(err.Error(), "is not a trust root") {
		t.Errorf("%v does not say what the file is not", err)
	}
}

func TestFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	renv, err := NewRootEnvelope(goodRoot())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers(1, 2) {
		if err := Sign(t.Context(), renv, s); err != nil {
			t.Fatal(err)
		}
	}
	rootPath := filepath.Join(dir, "root.json")
	if err := WriteEnvelopeFile(rootPath, renv); err != nil {
		t.Fatal(err)
	}
	if _, r, err := ReadRootFile(rootPath); err != nil || r.Version != 1 {
		t.Fatalf("ReadRootFile: %v", err)
	}
	if r, err := LoadTrustedRoot(rootPath, tNow); err != nil || r.RolesSummary() != "root keys 2 of 3, release keys 2 of 2" {
		t.Fatalf("LoadTrustedRoot: %v", err)
	}
	_, err = LoadTrustedRoot(rootPath, tRootExpires.Add(time.Second))
	wantErr(t, err, ErrExpired)
	doc, err := ParseDocument(signedRelease(t, goodRelease(), signers(4)...))
	if err != nil || doc.Release == nil || doc.Root != nil || len(doc.Envelope.Signatures) != 1 {
		t.Fatalf("ParseDocument: %+v, %v", doc, err)
	}
	_, err = ParseDocument(signedRawPayload(t, "application/x-other", []byte("{}"), signers(4)...))
	wantErr(t, err, ErrPayloadType)
	if !LooksLikeEnvelope([]byte(" \n{")) || LooksLikeEnvelope([]byte("\x89UPK")) {
		t.Fatal("LooksLikeEnvelope")
	}
}

func TestVerifyRootChainFrom(t *testing.T) {
	v1 := signedRoot(t, goodRoot(), signers(1, 2)...)
	r2 := makeRoot(2, []int{1, 2, 3}, 2, []int{4, 6}, 1)
	v2 := signedRoot(t, r2, signers(1, 2)...)
	if r, err := VerifyRootChainFrom(v1, nil, tNow); err != nil || r.Version != 1 {
		t.Fatalf("alone: %v", err)
	}
	if r, err := VerifyRootChainFrom(v1, [][]byte{v2}, tNow); err != nil || r.Version != 2 {
		t.Fatalf("chain: %v", err)
	}
	// The first root only starts a chain: its expiry counts only alone.
	late := tRootExpires.Add(time.Hour)
	_, err := VerifyRootChainFrom(v1, nil, late)
	wantErr(t, err, ErrExpired)
	_, err = VerifyRootChainFrom(v1, [][]byte{v2}, late)
	wantErr(t, err, ErrExpired) // v2 expires at the same time
	_, err = VerifyRootChainFrom(signedRoot(t, goodRoot(), signers(1)...), [][]byte{v2}, tNow)
	wantErr(t, err, ErrThreshold)
}

func TestAddDelta(t *testing.T) {
	rel := goodRelease()
	img := rel.Images[1]
	d := Delta{FromPayloadDigest: digestOf("app-0.9.tar"), Digest: digestOf("app.delta"), Size: 100}
	wantErr(t, rel.AddDelta(digestOf("other"), 10, d), ErrNotListed)
	wantErr(t, rel.AddDelta(img.Payload.Digest, img.Payload.Size+1, d), ErrMismatch)
	if err := rel.AddDelta(img.Payload.Digest, img.Payload.Size, d); err != nil || len(rel.Images[1].Deltas) != 1 {
		t.Fatalf("AddDelta: %v", err)
	}
	wantErr(t, rel.AddDelta(img.Payload.Digest, img.Payload.Size, d), ErrMalformed)
	if err := rel.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestFindReleaseFile(t *testing.T) {
	dir := t.TempDir()
	_, err := FindReleaseFile(dir)
	wantErr(t, err, ErrNoRelease)
	rel := signedRelease(t, goodRelease(), signers(4)...)
	for _, n := range []string{"a.json", "b.json"} {
		if err := os.WriteFile(filepath.Join(dir, n), rel, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "other.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = FindReleaseFile(dir)
	wantErr(t, err, ErrNoRelease)
	os.Remove(filepath.Join(dir, "b.json"))
	if p, err := FindReleaseFile(dir); err != nil || p != filepath.Join(dir, "a.json") {
		t.Fatalf("the only release: %s, %v", p, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ReleaseFileName), []byte("anything"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := FindReleaseFile(dir); err != nil || p != filepath.Join(dir, ReleaseFileName) {
		t.Fatalf("release.json: %s, %v", p, err)
	}
	if p, err := FindReleaseFile(filepath.Join(dir, "a.json")); err != nil || p != filepath.Join(dir, "a.json") {
		t.Fatalf("a file: %s, %v", p, err)
	}
}
