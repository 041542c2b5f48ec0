package oci

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseArtifact: manifests come from registries and layouts, untrusted.
// parseArtifact must never panic, and anything it accepts must satisfy the
// invariants the rest of the package relies on.
func FuzzParseArtifact(f *testing.F) {
	hex := strings.Repeat("ab", 32)
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.upkit.release.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[{"mediaType":"application/vnd.upkit.release.v1+json","size":10,"digest":"sha256:`+hex+`","annotations":{"org.opencontainers.image.title":"release.json"}}]}`), "")
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.upkit.deltas.v1","config":{"mediaType":"application/vnd.oci.empty.v1+json","size":2,"digest":"sha256:`+hex+`"},"layers":[{"mediaType":"application/vnd.upkit.delta.v1","size":1,"digest":"sha256:`+hex+`","annotations":{"org.opencontainers.image.title":"../x"}}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:`+hex+`"}}`), "application/vnd.oci.image.manifest.v1+json")
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]}`), "application/vnd.oci.image.index.v1+json")
	f.Add([]byte(`[]`), "")
	f.Fuzz(func(t *testing.T, raw []byte, mediaType string) {
		a, err := parseArtifact(raw, mediaType)
		if err != nil {
			if !errors.Is(err, ErrNotRelease) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if a.ArtifactType != ArtifactTypeRelease && a.ArtifactType != ArtifactTypeDeltas {
			t.Fatalf("accepted artifactType %q", a.ArtifactType)
		}
		envelopes := 0
		for _, l := range a.Layers {
			if CheckDigest(l.Digest) != nil || l.Size < 0 {
				t.Fatalf("accepted layer %+v", l)
			}
			if l.Title != "" && ValidTitle(l.Title) != nil {
				t.Fatalf("accepted title %q", l.Title)
			}
			if l.MediaType == MediaTypeRelease {
				envelopes++
			}
		}
		if a.ArtifactType == ArtifactTypeRelease && envelopes != 1 {
			t.Fatalf("release with %d envelopes", envelopes)
		}
		if a.ArtifactType == ArtifactTypeDeltas && CheckDigest(a.Subject) != nil {
			t.Fatalf("deltas without a valid subject")
		}
	})
}

// FuzzParseTarget: references come from the command line and scripts.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"127.0.0.1:5000/a/b:1", "oci:dir:tag", "oci:/x@sha256:" + strings.Repeat("0", 64), "a:b:c", "oci:", "@", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseTarget(s, false)
		if err != nil {
			if !errors.Is(err, ErrBadReference) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if tg.Tag != "" && tg.Digest != "" {
			t.Fatalf("%q: both tag and digest", s)
		}
		if tg.Digest != "" && CheckDigest(tg.Digest) != nil {
			t.Fatalf("%q: bad digest accepted", s)
		}
		if tg.Tag != "" && !validTag(tg.Tag) {
			t.Fatalf("%q: bad tag accepted", s)
		}
		// What String prints parses back to the same target.
		again, err := ParseTarget(tg.String(), false)
		if err != nil || again.String() != tg.String() {
			t.Fatalf("%q -> %q -> %v, %v", s, tg.String(), again, err)
		}
	})
}

// FuzzContentRange: Content-Range headers come from registries and CDNs.
func FuzzContentRange(f *testing.F) {
	f.Add("bytes 0-9/10")
	f.Add("bytes 5-4/10")
	f.Add("bytes -1-3/4")
	f.Fuzz(func(t *testing.T, v string) {
		start, total, ok := parseContentRange(v)
		if ok && (start < 0 || start >= total) {
			t.Fatalf("%q: start %d total %d accepted", v, start, total)
		}
	})
}

// FuzzParseCredentials: a device's credentials file is read at every
// registry request; ParseCredentials must never panic, and every host it
// returns is a normalized registry name.
func FuzzParseCredentials(f *testing.F) {
	f.Add([]byte(`{"auths":{"https://registry.example/v1/":{"auth":"ZGV2aWNlOnMzY3JldA=="}}}`))
	f.Add([]byte(`{"auths":{"a.example":{"username":"u","password":"p","identitytoken":"t"}},"credsStore":""}`))
	f.Add([]byte(`{"auths":{"A.example":{},"a.example":{}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		creds, err := ParseCredentials(data, "fuzz")
		if err != nil {
			return
		}
		for host := range creds {
			if host == "" || host != registryKey(host) || strings.ContainsAny(host, "/") {
				t.Fatalf("host %q", host)
			}
		}
	})
}
