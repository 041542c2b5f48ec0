package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/manifest"
)

// runCLI runs `upkit args...` in-process with the given environment
// variables set for the duration of the test.
func runCLI(t *testing.T, env map[string]string, args ...string) cliResult {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"upkit"}, args...), strings.NewReader(""), &out, &errb)
	return cliResult{code: code, stdout: out.String(), stderr: errb.String()}
}

// mustRun runs the CLI and fails the test unless it exits 0.
func mustRun(t *testing.T, env map[string]string, args ...string) cliResult {
	t.Helper()
	r := runCLI(t, env, args...)
	if r.code != 0 {
		t.Fatalf("upkit %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// TestEveryCommandHasHelpWithExample walks the command tree: each command
// must have a usage line and an example in its description.
func TestEveryCommandHasHelpWithExample(t *testing.T) {
	app := newApp(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := strings.TrimSpace(prefix + " " + c.Name)
			if c.Usage == "" {
				t.Errorf("%s: no Usage", name)
			}
			if len(c.Subcommands) == 0 && !strings.Contains(c.Description, "Example") {
				t.Errorf("%s: --help has no example", name)
			}
			r := runCLI(t, nil, append(strings.Fields(name), "--help")...)
			if r.code != 0 || !strings.Contains(r.stdout, c.Name) {
				t.Errorf("%s --help: exit %d, output %q", name, r.code, r.stdout)
			}
			walk(name, c.Subcommands)
		}
	}
	walk("", app.Commands)
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"key", "generate"},                        // missing required flag
		{"key", "generate", "--out", "x", "extra"}, // unexpected argument
		{"key", "id"},                              // missing argument
		{"key", "id", "--no-such-flag", "x"},
		{"key", "generate", "--out", "x", "--algorithm", "rsa"},
	} {
		r := runCLI(t, map[string]string{"UPKIT_PASSWORD": ""}, args...)
		if r.code != exitUsage {
			t.Errorf("upkit %s: exit %d, want %d (stderr %q)", strings.Join(args, " "), r.code, exitUsage, r.stderr)
		}
	}
}

// Documents over the manifest size limit are refused before parsing, with
// the manifest sentinel; other files over their limit name the limit.
func TestReadLimited(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, make([]byte, manifest.MaxDocumentSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := mfReadFile(big); !errors.Is(err, manifest.ErrTooLarge) {
		t.Fatalf("oversized document: %v, want manifest.ErrTooLarge", err)
	}
	if _, _, err := mfReadRelease(big); !errors.Is(err, manifest.ErrTooLarge) {
		t.Fatalf("oversized release: %v, want manifest.ErrTooLarge", err)
	}
	if _, err := readLimited(big, 10); !errors.Is(err, errFileTooLarge) {
		t.Fatalf("readLimited over its limit: %v, want errFileTooLarge", err)
	}
	if data, err := readLimited(big, manifest.MaxDocumentSize+1); err != nil || len(data) != manifest.MaxDocumentSize+1 {
		t.Fatalf("readLimited at its limit: %d bytes, %v", len(data), err)
	}
	// A release file handed where a root is expected names what it is.
	rel := filepath.Join(dir, "release.json")
	env, _ := json.Marshal(map[string]any{"payloadType": manifest.ReleasePayloadType, "payload": "e30=", "signatures": []any{}})
	if err := os.WriteFile(rel, env, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := mfReadRoot(rel); !errors.Is(err, manifest.ErrPayloadType) {
		t.Fatalf("release as root: %v, want manifest.ErrPayloadType", err)
	}
}

// delta apply refuses to write the new image over the old one (a usage
// error, exit 2), also when --output names it through a link, and leaves
// it untouched.
func TestDeltaApplyOutputIsOld(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.img")
	if err := os.WriteFile(old, []byte("the old image"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.img")
	if err := os.Symlink(old, link); err != nil {
		t.Fatal(err)
	}
	patch := filepath.Join(dir, "p.delta")
	if err := os.WriteFile(patch, []byte("not read"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{old, link} {
		r := runCLI(t, nil, "delta", "apply", "--from", old, "-o", out, patch)
		if r.code != exitUsage || !strings.Contains(r.stderr, "is the old image") {
			t.Errorf("-o %s: exit %d, stderr %q; want exit %d naming the old image", out, r.code, r.stderr, exitUsage)
		}
	}
	if got, _ := os.ReadFile(old); string(got) != "the old image" {
		t.Fatalf("old image became %q", got)
	}
}
