package signing_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/upkit/upkit/signing"
)

// A key pair is written once, then loaded as a Signer by reference.
func Example() {
	dir, _ := os.MkdirTemp("", "upkit-example")
	defer os.RemoveAll(dir)
	prefix := filepath.Join(dir, "release")

	priv, err := signing.Generate(signing.AlgorithmEd25519)
	if err != nil {
		fmt.Println(err)
		return
	}
	pub, err := signing.WriteKeyPair(prefix, priv, []byte("correct horse"))
	if err != nil {
		fmt.Println(err)
		return
	}
	s, err := signing.Load(context.Background(), prefix+".key", cryptoutils.StaticPasswordFunc([]byte("correct horse")))
	if err != nil {
		fmt.Println(err)
		return
	}
	sig, err := s.Sign(context.Background(), []byte("hello device"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.KeyID() == pub.ID, pub.Verify([]byte("hello device"), sig) == nil)
	// Output: true true
}
