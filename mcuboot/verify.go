package mcuboot

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/upkit/upkit/spec"
)

// hashBufferSize is the buffer Verify hashes through: memory does not grow
// with the image.
const hashBufferSize = 32 << 10

// Verify checks a parsed image the way MCUboot's bootutil does before it
// boots one, reading the signed region from r (the same data Parse read):
//
//  1. the SHA-256 of the signed region (header, body, protected TLVs)
//     equals the SHA256 TLV (ErrHash);
//  2. the image names a key (KEYHASH, or PUBKEY hashed) that is one of
//     keys (ErrUnknownKey; an unsigned image is ErrSignature);
//  3. the signature TLV is of the key's algorithm and verifies: ECDSA
//     P-256 over the digest, a strict ASN.1 DER pair, or Ed25519 over the
//     32 digest bytes (ErrSignature).
//
// It returns the key that signed. The security counter is checked
// separately (CheckSecurityCounter); the trailer is not signed and not
// checked here.
func (img *Image) Verify(ctx context.Context, r io.ReaderAt, keys ...*spec.PublicKey) (*spec.PublicKey, error) {
	digest, err := hashRegion(ctx, r, img.TLVOffset)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(digest, img.Hash) {
		return nil, fmt.Errorf("%w: signed region hashes to %x, the SHA256 TLV says %x", ErrHash, digest, img.Hash)
	}
	if img.Signature == nil {
		return nil, fmt.Errorf("%w: the image is not signed", ErrSignature)
	}
	var key *spec.PublicKey
	for _, k := range keys {
		if k != nil && k.ID == img.KeyID() {
			key = k
			break
		}
	}
	if key == nil {
		return nil, fmt.Errorf("%w: key hash %s", ErrUnknownKey, img.KeyID())
	}
	if img.PublicKey != nil && !bytes.Equal(img.PublicKey, key.DER) {
		return nil, fmt.Errorf("%w: the PUBKEY TLV is not key %s's DER form", ErrUnknownKey, key.ID)
	}
	if img.Algorithm() != key.Algorithm {
		return nil, fmt.Errorf("%w: %s signature TLV, key %s is %s", ErrSignature, TLVName(img.SignatureType), key.ID, key.Algorithm)
	}
	if err := verifyDigest(key, digest, img.Signature); err != nil {
		return nil, fmt.Errorf("%w: by key %s (%s)", ErrSignature, key.ID, key.Algorithm)
	}
	return key, nil
}

// CheckSecurityCounter refuses an image without a SEC_CNT TLV or whose
// counter is below min (MCUboot's hardware downgrade protection:
// ErrSecurityCounter).
func (img *Image) CheckSecurityCounter(min uint64) error {
	if !img.HasSecurityCounter {
		return fmt.Errorf("%w: the image has no SEC_CNT TLV", ErrSecurityCounter)
	}
	if uint64(img.SecurityCounter) < min {
		return fmt.Errorf("%w: image security counter %d is below %d", ErrSecurityCounter, img.SecurityCounter, min)
	}
	return nil
}

// Verify parses the image file of size bytes in r and verifies it against
// keys (Parse, then Image.Verify).
func Verify(ctx context.Context, r io.ReaderAt, size int64, keys ...*spec.PublicKey) (*Image, *spec.PublicKey, error) {
	img, err := Parse(r, size)
	if err != nil {
		return nil, nil, err
	}
	key, err := img.Verify(ctx, r, keys...)
	if err != nil {
		return img, nil, err
	}
	return img, key, nil
}

// hashRegion returns the SHA-256 of r's first n bytes.
func hashRegion(ctx context.Context, r io.ReaderAt, n int64) ([]byte, error) {
	h := sha256.New()
	buf := make([]byte, hashBufferSize)
	for off := int64(0); off < n; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		k := min(int64(len(buf)), n-off)
		got, err := r.ReadAt(buf[:k], off)
		if int64(got) < k {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("%w: reading the signed region at offset %d: %w", ErrTruncated, off+int64(got), err)
		}
		h.Write(buf[:k])
		off += k
	}
	return h.Sum(nil), nil
}

// verifyDigest checks an MCUboot signature over a region's SHA-256.
func verifyDigest(key *spec.PublicKey, digest, sig []byte) error {
	switch pub := key.Public.(type) {
	case *ecdsa.PublicKey:
		if !isECDSADER(sig) || !ecdsa.VerifyASN1(pub, digest, sig) {
			return spec.ErrBadSignature
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(pub, digest, sig) {
			return spec.ErrBadSignature
		}
	default:
		return spec.ErrUnsupportedKey
	}
	return nil
}
