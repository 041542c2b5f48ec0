//go:build cgo

package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ThalesIgnite/crypto11"
	"github.com/miekg/pkcs11"
	"github.com/sigstore/sigstore/pkg/signature"
)

// pkcs11MaxSessions is the most sessions one upkit operation opens on a token
// (crypto11 needs at least 2: one kept logged in, one to work with).
const pkcs11MaxSessions = 4

// LoadPKCS11 returns a Signer for the key pair a pkcs11: URI names (see
// ParsePKCS11URI). The module and PIN come from the URI (module-path,
// pin-source) or else from opts.
//
// The private key never enters this process: every signature is made by
// the token (CKM_ECDSA over the SHA-256 of the message). LoadPKCS11 logs in
// once to check the PIN and the key and to read the public key, then logs
// out; each Sign opens a session, logs in, signs and closes again, so a
// Signer holds no token resources between signatures and needs no Close.
// It keeps the PIN in memory to log in again for each signature. A Signer
// may be used from several goroutines: each signature has its own session.
//
// Errors: ErrPKCS11URI, ErrPKCS11Module (no module or it cannot be loaded),
// ErrPKCS11Token, ErrPKCS11PIN (missing or refused), ErrPKCS11Object (no
// key pair with that label/id, or several), ErrPKCS11 (anything else the
// token reports), spec.ErrUnsupportedKey (a key other than ECDSA P-256).
func LoadPKCS11(ctx context.Context, ref string, opts PKCS11Options) (*Signer, error) {
	k, err := openPKCS11(ctx, ref, opts)
	if err != nil {
		return nil, err
	}
	err = k.withKey(ctx, func(_ *crypto11.Context, key crypto11.Signer) error {
		k.pub = key.Public()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return NewSigner(k)
}

// GeneratePKCS11 creates an ECDSA P-256 key pair inside the token a pkcs11:
// URI names, labelled with the URI's object (required) and with its id, or
// a random 16-byte CKA_ID when the URI has none, and returns its Signer.
//
// The private key is created with CKA_TOKEN, CKA_PRIVATE, CKA_SIGN and
// CKA_SENSITIVE true and CKA_EXTRACTABLE, CKA_DERIVE and CKA_DECRYPT false:
// the token will use it for signatures and never reveal it. These
// attributes are read back after generation; a token that does not honour
// them gets its new key deleted and an ErrPKCS11 error. GeneratePKCS11
// refuses (ErrExists) when the token already holds a key pair with the same
// label or id, so a label always names one key.
func GeneratePKCS11(ctx context.Context, ref string, opts PKCS11Options) (*Signer, error) {
	k, err := openPKCS11(ctx, ref, opts)
	if err != nil {
		return nil, err
	}
	if k.uri.Object == "" {
		return nil, fmt.Errorf("%w: generating a key needs a label: add object=KEYLABEL to %s", ErrPKCS11URI, k.uri)
	}
	id := k.uri.ID
	if id == nil {
		id = make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return nil, err
		}
	}
	c, err := k.configure(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := k.refuseExisting(c); err != nil {
		return nil, err
	}
	public, private, err := newKeyAttributes(id, k.uri.Object)
	if err != nil {
		return nil, err
	}
	key, err := c.GenerateECDSAKeyPairWithAttributes(public, private, elliptic.P256())
	if err != nil {
		return nil, k.wrap("generating an ECDSA P-256 key pair", err)
	}
	if err := checkPrivateAttributes(c, key); err != nil {
		if derr := key.Delete(); derr != nil {
			err = fmt.Errorf("%w (deleting the key also failed: %v)", err, derr)
		}
		return nil, k.wrap("checking the new key", err)
	}
	k.pub = key.Public()
	k.uri.ID = id
	return NewSigner(k)
}

// refuseExisting fails with ErrExists if the token already holds a key
// pair with the URI's label or id.
func (k *pkcs11Key) refuseExisting(c *crypto11.Context) error {
	for _, q := range [][2][]byte{{nil, []byte(k.uri.Object)}, {k.uri.ID, nil}} {
		if q[0] == nil && q[1] == nil {
			continue
		}
		found, err := c.FindKeyPairs(q[0], q[1])
		if err != nil {
			return k.wrap("looking for existing keys", err)
		}
		if len(found) > 0 {
			what := fmt.Sprintf("labelled %q", q[1])
			if q[0] != nil {
				what = fmt.Sprintf("with id %x", q[0])
			}
			return fmt.Errorf("%w: %s already holds a key pair %s; choose another object= label (or id=)", ErrExists, k.uri.tokenDesc(), what)
		}
	}
	return nil
}

// newKeyAttributes are the attributes of a new key pair: id and label on
// both halves; a private half on the token, private, for signing only,
// sensitive and not extractable; a public half on the token, for
// verifying.
func newKeyAttributes(id []byte, label string) (public, private crypto11.AttributeSet, err error) {
	public, private = crypto11.NewAttributeSet(), crypto11.NewAttributeSet()
	for _, a := range []struct {
		t crypto11.AttributeType
		v any
	}{{crypto11.CkaId, id}, {crypto11.CkaLabel, []byte(label)}} {
		if err := public.Set(a.t, a.v); err != nil {
			return nil, nil, err
		}
		if err := private.Set(a.t, a.v); err != nil {
			return nil, nil, err
		}
	}
	for _, a := range []struct {
		set crypto11.AttributeSet
		t   crypto11.AttributeType
		v   bool
	}{
		{private, crypto11.CkaToken, true}, {private, crypto11.CkaPrivate, true}, {private, crypto11.CkaSign, true},
		{private, crypto11.CkaSensitive, true}, {private, crypto11.CkaExtractable, false},
		{private, crypto11.CkaDerive, false}, {private, crypto11.CkaDecrypt, false},
		{public, crypto11.CkaToken, true}, {public, crypto11.CkaPrivate, false}, {public, crypto11.CkaVerify, true},
	} {
		if err := a.set.Set(a.t, a.v); err != nil {
			return nil, nil, err
		}
	}
	return public, private, nil
}

// checkPrivateAttributes confirms that the private half of key is sensitive
// and not extractable, as read back from the token.
func checkPrivateAttributes(c *crypto11.Context, key crypto11.Signer) error {
	attrs, err := c.GetAttributes(key, []crypto11.AttributeType{crypto11.CkaSensitive, crypto11.CkaExtractable})
	if err != nil {
		return err
	}
	sens, ext := attrs[crypto11.CkaSensitive], attrs[crypto11.CkaExtractable]
	if sens == nil || !bytes.Equal(sens.Value, []byte{1}) {
		return errors.New("the token did not mark the private key CKA_SENSITIVE")
	}
	if ext == nil || !bytes.Equal(ext.Value, []byte{0}) {
		return errors.New("the token marked the private key CKA_EXTRACTABLE")
	}
	return nil
}

// pkcs11Key is a key pair in a token, adapted to sigstore's
// signature.Signer. It holds the token configuration (module, token, PIN)
// and the public key; never the private key.
type pkcs11Key struct {
	uri *PKCS11URI
	cfg crypto11.Config
	pub crypto.PublicKey
}

var _ signature.Signer = (*pkcs11Key)(nil)

func openPKCS11(ctx context.Context, ref string, opts PKCS11Options) (*pkcs11Key, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	u, err := ParsePKCS11URI(ref)
	if err != nil {
		return nil, err
	}
	module, err := u.modulePath(opts)
	if err != nil {
		return nil, err
	}
	pin, err := u.pin(opts)
	if err != nil {
		return nil, err
	}
	cfg := crypto11.Config{
		Path:        module,
		TokenLabel:  u.Token,
		TokenSerial: u.Serial,
		Pin:         pin,
		MaxSessions: pkcs11MaxSessions,
	}
	if u.SlotID != nil {
		n := int(*u.SlotID)
		cfg.SlotNumber = &n
	}
	return &pkcs11Key{uri: u, cfg: cfg}, nil
}

// PublicKey returns the public key read from the token when it was loaded.
func (k *pkcs11Key) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	if k.pub == nil {
		return nil, fmt.Errorf("%w: no public key for %s", ErrPKCS11Object, k.uri.describe())
	}
	return k.pub, nil
}

// SignMessage has the token sign the SHA-256 digest of message (or the
// digest given with options.WithDigest) with CKM_ECDSA and returns the
// ASN.1 DER signature. options.WithContext is honoured before the token is
// opened.
func (k *pkcs11Key) SignMessage(message io.Reader, opts ...signature.SignOption) ([]byte, error) {
	ctx := context.Background()
	for _, o := range opts {
		o.ApplyContext(&ctx)
	}
	digest, _, err := signature.ComputeDigestForSigning(message, crypto.SHA256, []crypto.Hash{crypto.SHA256}, opts...)
	if err != nil {
		return nil, err
	}
	var sig []byte
	err = k.withKey(ctx, func(_ *crypto11.Context, key crypto11.Signer) error {
		s, err := key.Sign(rand.Reader, digest, crypto.SHA256)
		if err != nil {
			return k.wrap("signing", err)
		}
		sig = s
		return nil
	})
	return sig, err
}

// withKey opens the token, logs in, finds the key pair and calls fn with
// it, then closes the token. When the public key is already known, the key
// found must still have it.
func (k *pkcs11Key) withKey(ctx context.Context, fn func(*crypto11.Context, crypto11.Signer) error) error {
	c, err := k.configure(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	keys, err := c.FindKeyPairs(k.uri.ID, k.objectLabel())
	if err != nil {
		return k.wrap("looking for the key", err)
	}
	switch len(keys) {
	case 0:
		return fmt.Errorf("%w: no key %s in %s (upkit needs a private key and a public key with the same CKA_ID); list the token's objects with OpenSC: pkcs11-tool --module %s --token-label %q --login --list-objects", ErrPKCS11Object, k.uri.keyDesc(), k.uri.tokenDesc(), k.cfg.Path, k.tokenLabelHint())
	case 1:
	default:
		return fmt.Errorf("%w: %d key pairs match %s: add id= to the key URI to pick one", ErrPKCS11Object, len(keys), k.uri.describe())
	}
	key := keys[0]
	if k.pub != nil {
		if pub, ok := key.Public().(*ecdsa.PublicKey); !ok || !pub.Equal(k.pub) {
			return fmt.Errorf("%w: %s has changed since it was loaded", ErrPKCS11Object, k.uri.describe())
		}
	}
	return fn(c, key)
}

func (k *pkcs11Key) objectLabel() []byte {
	if k.uri.Object == "" {
		return nil
	}
	return []byte(k.uri.Object)
}

func (k *pkcs11Key) tokenLabelHint() string {
	if k.uri.Token != "" {
		return k.uri.Token
	}
	return "LABEL"
}

// configure opens the module, finds the token and logs in.
func (k *pkcs11Key) configure(ctx context.Context) (*crypto11.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg := k.cfg // crypto11 fills in defaults in place
	c, err := crypto11.Configure(&cfg)
	if err == nil {
		return c, nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "could not open PKCS#11"):
		return nil, fmt.Errorf("%w: cannot load %s (from %s): not a PKCS#11 module for this system", ErrPKCS11Module, k.cfg.Path, k.uri.moduleOrigin())
	case strings.Contains(msg, "could not find PKCS#11 token"):
		return nil, fmt.Errorf("%w: no %s in module %s%s", ErrPKCS11Token, k.uri.tokenDesc(), k.cfg.Path, listTokens(k.cfg.Path))
	}
	return nil, k.wrap("opening "+k.uri.tokenDesc(), err)
}

// wrap classifies an error from crypto11 or the module.
func (k *pkcs11Key) wrap(doing string, err error) error {
	var code pkcs11.Error
	if p11Error(err, &code) {
		switch code {
		case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE:
			return fmt.Errorf("%w: %s refused the user PIN from %s: %v", ErrPKCS11PIN, k.uri.tokenDesc(), pinOrigin(k.uri), err)
		case pkcs11.CKR_PIN_LOCKED:
			return fmt.Errorf("%w: %s: the user PIN is locked after too many wrong attempts; the security officer must reset it: %v", ErrPKCS11PIN, k.uri.tokenDesc(), err)
		case pkcs11.CKR_PIN_EXPIRED:
			return fmt.Errorf("%w: %s: the user PIN has expired; set a new one with the token's tools: %v", ErrPKCS11PIN, k.uri.tokenDesc(), err)
		case pkcs11.CKR_USER_PIN_NOT_INITIALIZED:
			return fmt.Errorf("%w: %s has no user PIN yet; initialize it (softhsm2-util --init-token ... --pin)", ErrPKCS11PIN, k.uri.tokenDesc())
		}
	}
	return fmt.Errorf("%w: %s: %s: %v", ErrPKCS11, k.uri.describe(), doing, err)
}

func pinOrigin(u *PKCS11URI) string {
	if u.PINSource != "" {
		return "pin-source " + u.PINSource
	}
	return PKCS11PINEnv
}

// p11Error finds a PKCS#11 return code in err's chain. crypto11 wraps with
// github.com/pkg/errors, whose old versions offer Cause() but not Unwrap().
func p11Error(err error, code *pkcs11.Error) bool {
	for err != nil {
		if c, ok := err.(pkcs11.Error); ok {
			*code = c
			return true
		}
		switch e := err.(type) {
		case interface{ Unwrap() error }:
			err = e.Unwrap()
		case interface{ Cause() error }:
			err = e.Cause()
		default:
			return false
		}
	}
	return false
}

// listTokens names the initialized tokens a module offers, for an error
// message; it returns "" when they cannot be listed (the module is in use
// by another open session in this process, for example).
func listTokens(module string) string {
	p := pkcs11.New(module)
	if p == nil {
		return ""
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		return ""
	}
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	if err != nil {
		return ""
	}
	var names []string
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil || ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		names = append(names, fmt.Sprintf("%q (slot-id=%d, serial=%s)", ti.Label, s, ti.SerialNumber))
	}
	if len(names) == 0 {
		return " (it has no initialized token: create one, e.g. softhsm2-util --init-token --free --label LABEL)"
	}
	return "; its tokens: " + strings.Join(names, ", ")
}
