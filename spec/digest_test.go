package spec_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/upkit/upkit/spec"
)

func TestDigestRoundTrip(t *testing.T) {
	sum := sha256.Sum256([]byte("upkit"))
	want := "sha256:" + hex.EncodeToString(sum[:])
	d := spec.SHA256([]byte("upkit"))
	if d.String() != want || d.Hex() != want[7:] {
		t.Fatalf("String %s, Hex %s; want %s", d, d.Hex(), want)
	}
	h := sha256.New()
	h.Write([]byte("up"))
	h.Write([]byte("kit"))
	if got := spec.HashDigest(h); got != d {
		t.Fatalf("HashDigest %s, want %s", got, d)
	}
	back, err := spec.ParseDigest(want)
	if err != nil || back != d {
		t.Fatalf("ParseDigest: %s, %v", back, err)
	}
	if d.IsZero() || !(spec.Digest{}).IsZero() {
		t.Fatal("IsZero")
	}
	// JSON (text) form is the string form.
	b, err := json.Marshal(struct{ D spec.Digest }{d})
	if err != nil || string(b) != `{"D":"`+want+`"}` {
		t.Fatalf("marshal: %s, %v", b, err)
	}
	var v struct{ D spec.Digest }
	if err := json.Unmarshal(b, &v); err != nil || v.D != d {
		t.Fatalf("unmarshal: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"D":"sha256:00"}`), &v); err == nil {
		t.Fatal("short digest unmarshaled")
	}
}

func TestDigestRejects(t *testing.T) {
	good := spec.SHA256(nil).String()
	for name, s := range map[string]string{
		"empty":       "",
		"no prefix":   good[7:],
		"sha512":      "sha512:" + good[7:],
		"upper hex":   "sha256:" + strings.ToUpper(good[7:]),
		"short":       good[:70],
		"long":        good + "0",
		"not hex":     good[:70] + "g",
		"prefix case": "SHA256:" + good[7:],
		"space":       " " + good[1:],
	} {
		if spec.ValidDigest(s) {
			t.Errorf("%s: %q valid", name, s)
		}
		if err := spec.CheckDigest(s); err == nil || !strings.Contains(err.Error(), "sha256:<64 lowercase hex digits>") {
			t.Errorf("%s: CheckDigest %v", name, err)
		}
	}
	if !spec.ValidDigest(good) || spec.CheckDigest(good) != nil {
		t.Fatal("good digest refused")
	}
}

func TestKeyIDForm(t *testing.T) {
	id := spec.KeyID([]byte("der"))
	if !spec.ValidKeyID(id) || spec.ValidKeyID("sha256:"+id) || spec.ValidKeyID(strings.ToUpper(id)) || spec.ValidKeyID(id[:63]) {
		t.Fatalf("ValidKeyID disagrees with KeyID %s", id)
	}
}
