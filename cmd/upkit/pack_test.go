package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// packTestKeys generates an Ed25519 key pair with the key command and
// returns the directory and the key prefix.
func packTestKeys(t *testing.T) (dir, prefix string) {
	return packTestKeysAlg(t, "ed25519")
}

func packTestKeysAlg(t *testing.T, alg string) (dir, prefix string) {
	t.Helper()
	dir = t.TempDir()
	prefix = filepath.Join(dir, "release")
	mustRun(t, map[string]string{"UPKIT_PASSWORD": "test"}, "key", "generate", "--out", prefix, "--algorithm", alg)
	return dir, prefix
}

func packArgs(prefix, out, input string, extra ...string) []string {
	args := []string{"pack", "--type", "app", "--component", "web", "--version", "2.0.1-rc.1",
		"--security-version", "4", "--hardware", "gw-100,gw-200", "--key", prefix + ".key", "-o", out}
	return append(append(args, extra...), input)
}

var packEnv = map[string]string{"UPKIT_PASSWORD": "test", "SOURCE_DATE_EPOCH": "1700000000"}

func TestPackInspectVerifyFile(t *testing.T) {
	dir, prefix := packTestKeys(t)
	input := filepath.Join(dir, "firmware.bin")
	payload := strings.Repeat("firmware bytes ", 10000)
	if err := os.WriteFile(input, []byte(payload), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, comp := range []string{"zstd", "none"} {
		out := filepath.Join(dir, comp+".upk")
		r := mustRun(t, packEnv, packArgs(prefix, out, input, "--compress", comp)...)
		digest := strings.TrimSpace(r.stdout)
		if !strings.HasPrefix(digest, "sha256:") || len(digest) != 71 {
			t.Fatalf("pack stdout %q, want a digest", r.stdout)
		}

		// Reproducible: same inputs, same Ed25519 key, same SOURCE_DATE_EPOCH.
		again := mustRun(t, packEnv, packArgs(prefix, filepath.Join(dir, comp+"-again.upk"), input, "--compress", comp)...)
		if strings.TrimSpace(again.stdout) != digest {
			t.Fatalf("%s: packing twice gave %s and %s", comp, digest, again.stdout)
		}

		r = mustRun(t, nil, "inspect", out)
		for _, want := range []string{"web", "2.0.1-rc.1", "app", "gw-100, gw-200", "2023-11-14T22:13:20Z", digest, "ed25519", "Payload check:     ok"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("inspect output lacks %q:\n%s", want, r.stdout)
			}
		}
		r = mustRun(t, nil, "inspect", "--json", out)
		var info struct {
			PackageDigest string `json:"packageDigest"`
			KeyID         string `json:"keyId"`
			Metadata      struct {
				SecurityVersion uint64 `json:"securityVersion"`
				Payload         struct {
					Compression string `json:"compression"`
					Size        int64  `json:"size"`
				} `json:"payload"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
			t.Fatalf("inspect --json: %v\n%s", err, r.stdout)
		}
		if info.PackageDigest != digest || info.Metadata.SecurityVersion != 4 || info.Metadata.Payload.Compression != comp || info.Metadata.Payload.Size != int64(len(payload)) {
			t.Fatalf("inspect --json: %+v", info)
		}

		mustRun(t, nil, "verify", "--key", prefix+".pub", out)
		dest := filepath.Join(dir, comp+"-extracted.bin")
		mustRun(t, nil, "verify", "--key", prefix+".pub", "--extract", dest, out)
		if got, _ := os.ReadFile(dest); string(got) != payload {
			t.Fatalf("%s: extracted payload differs", comp)
		}
	}
}

func TestPackVerifyDirectory(t *testing.T) {
	dir, prefix := packTestKeysAlg(t, "ecdsa-p256")
	src := filepath.Join(dir, "bundle")
	os.MkdirAll(filepath.Join(src, "bin"), 0o755)
	os.WriteFile(filepath.Join(src, "bin", "run"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(src, "README"), []byte("hello\n"), 0o644)
	os.Symlink("bin/run", filepath.Join(src, "start"))
	out := filepath.Join(dir, "bundle.upk")
	mustRun(t, packEnv, packArgs(prefix, out, src)...)
	dest := filepath.Join(dir, "installed")
	r := mustRun(t, nil, "verify", "--key", prefix+".pub", "--json", "--extract", dest, out)
	if !strings.Contains(r.stdout, `"verified": true`) || !strings.Contains(r.stdout, `"kind": "tar"`) || !strings.Contains(r.stdout, `"algorithm": "ecdsa-p256"`) {
		t.Fatalf("verify --json: %s", r.stdout)
	}
	if fi, err := os.Stat(filepath.Join(dest, "bin", "run")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("bin/run: %v %v", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(dest, "start")); err != nil || target != "bin/run" {
		t.Fatalf("start -> %q, %v", target, err)
	}
}

func TestVerifyRejects(t *testing.T) {
	dir, prefix := packTestKeys(t)
	input := filepath.Join(dir, "os.img")
	os.WriteFile(input, []byte(strings.Repeat("x", 100000)), 0o644)
	good := filepath.Join(dir, "good.upk")
	mustRun(t, packEnv, packArgs(prefix, good, input, "--compress", "none")...)
	data, _ := os.ReadFile(good)
	other := filepath.Join(dir, "other")
	mustRun(t, map[string]string{"UPKIT_PASSWORD": "x"}, "key", "generate", "--out", other)

	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)-20] ^= 1
	cases := []struct {
		name, file, key, want string
	}{
		{"tampered payload", write("tampered.upk", flipped), prefix + ".pub", "payload digest mismatch"},
		{"truncated", write("truncated.upk", data[:len(data)-1]), prefix + ".pub", "truncated"},
		{"appended", write("appended.upk", append(append([]byte(nil), data...), 'x')), prefix + ".pub", "trailing data"},
		{"unknown key", good, other + ".pub", "unknown key"},
		{"not a package", input, prefix + ".pub", "bad magic"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dest := filepath.Join(dir, "dest-"+strings.ReplaceAll(c.name, " ", "-"))
			r := runCLI(t, nil, "verify", "--key", c.key, "--extract", dest, c.file)
			if r.code != exitFailed || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, c.want)
			}
			if _, err := os.Stat(dest); !os.IsNotExist(err) {
				t.Fatalf("--extract left %s behind", dest)
			}
			r = runCLI(t, nil, "verify", "--json", "--key", c.key, c.file)
			if r.code != exitFailed || !strings.Contains(r.stdout, `"verified": false`) {
				t.Fatalf("--json: exit %d, stdout %q", r.code, r.stdout)
			}
		})
	}
	// inspect (no key) catches payload corruption too.
	if r := runCLI(t, nil, "inspect", filepath.Join(dir, "tampered.upk")); r.code != exitFailed {
		t.Fatalf("inspect tampered: exit %d", r.code)
	}
}

func TestPackUsageErrors(t *testing.T) {
	dir, prefix := packTestKeys(t)
	input := filepath.Join(dir, "in")
	os.WriteFile(input, []byte("x"), 0o644)
	out := filepath.Join(dir, "out.upk")
	base := packArgs(prefix, out, input)
	replace := func(flag, value string) []string {
		args := append([]string(nil), base...)
		for i := range args {
			if args[i] == flag {
				args[i+1] = value
			}
		}
		return args
	}
	for name, args := range map[string][]string{
		"bad type":          replace("--type", "kernel"),
		"bad component":     replace("--component", "Web App"),
		"dot-dot component": replace("--component", "a..b"), // the device refuses it (issue 12, item 10)
		"version over 2^64": replace("--version", "1.0.18446744073709551616"),
		"bad version":       replace("--version", "v2"),
		"bad hardware":      replace("--hardware", "gw 100"),
		"empty hardware":    replace("--hardware", ","),
		"dup hardware":      replace("--hardware", "a,b,a"),
		"bad compression":   append(append([]string(nil), base[:len(base)-1]...), "--compress", "gzip", input),
		"no input":          base[:len(base)-1],
		"two inputs":        append(append([]string(nil), base...), input),
		"missing key":       {"pack", "--type", "os", "--component", "a", "--version", "1.0.0", "--security-version", "1", "--hardware", "x", "-o", out, input},
	} {
		r := runCLI(t, map[string]string{"UPKIT_PASSWORD": "test"}, args...)
		if r.code != exitUsage {
			t.Errorf("%s: exit %d, want %d (stderr %q)", name, r.code, exitUsage, r.stderr)
		}
	}
	r := runCLI(t, map[string]string{"UPKIT_PASSWORD": "test", "SOURCE_DATE_EPOCH": "yesterday"}, base...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "SOURCE_DATE_EPOCH") {
		t.Errorf("bad SOURCE_DATE_EPOCH: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("a failed pack left an output file")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestInspectJSONDocument(t *testing.T) {
	p := filepath.Join(t.TempDir(), "doc.json")
	os.WriteFile(p, []byte("  {\"not\": \"a manifest\"}\n"), 0o644)
	r := runCLI(t, nil, "inspect", p)
	if r.code != exitFailed || strings.Contains(r.stderr, "magic") || !strings.Contains(r.stderr, "manifest") {
		t.Fatalf("inspect JSON: exit %d, stderr %q; want the manifest parser's error", r.code, r.stderr)
	}
}

func TestPackWrongPassword(t *testing.T) {
	dir, prefix := packTestKeys(t)
	input := filepath.Join(dir, "in")
	os.WriteFile(input, []byte(strings.Repeat("x", 1<<20)), 0o644)
	out := filepath.Join(dir, "out.upk")
	r := runCLI(t, map[string]string{"UPKIT_PASSWORD": "wrong"}, packArgs(prefix, out, input)...)
	if r.code != exitFailed || !strings.Contains(r.stderr, "release.key") {
		t.Fatalf("exit %d, stderr %q; want exit 1 naming the key", r.code, r.stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("output written with an unusable key")
	}
	assertNoTemp(t, dir)
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}
