package oci_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/upkit/upkit/internal/testutil/registrytest"
	"github.com/upkit/upkit/internal/testutil/testkeys"
	"github.com/upkit/upkit/internal/testutil/testtools"
	"github.com/upkit/upkit/oci"
)

// TestCosignLayout checks, in Go, the exact layout `cosign verify` reads:
// tag sha256-<hex>.sig in the same repository, an OCI manifest whose layers
// are simple-signing payloads with the base64 signature annotation, the
// payload naming the repository and the signed digest, and an ECDSA P-256
// signature over sha256(payload).
func TestCosignLayout(t *testing.T) {
	addr := registrytest.Start(t, registrytest.Distribution)
	ctx := context.Background()
	f := newFixture(t, 4096)
	opts := testOptions(nil)
	ref := addr + "/fleet/gateway:42"
	digest, err := oci.Push(ctx, ref, f.release, opts)
	if err != nil {
		t.Fatal(err)
	}
	key := testkeys.ECDSA()
	if _, err := oci.SignCosign(ctx, ref, digest, key, opts); err != nil {
		t.Fatal(err)
	}
	// Signing twice appends a second signature, as cosign does.
	if _, err := oci.SignCosign(ctx, ref, digest, key, opts); err != nil {
		t.Fatal(err)
	}

	sigTag := addr + "/fleet/gateway:sha256-" + digest[7:] + ".sig"
	raw, err := crane.Manifest(sigTag)
	if err != nil {
		t.Fatalf("crane manifest %s: %v", sigTag, err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Config.MediaType != "application/vnd.oci.image.config.v1+json" || len(m.Layers) != 2 {
		t.Fatalf("signature manifest %s", raw)
	}
	sigs, err := oci.CosignSignatures(ctx, ref, digest, opts)
	if err != nil || len(sigs) != 2 {
		t.Fatalf("signatures %d, %v", len(sigs), err)
	}
	for i, s := range sigs {
		if m.Layers[i].MediaType != oci.MediaTypeCosignSimpleSigning {
			t.Fatalf("layer media type %s", m.Layers[i].MediaType)
		}
		want := `{"critical":{"identity":{"docker-reference":"` + addr + `/fleet/gateway"},"image":{"docker-manifest-digest":"` + digest + `"},"type":"cosign container image signature"},"optional":null}`
		if string(s.Payload) != want {
			t.Fatalf("payload\n got %s\nwant %s", s.Payload, want)
		}
		if err := key.Public().Verify(s.Payload, s.Signature); err != nil {
			t.Fatalf("signature %d does not verify: %v", i, err)
		}
	}
	// The signature tag is not a release tag.
	if tags, _ := oci.Tags(ctx, ref, opts); len(tags) != 1 || tags[0] != "42" {
		t.Fatalf("tags %v", tags)
	}
}

// TestCosignVerifyAcceptsSignature runs the real cosign CLI, which
// scripts/test-deps.sh builds; without it the test fails, naming that command.
func TestCosignVerifyAcceptsSignature(t *testing.T) {
	bin := testtools.Require(t, "cosign")
	addr := registrytest.Start(t, registrytest.OLAReg)
	ctx := context.Background()
	f := newFixture(t, 4096)
	opts := testOptions(nil)
	ref := addr + "/fleet/gateway:42"
	digest, err := oci.Push(ctx, ref, f.release, opts)
	if err != nil {
		t.Fatal(err)
	}
	key := testkeys.ECDSA()
	pub := filepath.Join(t.TempDir(), "release.pub")
	if err := os.WriteFile(pub, key.Public().PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	verify := func() (string, error) {
		cmd := exec.CommandContext(ctx, bin, "verify", "--key", pub, "--insecure-ignore-tlog",
			"--allow-http-registry", addr+"/fleet/gateway@"+digest)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "DOCKER_CONFIG="+t.TempDir(), "SIGSTORE_NO_CACHE=1", "TUF_ROOT="+t.TempDir())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := verify(); err == nil {
		t.Fatalf("cosign verified an unsigned release:\n%s", out)
	}
	if _, err := oci.SignCosign(ctx, ref, digest, key, opts); err != nil {
		t.Fatal(err)
	}
	out, err := verify()
	if err != nil {
		t.Fatalf("cosign verify: %v\n%s", err, out)
	}
	if !strings.Contains(out, digest) {
		t.Fatalf("cosign output does not name %s:\n%s", digest, out)
	}
	// A different key is refused.
	other := testkeys.ECDSA()
	if err := os.WriteFile(pub, other.Public().PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := verify(); err == nil {
		t.Fatalf("cosign accepted the wrong key:\n%s", out)
	}
}
