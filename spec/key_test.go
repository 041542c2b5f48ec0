package spec_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/spec"
)

func TestKeyIDIsSHA256OfDER(t *testing.T) {
	for _, s := range []*testkeys.Signer{testkeys.Ed25519(1), testkeys.ECDSA()} {
		k := s.Public()
		der, err := x509.MarshalPKIXPublicKey(s.Private().Public())
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(der)
		if want := hex.EncodeToString(sum[:]); k.ID != want {
			t.Fatalf("%s: ID %s, want %s", k.Algorithm, k.ID, want)
		}
		// PEM round trip keeps the ID and algorithm.
		back, err := spec.ParsePublicKeyPEM(k.PEM())
		if err != nil || back.ID != k.ID || back.Algorithm != k.Algorithm {
			t.Fatalf("%s: PEM round trip: %v", k.Algorithm, err)
		}
	}
}

func TestVerify(t *testing.T) {
	for _, s := range []*testkeys.Signer{testkeys.Ed25519(2), testkeys.ECDSA()} {
		msg := []byte("upkit")
		sig, err := s.Sign(t.Context(), msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Public().Verify(msg, sig); err != nil {
			t.Fatalf("%s: good signature refused: %v", s.Public().Algorithm, err)
		}
		sig[len(sig)/2] ^= 1
		if err := s.Public().Verify(msg, sig); !errors.Is(err, spec.ErrBadSignature) {
			t.Fatalf("%s: flipped signature: %v, want ErrBadSignature", s.Public().Algorithm, err)
		}
		if err := testkeys.Ed25519(9).Public().Verify(msg, sig); !errors.Is(err, spec.ErrBadSignature) {
			t.Fatalf("other key: %v, want ErrBadSignature", err)
		}
	}
}

func TestParsePEMRejects(t *testing.T) {
	good := testkeys.Ed25519(1).PEM()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der384, _ := x509.MarshalPKIXPublicKey(p384.Public())
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	derRSA, _ := x509.MarshalPKIXPublicKey(rsaKey.Public())
	for name, tc := range map[string]struct {
		data []byte
		want error
	}{
		"empty":          {nil, spec.ErrBadPEM},
		"not PEM":        {[]byte("hello"), spec.ErrBadPEM},
		"private type":   {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), spec.ErrBadPEM},
		"garbage DER":    {pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}), spec.ErrBadPEM},
		"trailing data":  {append(append([]byte{}, good...), "x"...), spec.ErrBadPEM},
		"too large":      {make([]byte, spec.MaxPEMSize+1), spec.ErrBadPEM},
		"P-384":          {pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der384}), spec.ErrUnsupportedKey},
		"RSA":            {pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: derRSA}), spec.ErrUnsupportedKey},
		"two PEM blocks": {append(append([]byte{}, good...), good...), spec.ErrBadPEM},
	} {
		if _, err := spec.ParsePublicKeyPEM(tc.data); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
	// Whitespace after the block is fine.
	if _, err := spec.ParsePublicKeyPEM(append(append([]byte{}, good...), "\n \n"...)); err != nil {
		t.Errorf("trailing newline refused: %v", err)
	}
}
