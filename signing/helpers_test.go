package signing

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"

	"github.com/upkit/upkit/spec"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// writeKey writes a new key pair of algorithm alg, encrypted with pw, as
// dir/k.key and dir/k.pub, and returns the prefix and the public key.
func writeKey(t *testing.T, alg, pw string) (string, *spec.PublicKey) {
	t.Helper()
	priv, err := Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(t.TempDir(), "k")
	k, err := WriteKeyPair(prefix, priv, []byte(pw))
	if err != nil {
		t.Fatal(err)
	}
	return prefix, k
}
