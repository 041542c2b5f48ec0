package signing

import (
	"context"
	"slices"
	"testing"

	// sigstore's in-memory test provider, registered for fakekms:// (tests only).
	_ "github.com/sigstore/sigstore/pkg/signature/kms/fake"
)

// KMS URIs still reach sigstore's provider registry next to the pkcs11:
// and key file routes of Load.
func TestKMSRefThroughLoad(t *testing.T) {
	if !slices.Contains(KMSProviders(), "fakekms://") {
		t.Fatalf("KMSProviders() = %v, want fakekms:// listed", KMSProviders())
	}
	ctx := context.Background()
	s, err := Load(ctx, "fakekms://release", nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("signed by a KMS key")
	sig, err := s.Sign(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Public().Verify(msg, sig); err != nil {
		t.Fatalf("stdlib verification of a KMS signature: %v", err)
	}
}
