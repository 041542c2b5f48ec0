package oci

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/upkit/upkit/spec"
)

// MaxCredentialsSize bounds a credentials file (FileKeychain).
const MaxCredentialsSize = 1 << 20

// FileKeychain returns a Keychain reading registry credentials from one
// file in the docker config.json format, for a device that has no docker
// configuration, no home directory and no credential helpers:
//
//	{"auths": {"registry.example": {"auth": "base64 of user:password"}}}
//
// Each entry of "auths" is keyed by a registry host (with or without a
// port, an https:// prefix or a path, as docker writes them; Docker Hub is
// "https://index.docker.io/v1/") and holds "auth", or "username" and
// "password", or "identitytoken" or "registrytoken". Other members of the
// file are ignored, except "credsStore" and "credHelpers", which are
// refused: a device runs no credential helper. The file is read at every
// Resolve, so replacing it (atomically) rotates the credentials without a
// restart. A registry without an entry is accessed anonymously.
func FileKeychain(path string) authn.Keychain { return fileKeychain{path} }

type fileKeychain struct{ path string }

type credentialsFile struct {
	Auths       map[string]authn.AuthConfig `json:"auths"`
	CredsStore  string                      `json:"credsStore"`
	CredHelpers map[string]string           `json:"credHelpers"`
}

// ParseCredentials parses a credentials file (see FileKeychain) and returns
// its entries by registry host, as registryKey normalizes them.
func ParseCredentials(data []byte, what string) (map[string]authn.AuthConfig, error) {
	if err := spec.CheckJSON(data, what, spec.JSONRules{MaxSize: MaxCredentialsSize}); err != nil {
		return nil, fmt.Errorf("oci: credentials: %w", err)
	}
	var f credentialsFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("oci: credentials: %s: %v", what, err)
	}
	if f.CredsStore != "" || len(f.CredHelpers) > 0 {
		return nil, fmt.Errorf("oci: credentials: %s names credential helpers (credsStore, credHelpers), which a device does not run: put the credentials in \"auths\"", what)
	}
	out := make(map[string]authn.AuthConfig, len(f.Auths))
	for k, a := range f.Auths {
		host := registryKey(k)
		if host == "" {
			return nil, fmt.Errorf("oci: credentials: %s: %q is not a registry", what, k)
		}
		if _, dup := out[host]; dup {
			return nil, fmt.Errorf("oci: credentials: %s: two entries for registry %s", what, host)
		}
		out[host] = a
	}
	return out, nil
}

// registryKey reduces an "auths" key to a registry host[:port]: without a
// scheme or path, lower case, Docker Hub's names as name.DefaultRegistry.
func registryKey(k string) string {
	k = strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://")
	k, _, _ = strings.Cut(k, "/")
	k = strings.ToLower(k)
	if k == "docker.io" || k == "registry-1.docker.io" {
		k = name.DefaultRegistry
	}
	return k
}

// Resolve implements authn.Keychain.
func (k fileKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	data, err := spec.ReadFile(k.path, MaxCredentialsSize)
	if err != nil {
		return nil, fmt.Errorf("oci: reading the credentials file: %w", err)
	}
	creds, err := ParseCredentials(data, k.path)
	if err != nil {
		return nil, err
	}
	a, ok := creds[registryKey(target.RegistryStr())]
	if !ok {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(a), nil
}
