package oci_test

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upkit/upkit/internal/testutil/registrytest"
	"github.com/upkit/upkit/oci"
)

// TestFileKeychain runs against a distribution registry with htpasswd
// authentication: a device's credentials file (docker's format, no helpers)
// lets it pull the release and its blobs; without an entry for the
// registry, or with a wrong password, it is refused; a file naming
// credential helpers is refused with a message saying so.
func TestFileKeychain(t *testing.T) {
	t.Parallel()
	addr := registrytest.StartWithAuth(t, registrytest.Distribution, "device", "s3cret")
	ctx := context.Background()
	f := newFixture(t, 64<<10)
	ref := addr + "/fleet/gateway:42"
	dir := t.TempDir()
	creds := filepath.Join(dir, "registry-auth.json")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(creds, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	opts := &oci.Options{Keychain: oci.FileKeychain(creds), Backoff: 5 * time.Millisecond}
	auth := func(userPass string) string { return base64.StdEncoding.EncodeToString([]byte(userPass)) }

	write(`{"auths":{"https://` + addr + `/v1/":{"auth":"` + auth("device:s3cret") + `"}},"HttpHeaders":{"User-Agent":"x"}}`)
	digest, err := oci.Push(ctx, ref, f.release, opts)
	if err != nil {
		t.Fatalf("push with the credentials file: %v", err)
	}
	rel, err := oci.Pull(ctx, ref, opts)
	if err != nil || rel.Digest != digest {
		t.Fatalf("pull with the credentials file: %v", err)
	}
	dst := filepath.Join(t.TempDir(), "pkg")
	if err := oci.FetchFile(ctx, rel.Source, rel.Layers[1].Digest, rel.Layers[1].Size, dst, nil); err != nil {
		t.Fatal(err)
	}
	sameFile(t, dst, f.pkg)

	write(`{"auths":{"` + addr + `":{"username":"device","password":"wrong"}}}`)
	if _, err := oci.Pull(ctx, ref, opts); !errors.Is(err, oci.ErrUnauthorized) {
		t.Fatalf("pull with a wrong password: %v", err)
	}
	write(`{"auths":{"other.example":{"username":"device","password":"s3cret"}}}`)
	if _, err := oci.Pull(ctx, ref, opts); !errors.Is(err, oci.ErrUnauthorized) {
		t.Fatalf("pull without an entry for the registry: %v", err)
	}
	write(`{"auths":{},"credsStore":"secretservice"}`)
	if _, err := oci.Pull(ctx, ref, opts); err == nil || !strings.Contains(err.Error(), "credential helpers") {
		t.Fatalf("pull with a credsStore: %v", err)
	}
	os.Remove(creds)
	if _, err := oci.Pull(ctx, ref, opts); err == nil || !strings.Contains(err.Error(), "credentials file") {
		t.Fatalf("pull without the credentials file: %v", err)
	}
}

// TestParseCredentials: what the file parser accepts and refuses.
func TestParseCredentials(t *testing.T) {
	good := `{"auths":{"https://index.docker.io/v1/":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("a:b")) + `"},"Registry.Example:5000":{"identitytoken":"t"}}}`
	got, err := oci.ParseCredentials([]byte(good), "creds")
	if err != nil {
		t.Fatal(err)
	}
	if got["index.docker.io"].Username != "a" || got["index.docker.io"].Password != "b" || got["registry.example:5000"].IdentityToken != "t" {
		t.Fatalf("parsed %+v", got)
	}
	for _, bad := range []string{
		`{"auths":{"a.example":{"auth":"x"},"a.example":{"auth":"y"}}}`,
		`{"auths":{"a.example":{}},"auths":{}}`,
		`{"auths":{"https://a.example":{},"a.example/v1/":{}}}`,
		`{"auths":{"":{}}}`,
		`{"auths":{"a.example":{"auth":"%%%"}}}`,
		`{"credHelpers":{"a.example":"pass"}}`,
		`[]`,
		`{"auths":{}} trailing`,
	} {
		if _, err := oci.ParseCredentials([]byte(bad), "creds"); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
