//go:build !cgo

package signing

import (
	"context"
	"fmt"
)

// LoadPKCS11 needs cgo to load a PKCS#11 module; this build has none, so it
// checks the URI and returns ErrPKCS11Unavailable.
func LoadPKCS11(ctx context.Context, ref string, opts PKCS11Options) (*Signer, error) {
	if _, err := ParsePKCS11URI(ref); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w: cannot use %s", ErrPKCS11Unavailable, ref)
}

// GeneratePKCS11 needs cgo to load a PKCS#11 module; this build has none,
// so it checks the URI and returns ErrPKCS11Unavailable.
func GeneratePKCS11(ctx context.Context, ref string, opts PKCS11Options) (*Signer, error) {
	if _, err := ParsePKCS11URI(ref); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w: cannot use %s", ErrPKCS11Unavailable, ref)
}
