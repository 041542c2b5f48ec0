package imagepkg_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"github.com/upkit/upkit/imagepkg"
	"github.com/upkit/upkit/internal/testutil/testkeys"
)

// Pack a firmware image, then verify it and stream its payload.
func Example() {
	ctx := context.Background()
	signer := testkeys.Ed25519(1) // TEST-ONLY key; use signing.Load in real code

	var pkg bytes.Buffer
	_, err := imagepkg.Pack(ctx, &pkg, strings.NewReader("firmware image bytes"), imagepkg.PackOptions{
		Component:       "mcu-firmware",
		Type:            imagepkg.TypeFirmware,
		Version:         "2.1.0",
		SecurityVersion: 3,
		Hardware:        []string{"guardian-v2"},
		Compression:     imagepkg.CompressionZstd,
		Created:         time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		TempDir:         os.TempDir(),
	}, signer)
	if err != nil {
		log.Fatal(err)
	}

	// On the device: open, check the signature, then stream the payload.
	p, err := imagepkg.Open(&pkg)
	if err != nil {
		log.Fatal(err)
	}
	if err := p.VerifySignature(signer.Public()); err != nil {
		log.Fatal(err)
	}
	payload, err := io.ReadAll(p.Payload()) // a real device streams to flash instead
	if err != nil {
		log.Fatal(err) // ErrPayloadDigest, ErrPayloadSize, ErrTruncated, ...
	}
	m := p.Metadata
	fmt.Println(m.Component, m.Type, m.Version, m.SecurityVersion, m.Hardware)
	fmt.Println(m.Payload.Kind, m.Payload.Compression, m.Payload.Size, m.Payload.SHA256)
	fmt.Printf("%s\n", payload)
	// Output:
	// mcu-firmware firmware 2.1.0 3 [guardian-v2]
	// file zstd 20 sha256:e76368252dedf5db84fbc5a233cc102f4f909dd336748944e572d0fb5b438970
	// firmware image bytes
}
