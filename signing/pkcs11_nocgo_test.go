//go:build !cgo

package signing

import (
	"context"
	"errors"
	"os"
	"testing"
)

// Without cgo the SoftHSM2 tests (pkcs11_test.go) are not even compiled.
// That must not pass unnoticed: this test fails unless the run says, with
// UPKIT_ALLOW_NO_CGO=1, that it knowingly tests a cgo-free build.
func TestPKCS11TestsNeedCgo(t *testing.T) {
	if os.Getenv("UPKIT_ALLOW_NO_CGO") != "1" {
		t.Fatal("built without cgo, so the PKCS#11/SoftHSM2 tests did not run: build with CGO_ENABLED=1 (needs gcc: apt-get install gcc libc6-dev), or set UPKIT_ALLOW_NO_CGO=1 to test the cgo-free build on purpose")
	}
}

func TestPKCS11WithoutCgo(t *testing.T) {
	ctx := context.Background()
	if _, err := Load(ctx, "pkcs11:token=t;object=k", nil); !errors.Is(err, ErrPKCS11Unavailable) {
		t.Fatalf("Load: got %v, want ErrPKCS11Unavailable", err)
	}
	if _, err := GeneratePKCS11(ctx, "pkcs11:token=t;object=k", PKCS11Options{}); !errors.Is(err, ErrPKCS11Unavailable) {
		t.Fatalf("GeneratePKCS11: got %v, want ErrPKCS11Unavailable", err)
	}
	if _, err := LoadPKCS11(ctx, "pkcs11:token=t;object=k?pin-value=1", PKCS11Options{}); !errors.Is(err, ErrPKCS11URI) {
		t.Fatalf("bad URI: got %v, want ErrPKCS11URI", err)
	}
}
