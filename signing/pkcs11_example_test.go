package signing_test

import (
	"fmt"

	"github.com/upkit/upkit/signing"
)

// A PKCS#11 key reference names a token and a key in it; the module and PIN
// usually come from UPKIT_PKCS11_MODULE and UPKIT_PKCS11_PIN.
func ExampleParsePKCS11URI() {
	u, err := signing.ParsePKCS11URI("pkcs11:token=upkit-release;object=release-2026;id=%01%02?pin-source=file:/run/secrets/hsm-pin")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("token %q, key %q, id %x, PIN from %s\n", u.Token, u.Object, u.ID, u.PINSource)

	_, err = signing.ParsePKCS11URI("pkcs11:token=upkit-release;object=release-2026?pin-value=1234")
	fmt.Println(err != nil)
	// Output:
	// token "upkit-release", key "release-2026", id 0102, PIN from file:/run/secrets/hsm-pin
	// true
}
