package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/upkit/upkit/spec"
)

func TestGenerateWriteLoadSign(t *testing.T) {
	for _, alg := range []string{AlgorithmECDSAP256, AlgorithmEd25519} {
		t.Run(alg, func(t *testing.T) {
			dir := t.TempDir()
			priv, err := Generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			prefix := filepath.Join(dir, "release")
			k, err := WriteKeyPair(prefix, priv, []byte("hunter2"))
			if err != nil {
				t.Fatal(err)
			}
			if k.Algorithm != alg {
				t.Fatalf("algorithm %s, want %s", k.Algorithm, alg)
			}
			st, err := os.Stat(prefix + ".key")
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
			}
			s, err := Load(context.Background(), prefix+".key", cryptoutils.StaticPasswordFunc([]byte("hunter2")))
			if err != nil {
				t.Fatal(err)
			}
			if s.KeyID() != k.ID {
				t.Fatalf("loaded key ID %s, want %s", s.KeyID(), k.ID)
			}
			pub, err := LoadPublicKey(prefix + ".pub")
			if err != nil {
				t.Fatal(err)
			}
			msg := []byte("upkit test message")
			sig, err := s.Sign(context.Background(), msg)
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Verify(msg, sig); err != nil {
				t.Fatalf("stdlib verification of our signature: %v", err)
			}
			if err := pub.Verify([]byte("other"), sig); !errors.Is(err, spec.ErrBadSignature) {
				t.Fatalf("wrong message: got %v, want ErrBadSignature", err)
			}
			// Refuses to overwrite.
			if _, err := WriteKeyPair(prefix, priv, nil); !errors.Is(err, ErrExists) {
				t.Fatalf("overwrite: got %v, want ErrExists", err)
			}
		})
	}
}

func TestWrongPassword(t *testing.T) {
	dir := t.TempDir()
	priv, _ := Generate(AlgorithmECDSAP256)
	prefix := filepath.Join(dir, "k")
	if _, err := WriteKeyPair(prefix, priv, []byte("right")); err != nil {
		t.Fatal(err)
	}
	_, err := Load(context.Background(), prefix+".key", cryptoutils.StaticPasswordFunc([]byte("wrong")))
	if !errors.Is(err, ErrPassword) {
		t.Fatalf("got %v, want ErrPassword", err)
	}
}

func TestEmptyPassword(t *testing.T) {
	dir := t.TempDir()
	priv, _ := Generate(AlgorithmEd25519)
	prefix := filepath.Join(dir, "k")
	if _, err := WriteKeyPair(prefix, priv, []byte{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), prefix+".key", cryptoutils.StaticPasswordFunc([]byte{})); err != nil {
		t.Fatalf("empty password: %v", err)
	}
}

func TestPublicKeyIsNotASigner(t *testing.T) {
	dir := t.TempDir()
	priv, _ := Generate(AlgorithmEd25519)
	prefix := filepath.Join(dir, "k")
	if _, err := WriteKeyPair(prefix, priv, []byte{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), prefix+".pub", nil); !errors.Is(err, ErrKeyFile) {
		t.Fatalf("got %v, want ErrKeyFile", err)
	}
}

func TestUnknownKMSScheme(t *testing.T) {
	_, err := Load(context.Background(), "nosuchkms://key/1", nil)
	if !errors.Is(err, ErrKeyRef) {
		t.Fatalf("got %v, want ErrKeyRef", err)
	}
}

// TestSigstoreInterop checks that key files are interchangeable with
// sigstore's (cosign's) loader in both directions.
func TestSigstoreInterop(t *testing.T) {
	pw := []byte("interop")
	pf := cryptoutils.StaticPasswordFunc(pw)
	dir := t.TempDir()

	// upkit -> sigstore
	priv, _ := Generate(AlgorithmECDSAP256)
	k, err := WriteKeyPair(filepath.Join(dir, "upkit"), priv, pw)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadSignerFromPEMFile(filepath.Join(dir, "upkit.key"), crypto.SHA256, pf)
	if err != nil {
		t.Fatalf("sigstore cannot load upkit's key: %v", err)
	}
	got, err := sv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := cryptoutils.EqualKeys(got, priv.Public()); err != nil {
		t.Fatalf("sigstore loaded a different key: %v", err)
	}
	pubPEM, _ := os.ReadFile(filepath.Join(dir, "upkit.pub"))
	spub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
	if err != nil || cryptoutils.EqualKeys(spub, priv.Public()) != nil {
		t.Fatalf("sigstore cannot read upkit's public key: %v", err)
	}
	_ = k

	// sigstore -> upkit (cosign generate-key-pair writes this format)
	privPEM, pubPEM2, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), pf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cosign.key"), privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(context.Background(), filepath.Join(dir, "cosign.key"), pf)
	if err != nil {
		t.Fatalf("upkit cannot load sigstore's key: %v", err)
	}
	ck, err := spec.ParsePublicKeyPEM(pubPEM2)
	if err != nil {
		t.Fatal(err)
	}
	if ck.ID != s.KeyID() {
		t.Fatalf("key IDs differ: %s vs %s", ck.ID, s.KeyID())
	}
	msg := []byte("cross-signed")
	sig, err := s.Sign(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	ver, err := signature.LoadVerifier(ck.Public, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := ver.VerifySignature(bytesReader(sig), bytesReader(msg)); err != nil {
		t.Fatalf("sigstore rejects upkit's signature: %v", err)
	}
}

func TestUnsupportedKey(t *testing.T) {
	priv, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := FromPrivateKey(priv); !errors.Is(err, spec.ErrUnsupportedKey) {
		t.Fatalf("P-384: got %v, want ErrUnsupportedKey", err)
	}
	if _, err := Generate("rsa-2048"); !errors.Is(err, ErrAlgorithm) {
		t.Fatalf("rsa: got %v, want ErrAlgorithm", err)
	}
}

func TestPublicKeyOf(t *testing.T) {
	prefix, k := writeKey(t, AlgorithmECDSAP256, "pw")
	dir := filepath.Dir(prefix)
	pf := func(bool) ([]byte, error) { return []byte("pw"), nil }
	for _, ref := range []string{prefix + ".pub", prefix + ".key"} {
		if got, err := PublicKeyOf(context.Background(), ref, pf); err != nil || got.ID != k.ID {
			t.Errorf("%s: %v", ref, err)
		}
	}
	if _, err := PublicKeyOf(context.Background(), filepath.Join(dir, "missing"), pf); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
