package manifest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/upkit/upkit/spec"
)

// Envelope is a DSSE envelope: a payload, its type and the signatures over
// PAE(PayloadType, Payload).
type Envelope struct {
	PayloadType string      // e.g. ReleasePayloadType
	Payload     []byte      // the exact signed payload bytes (decoded from base64)
	Signatures  []Signature // in file order; may be empty (an unsigned root)
}

// Signature is one DSSE signature.
type Signature struct {
	KeyID string // hex key ID of the signing key (see spec.KeyID)
	Sig   []byte // raw signature: Ed25519, or ASN.1 ECDSA P-256 over sha256(PAE)
}

type envelopeJSON struct {
	PayloadType *string          `json:"payloadType"`
	Payload     *string          `json:"payload"`
	Signatures  *[]signatureJSON `json:"signatures"`
}

type signatureJSON struct {
	KeyID *string `json:"keyid"`
	Sig   *string `json:"sig"`
}

// PAE returns the DSSE v1 pre-authentication encoding of a payload, the
// exact bytes every signature covers:
//
//	"DSSEv1" SP len(payloadType) SP payloadType SP len(payload) SP payload
//
// with lengths as ASCII decimal byte counts.
func PAE(payloadType string, payload []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(payloadType) + len(payload) + 32)
	b.WriteString("DSSEv1 ")
	b.WriteString(strconv.Itoa(len(payloadType)))
	b.WriteByte(' ')
	b.WriteString(payloadType)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(payload)))
	b.WriteByte(' ')
	b.Write(payload)
	return b.Bytes()
}

// decodeBase64 decodes canonical standard base64 (with padding, no
// whitespace, zero padding bits): the one encoding Marshal writes.
func decodeBase64(s string) ([]byte, error) {
	// The decoder skips CR and LF; with those excluded, padding required
	// and Strict (zero padding bits), each byte string has one encoding.
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("line breaks in base64")
	}
	return base64.StdEncoding.Strict().DecodeString(s)
}

// ParseEnvelope parses a DSSE envelope strictly: at most MaxDocumentSize
// bytes, one JSON object with exactly the members payloadType, payload and
// signatures (each signature exactly keyid and sig), no duplicate keys,
// canonical standard base64, at most MaxSignatures signatures, key IDs and
// payload types at most
// MaxIDLength bytes, signatures at most MaxSignatureSize bytes. No
// signature is verified. Errors wrap ErrTooLarge, ErrDuplicateKey or
// ErrMalformed.
func ParseEnvelope(data []byte) (*Envelope, error) {
	const what = "envelope"
	var w envelopeJSON
	if err := decodeStrict(data, what, &w, false); err != nil {
		return nil, err
	}
	if w.PayloadType == nil || w.Payload == nil || w.Signatures == nil {
		return nil, fmt.Errorf("%w: %s: payloadType, payload and signatures are required", ErrMalformed, what)
	}
	env := &Envelope{PayloadType: *w.PayloadType}
	if err := checkPayloadType(env.PayloadType); err != nil {
		return nil, err
	}
	p, err := decodeBase64(*w.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: payload: %v", ErrMalformed, what, err)
	}
	if len(p) == 0 {
		return nil, fmt.Errorf("%w: %s: empty payload", ErrMalformed, what)
	}
	env.Payload = p
	sigs := *w.Signatures
	if len(sigs) > MaxSignatures {
		return nil, fmt.Errorf("%w: %s: %d signatures, limit %d", ErrTooLarge, what, len(sigs), MaxSignatures)
	}
	env.Signatures = make([]Signature, 0, len(sigs))
	for i, s := range sigs {
		if s.KeyID == nil || s.Sig == nil {
			return nil, fmt.Errorf("%w: %s: signatures[%d]: keyid and sig are required", ErrMalformed, what, i)
		}
		if err := checkSigKeyID(*s.KeyID); err != nil {
			return nil, fmt.Errorf("%s: signatures[%d]: %w", what, i, err)
		}
		if len(*s.Sig) > base64.StdEncoding.EncodedLen(MaxSignatureSize) {
			return nil, fmt.Errorf("%w: %s: signatures[%d]: signature over %d bytes", ErrTooLarge, what, i, MaxSignatureSize)
		}
		sig, err := decodeBase64(*s.Sig)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: signatures[%d].sig: %v", ErrMalformed, what, i, err)
		}
		if len(sig) == 0 {
			return nil, fmt.Errorf("%w: %s: signatures[%d]: empty signature", ErrMalformed, what, i)
		}
		env.Signatures = append(env.Signatures, Signature{KeyID: *s.KeyID, Sig: sig})
	}
	return env, nil
}

func checkPayloadType(t string) error {
	if t == "" || len(t) > MaxIDLength {
		return fmt.Errorf("%w: payloadType must be 1 to %d bytes", ErrMalformed, MaxIDLength)
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] > '~' {
			return fmt.Errorf("%w: payloadType %q: only printable ASCII without spaces", ErrMalformed, t)
		}
	}
	return nil
}

// checkSigKeyID accepts the key IDs a signature may name: 1 to MaxIDLength
// printable ASCII bytes. (Root documents only list 64-hex key IDs; any other
// ID simply matches no trusted key.)
func checkSigKeyID(id string) error {
	if id == "" || len(id) > MaxIDLength {
		return fmt.Errorf("%w: keyid must be 1 to %d bytes", ErrMalformed, MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return fmt.Errorf("%w: keyid %q: only printable ASCII without spaces", ErrMalformed, id)
		}
	}
	return nil
}

// Marshal encodes the envelope as indented JSON with a trailing newline, in
// the canonical form ParseEnvelope accepts. It fails (ErrMalformed,
// ErrTooLarge) for an envelope ParseEnvelope would reject.
func (e *Envelope) Marshal() ([]byte, error) {
	if err := checkPayloadType(e.PayloadType); err != nil {
		return nil, err
	}
	if len(e.Payload) == 0 {
		return nil, fmt.Errorf("%w: envelope: empty payload", ErrMalformed)
	}
	if len(e.Signatures) > MaxSignatures {
		return nil, fmt.Errorf("%w: envelope: %d signatures, limit %d", ErrTooLarge, len(e.Signatures), MaxSignatures)
	}
	pt := e.PayloadType
	p := base64.StdEncoding.EncodeToString(e.Payload)
	sigs := make([]signatureJSON, 0, len(e.Signatures))
	for i := range e.Signatures {
		s := e.Signatures[i]
		if err := checkSigKeyID(s.KeyID); err != nil {
			return nil, err
		}
		if len(s.Sig) == 0 || len(s.Sig) > MaxSignatureSize {
			return nil, fmt.Errorf("%w: envelope: signature by %s must be 1 to %d bytes", ErrTooLarge, s.KeyID, MaxSignatureSize)
		}
		id, sig := s.KeyID, base64.StdEncoding.EncodeToString(s.Sig)
		sigs = append(sigs, signatureJSON{KeyID: &id, Sig: &sig})
	}
	out, err := json.MarshalIndent(envelopeJSON{PayloadType: &pt, Payload: &p, Signatures: &sigs}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("manifest: encoding envelope: %w", err)
	}
	out = append(out, '\n')
	if len(out) > MaxDocumentSize {
		return nil, fmt.Errorf("%w: envelope is %d bytes, limit %d", ErrTooLarge, len(out), MaxDocumentSize)
	}
	return out, nil
}

// Sign signs env with s over PAE(env.PayloadType, env.Payload). A signature
// already present with the same key ID is replaced; all other signatures
// are kept in place, so that several signers (offline machines, KMS, HSM)
// can each add theirs to the same envelope. Sign does not check that the
// key is trusted for the document: verification does. It fails with
// ErrTooLarge if the envelope already holds MaxSignatures other signatures.
func Sign(ctx context.Context, env *Envelope, s spec.Signer) error {
	if env == nil || s == nil {
		return fmt.Errorf("%w: nil envelope or signer", ErrMalformed)
	}
	id := s.KeyID()
	if err := checkSigKeyID(id); err != nil {
		return fmt.Errorf("signer: %w", err)
	}
	if err := checkPayloadType(env.PayloadType); err != nil {
		return err
	}
	if len(env.Payload) == 0 {
		return fmt.Errorf("%w: envelope: empty payload", ErrMalformed)
	}
	idx := -1
	for i := range env.Signatures {
		if env.Signatures[i].KeyID == id {
			idx = i
			break
		}
	}
	if idx < 0 && len(env.Signatures) >= MaxSignatures {
		return fmt.Errorf("%w: envelope already has %d signatures", ErrTooLarge, MaxSignatures)
	}
	sig, err := s.Sign(ctx, PAE(env.PayloadType, env.Payload))
	if err != nil {
		return fmt.Errorf("manifest: signing with key %s: %w", id, err)
	}
	if len(sig) == 0 || len(sig) > MaxSignatureSize {
		return fmt.Errorf("%w: signature by %s is %d bytes, limit %d", ErrTooLarge, id, len(sig), MaxSignatureSize)
	}
	if idx >= 0 {
		env.Signatures[idx].Sig = sig
	} else {
		env.Signatures = append(env.Signatures, Signature{KeyID: id, Sig: sig})
	}
	return nil
}

// CombineSignatures adds to dst the signatures of others, which must carry
// the same payload type and the exact same payload bytes (ErrMismatch
// otherwise): signers who each signed their own copy of an unsigned
// document offline produce one envelope. A signature identical to one
// already present (same key ID, same bytes) is not added again; two
// different signatures by one key are both kept, since only verification
// can tell which is valid (a key still counts once). It fails with
// ErrTooLarge if the result would exceed MaxSignatures; dst is then
// unchanged.
func CombineSignatures(dst *Envelope, others ...*Envelope) error {
	if dst == nil {
		return fmt.Errorf("%w: nil envelope", ErrMalformed)
	}
	sigs := slices.Clone(dst.Signatures)
	have := func(s Signature) bool {
		return slices.ContainsFunc(sigs, func(t Signature) bool { return t.KeyID == s.KeyID && bytes.Equal(t.Sig, s.Sig) })
	}
	for i, o := range others {
		if o == nil {
			return fmt.Errorf("%w: nil envelope %d", ErrMalformed, i+1)
		}
		if o.PayloadType != dst.PayloadType || !bytes.Equal(o.Payload, dst.Payload) {
			return fmt.Errorf("%w: envelope %d carries another payload (type %q)", ErrMismatch, i+1, o.PayloadType)
		}
		for _, s := range o.Signatures {
			if have(s) {
				continue
			}
			if len(sigs) >= MaxSignatures {
				return fmt.Errorf("%w: combined envelope would have more than %d signatures", ErrTooLarge, MaxSignatures)
			}
			sigs = append(sigs, Signature{KeyID: s.KeyID, Sig: slices.Clone(s.Sig)})
		}
	}
	dst.Signatures = sigs
	return nil
}
