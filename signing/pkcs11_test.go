//go:build cgo

package signing

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ThalesIgnite/crypto11"
	"github.com/miekg/pkcs11"

	"github.com/upkit/upkit/internal/testutil/softhsmtest"
	"github.com/upkit/upkit/spec"
)

const (
	testToken = "upkit-test"
	testPIN   = "1234-test"
)

// newToken gives the test a fresh SoftHSM2 token and the options to reach it.
func newToken(t *testing.T) PKCS11Options {
	t.Helper()
	t.Setenv(PKCS11ModuleEnv, "")
	t.Setenv(PKCS11PINEnv, "")
	return PKCS11Options{ModulePath: softhsmtest.NewToken(t, testToken, testPIN), PIN: testPIN}
}

func generate(t *testing.T, ref string, opts PKCS11Options) *Signer {
	t.Helper()
	s, err := GeneratePKCS11(context.Background(), ref, opts)
	if err != nil {
		t.Fatalf("GeneratePKCS11(%s): %v", ref, err)
	}
	return s
}

func TestPKCS11GenerateSignVerify(t *testing.T) {
	opts := newToken(t)
	ctx := context.Background()
	ref := "pkcs11:token=" + testToken + ";object=release"
	gen := generate(t, ref, opts)
	if gen.Public().Algorithm != spec.AlgorithmECDSAP256 {
		t.Fatalf("algorithm %s, want %s", gen.Public().Algorithm, spec.AlgorithmECDSAP256)
	}
	// The exported PEM is what goes into a trust root.
	pemPub, err := spec.ParsePublicKeyPEM(gen.Public().PEM())
	if err != nil {
		t.Fatal(err)
	}

	// Load through the generic entry point, configured by the environment
	// as the CLI is.
	t.Setenv(PKCS11ModuleEnv, opts.ModulePath)
	t.Setenv(PKCS11PINEnv, testPIN)
	s, err := Load(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID() != gen.KeyID() || s.KeyID() != pemPub.ID {
		t.Fatalf("key IDs: loaded %s, generated %s, exported PEM %s", s.KeyID(), gen.KeyID(), pemPub.ID)
	}
	for _, msg := range [][]byte{[]byte("upkit release manifest"), {}, make([]byte, 1<<20)} {
		sig, err := s.Sign(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := pemPub.Verify(msg, sig); err != nil {
			t.Fatalf("stdlib verification with the exported public key: %v", err)
		}
		if err := pemPub.Verify(append(msg, 'x'), sig); !errors.Is(err, spec.ErrBadSignature) {
			t.Fatalf("altered message: got %v, want ErrBadSignature", err)
		}
	}
}

// The key ID of a token key is the ID of the public key read from the
// token independently, over raw PKCS#11 (CKA_EC_POINT of the public object).
func TestPKCS11KeyIDMatchesTokenPublicKey(t *testing.T) {
	opts := newToken(t)
	s := generate(t, "pkcs11:token="+testToken+";object=root-1", opts)
	var point []byte
	withRawSession(t, opts, func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) {
		obj := findObject(t, p, sh, pkcs11.CKO_PUBLIC_KEY, "root-1")
		attrs, err := p.GetAttributeValue(sh, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
		if err != nil {
			t.Fatal(err)
		}
		if rest, err := asn1.Unmarshal(attrs[0].Value, &point); err != nil || len(rest) != 0 {
			t.Fatalf("CKA_EC_POINT is not a DER OCTET STRING: %v", err)
		}
	})
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if id := spec.KeyID(der); id != s.KeyID() {
		t.Fatalf("key ID from the token's public object %s, signer says %s", id, s.KeyID())
	}
}

// The private key is created sensitive and non-extractable (checked over
// raw PKCS#11, not through our own code), the token refuses to reveal its
// value, and signing still works: the signature can only have been made
// inside the token.
func TestPKCS11PrivateKeyNeverLeavesToken(t *testing.T) {
	opts := newToken(t)
	ctx := context.Background()
	ref := "pkcs11:token=" + testToken + ";object=release"
	generate(t, ref, opts)

	withRawSession(t, opts, func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) {
		obj := findObject(t, p, sh, pkcs11.CKO_PRIVATE_KEY, "release")
		want := map[uint]bool{
			pkcs11.CKA_TOKEN:             true,
			pkcs11.CKA_PRIVATE:           true,
			pkcs11.CKA_SIGN:              true,
			pkcs11.CKA_SENSITIVE:         true,
			pkcs11.CKA_ALWAYS_SENSITIVE:  true,
			pkcs11.CKA_EXTRACTABLE:       false,
			pkcs11.CKA_NEVER_EXTRACTABLE: true,
			pkcs11.CKA_DERIVE:            false,
			pkcs11.CKA_DECRYPT:           false,
		}
		var tmpl []*pkcs11.Attribute
		for a := range want {
			tmpl = append(tmpl, pkcs11.NewAttribute(a, nil))
		}
		got, err := p.GetAttributeValue(sh, obj, tmpl)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range got {
			if len(a.Value) != 1 || (a.Value[0] == 1) != want[a.Type] {
				t.Errorf("attribute 0x%x = %v, want %v", a.Type, a.Value, want[a.Type])
			}
		}
		_, err = p.GetAttributeValue(sh, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		if !errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)) {
			t.Fatalf("reading CKA_VALUE of the private key: got %v, want CKR_ATTRIBUTE_SENSITIVE", err)
		}
	})

	s, err := LoadPKCS11(ctx, ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := s.sv.(*pkcs11Key)
	if !ok {
		t.Fatalf("signer is a %T, want *pkcs11Key", s.sv)
	}
	// The adapter holds configuration and the public key, nothing that
	// could carry private key material.
	for i, typ := 0, reflect.TypeOf(*k); i < typ.NumField(); i++ {
		switch f := typ.Field(i); f.Name {
		case "uri", "cfg", "pub":
		default:
			t.Errorf("pkcs11Key has an unexpected field %s %s: review whether it can hold key material", f.Name, f.Type)
		}
	}
	// What signs is crypto11's handle to the token object, whose value the
	// token refuses to export.
	err = k.withKey(ctx, func(c *crypto11.Context, key crypto11.Signer) error {
		if typ := reflect.TypeOf(key); typ.Kind() != reflect.Pointer || typ.Elem().PkgPath() != "github.com/ThalesIgnite/crypto11" {
			t.Errorf("signing key is a %v, want crypto11's token object handle", typ)
		}
		_, err := c.GetAttribute(key, crypto11.CkaValue)
		if !errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)) && !strings.Contains(errString(err), "CKR_ATTRIBUTE_SENSITIVE") {
			t.Errorf("CKA_VALUE through the signing handle: got %v, want CKR_ATTRIBUTE_SENSITIVE", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("signed inside the token")
	sig, err := s.Sign(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Public().Verify(msg, sig); err != nil {
		t.Fatal(err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestPKCS11WrongPIN(t *testing.T) {
	opts := newToken(t)
	ref := "pkcs11:token=" + testToken + ";object=release"
	generate(t, ref, opts)
	opts.PIN = "not-the-pin"
	_, err := LoadPKCS11(context.Background(), ref, opts)
	if !errors.Is(err, ErrPKCS11PIN) {
		t.Fatalf("got %v, want ErrPKCS11PIN", err)
	}
	for _, want := range []string{testToken, PKCS11PINEnv, "refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "not-the-pin") {
		t.Errorf("error %q reveals the PIN", err)
	}
}

func TestPKCS11NoPIN(t *testing.T) {
	opts := newToken(t)
	opts.PIN = ""
	_, err := LoadPKCS11(context.Background(), "pkcs11:token="+testToken+";object=release", opts)
	if !errors.Is(err, ErrPKCS11PIN) || !strings.Contains(err.Error(), PKCS11PINEnv) {
		t.Fatalf("got %v, want ErrPKCS11PIN naming %s", err, PKCS11PINEnv)
	}
}

func TestPKCS11MissingObject(t *testing.T) {
	opts := newToken(t)
	generate(t, "pkcs11:token="+testToken+";object=release", opts)
	for _, ref := range []string{
		"pkcs11:token=" + testToken + ";object=relaese",
		"pkcs11:token=" + testToken + ";object=release;id=%99",
	} {
		_, err := LoadPKCS11(context.Background(), ref, opts)
		if !errors.Is(err, ErrPKCS11Object) {
			t.Fatalf("%s: got %v, want ErrPKCS11Object", ref, err)
		}
		u, _ := ParsePKCS11URI(ref)
		for _, want := range []string{`"` + u.Object + `"`, `token "` + testToken + `"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
		}
	}
}

func TestPKCS11MissingToken(t *testing.T) {
	opts := newToken(t)
	_, err := LoadPKCS11(context.Background(), "pkcs11:token=no-such-token;object=release", opts)
	if !errors.Is(err, ErrPKCS11Token) {
		t.Fatalf("got %v, want ErrPKCS11Token", err)
	}
	// The message lists the tokens that do exist.
	for _, want := range []string{`"no-such-token"`, `"` + testToken + `"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestPKCS11MissingModule(t *testing.T) {
	ref := "pkcs11:token=" + testToken + ";object=release"
	t.Run("unset", func(t *testing.T) {
		_, err := LoadPKCS11(context.Background(), ref, PKCS11Options{PIN: testPIN})
		if !errors.Is(err, ErrPKCS11Module) || !strings.Contains(err.Error(), PKCS11ModuleEnv) {
			t.Fatalf("got %v, want ErrPKCS11Module naming %s", err, PKCS11ModuleEnv)
		}
	})
	t.Run("no such file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "libnothere.so")
		_, err := LoadPKCS11(context.Background(), ref, PKCS11Options{ModulePath: missing, PIN: testPIN})
		if !errors.Is(err, ErrPKCS11Module) || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), PKCS11ModuleEnv) {
			t.Fatalf("got %v, want ErrPKCS11Module naming %s and %s", err, missing, PKCS11ModuleEnv)
		}
	})
	t.Run("not a module", func(t *testing.T) {
		bogus := filepath.Join(t.TempDir(), "bogus.so")
		if err := os.WriteFile(bogus, []byte("not a shared library"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadPKCS11(context.Background(), ref+"?module-path="+bogus, PKCS11Options{PIN: testPIN})
		if !errors.Is(err, ErrPKCS11Module) || !strings.Contains(err.Error(), bogus) {
			t.Fatalf("got %v, want ErrPKCS11Module naming %s", err, bogus)
		}
	})
}

// Module and PIN can come from the URI alone; the environment is not needed.
func TestPKCS11ModulePathAndPINSourceInURI(t *testing.T) {
	opts := newToken(t)
	pinFile := filepath.Join(t.TempDir(), "token.pin")
	if err := os.WriteFile(pinFile, []byte(testPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gen := generate(t, "pkcs11:token="+testToken+";object=k;id=%01%02", opts)
	for _, src := range []string{"file:" + pinFile, "file://" + pinFile, pinFile} {
		ref := "pkcs11:token=" + testToken + ";id=%01%02?module-path=" + opts.ModulePath + "&pin-source=" + src
		s, err := LoadPKCS11(context.Background(), ref, PKCS11Options{})
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if s.KeyID() != gen.KeyID() {
			t.Fatalf("%s: key %s, want %s", ref, s.KeyID(), gen.KeyID())
		}
	}
	// A pin-source beats the environment's PIN.
	bad := opts
	bad.PIN = "wrong"
	if _, err := LoadPKCS11(context.Background(), "pkcs11:token="+testToken+";object=k?pin-source=file:"+pinFile, bad); err != nil {
		t.Fatalf("pin-source should take precedence over PKCS11Options.PIN: %v", err)
	}
}

func TestPKCS11SlotIDAndSerial(t *testing.T) {
	opts := newToken(t)
	gen := generate(t, "pkcs11:token="+testToken+";object=k", opts)
	var slot uint
	var serial string
	withRawSession(t, opts, func(p *pkcs11.Ctx, _ pkcs11.SessionHandle) {
		slot = tokenSlot(t, p)
		ti, err := p.GetTokenInfo(slot)
		if err != nil {
			t.Fatal(err)
		}
		serial = ti.SerialNumber
	})
	u := &PKCS11URI{SlotID: &slot, Object: "k"}
	for _, ref := range []string{u.String(), "pkcs11:serial=" + serial + ";object=k"} {
		s, err := LoadPKCS11(context.Background(), ref, opts)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if s.KeyID() != gen.KeyID() {
			t.Fatalf("%s: key %s, want %s", ref, s.KeyID(), gen.KeyID())
		}
	}
}

func TestPKCS11GenerateRefusesExistingLabel(t *testing.T) {
	opts := newToken(t)
	ref := "pkcs11:token=" + testToken + ";object=release"
	first := generate(t, ref, opts)
	if _, err := GeneratePKCS11(context.Background(), ref, opts); !errors.Is(err, ErrExists) {
		t.Fatalf("second key with the same label: got %v, want ErrExists", err)
	}
	s, err := LoadPKCS11(context.Background(), ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID() != first.KeyID() {
		t.Fatal("the first key was replaced")
	}
	if _, err := GeneratePKCS11(context.Background(), "pkcs11:token="+testToken+";id=%01", opts); !errors.Is(err, ErrPKCS11URI) {
		t.Fatalf("generate without object=: got %v, want ErrPKCS11URI", err)
	}
}

func TestPKCS11CanceledContext(t *testing.T) {
	opts := newToken(t)
	ref := "pkcs11:token=" + testToken + ";object=release"
	s := generate(t, ref, opts)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Sign(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sign: got %v, want context.Canceled", err)
	}
	if _, err := LoadPKCS11(ctx, ref, opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("LoadPKCS11: got %v, want context.Canceled", err)
	}
}

// withRawSession opens the test token with plain miekg/pkcs11 (no crypto11,
// no upkit code), logs in as the user and calls fn.
func withRawSession(t *testing.T, opts PKCS11Options, fn func(*pkcs11.Ctx, pkcs11.SessionHandle)) {
	t.Helper()
	p := pkcs11.New(opts.ModulePath)
	if p == nil {
		t.Fatalf("loading %s failed", opts.ModulePath)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer p.Finalize()
	sh, err := p.OpenSession(tokenSlot(t, p), pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer p.CloseSession(sh)
	if err := p.Login(sh, pkcs11.CKU_USER, testPIN); err != nil {
		t.Fatal(err)
	}
	defer p.Logout(sh)
	fn(p, sh)
}

func tokenSlot(t *testing.T, p *pkcs11.Ctx) uint {
	t.Helper()
	slots, err := p.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if ti, err := p.GetTokenInfo(s); err == nil && ti.Label == testToken {
			return s
		}
	}
	t.Fatalf("token %q not found", testToken)
	return 0
}

func findObject(t *testing.T, p *pkcs11.Ctx, sh pkcs11.SessionHandle, class uint, label string) pkcs11.ObjectHandle {
	t.Helper()
	if err := p.FindObjectsInit(sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}); err != nil {
		t.Fatal(err)
	}
	objs, _, err := p.FindObjects(sh, 2)
	p.FindObjectsFinal(sh)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 {
		t.Fatalf("%d objects of class %d labelled %q, want 1", len(objs), class, label)
	}
	return objs[0]
}

// One Signer used from several goroutines: each signature gets its own
// session, as PKCS#11 requires.
func TestPKCS11ConcurrentSign(t *testing.T) {
	opts := newToken(t)
	s := generate(t, "pkcs11:token="+testToken+";object=release", opts)
	errs := make(chan error, 8)
	for i := range cap(errs) {
		go func() {
			msg := []byte{byte(i)}
			sig, err := s.Sign(context.Background(), msg)
			if err == nil {
				err = s.Public().Verify(msg, sig)
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// Keys made by other tools load when they are ECDSA P-256; others are
// refused with spec.ErrUnsupportedKey.
func TestPKCS11KeysMadeElsewhere(t *testing.T) {
	opts := newToken(t)
	c, err := crypto11.Configure(&crypto11.Config{Path: opts.ModulePath, TokenLabel: testToken, Pin: testPIN})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateECDSAKeyPairWithLabel([]byte{1}, []byte("p256"), elliptic.P256()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateECDSAKeyPairWithLabel([]byte{2}, []byte("p384"), elliptic.P384()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateRSAKeyPairWithLabel([]byte{3}, []byte("rsa"), 1024); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := LoadPKCS11(ctx, "pkcs11:token="+testToken+";object=p256", opts)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.Sign(ctx, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Public().Verify([]byte("m"), sig); err != nil {
		t.Fatal(err)
	}
	for _, label := range []string{"p384", "rsa"} {
		if _, err := LoadPKCS11(ctx, "pkcs11:token="+testToken+";object="+label, opts); !errors.Is(err, spec.ErrUnsupportedKey) {
			t.Errorf("%s key: got %v, want spec.ErrUnsupportedKey", label, err)
		}
	}
}
