package spec

import "context"

// Signer signs with one private key: the only signing interface of upkit.
// imagepkg.Pack, manifest.Sign and oci.SignCosign take it; signing.Signer
// (key files, KMS, PKCS#11) and the test keys implement it.
type Signer interface {
	// KeyID returns the key ID of the signing key (see KeyID): lowercase
	// hex sha256 of its DER SubjectPublicKeyInfo.
	KeyID() string
	// Sign signs message: Ed25519 over message, ECDSA P-256 over
	// sha256(message) with an ASN.1 DER signature.
	Sign(ctx context.Context, message []byte) ([]byte, error)
}

// PublicSigner is a Signer that also gives its public key. It is optional:
// where a signer implements it, imagepkg.Pack learns the algorithm from it
// and checks the key ID and the signature before writing anything.
type PublicSigner interface {
	Signer
	Public() *PublicKey
}
