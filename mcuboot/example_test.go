package mcuboot_test

import (
	"bytes"
	"context"
	"fmt"
	"log"

	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/mcuboot"
)

// Sign a firmware binary as imgtool sign would, then verify it as MCUboot
// does before booting it.
func Example() {
	ctx := context.Background()
	signer := testkeys.Ed25519(1) // TEST-ONLY key; use signing.Load in real code
	version, err := mcuboot.ParseVersion("1.4.0+17")
	if err != nil {
		log.Fatal(err)
	}
	image, err := mcuboot.Sign(ctx, bytes.NewReader([]byte("firmware code")), mcuboot.Options{
		Version:         version,
		SecurityCounter: 3,      // the package's security version
		HeaderSize:      0x200,  // imgtool -H
		PadHeader:       true,   // imgtool --pad-header
		SlotSize:        0x8000, // imgtool -S
	}, signer)
	if err != nil {
		log.Fatal(err)
	}

	img, key, err := mcuboot.Verify(ctx, bytes.NewReader(image), int64(len(image)), signer.Public())
	if err != nil {
		log.Fatal(err) // ErrHash, ErrUnknownKey, ErrSignature, ...
	}
	if err := img.CheckSecurityCounter(3); err != nil {
		log.Fatal(err) // ErrSecurityCounter: below what the MCU already runs
	}
	fmt.Println(img.Header.Version, img.SecurityCounter, img.Algorithm(), key.ID == signer.KeyID())
	// Output: 1.4.0+17 3 ed25519 true
}
