package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// cliResult is what one in-process run of the CLI produced.
type cliResult struct {
	code           int
	stdout, stderr string
}

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

// Flags may follow positional arguments on every command: for each leaf
// command, --help after an argument shows the help, an unknown flag after
// an argument is a usage error (exit 2) naming the flag, and a flag that
// takes a value, given last without one, is a usage error naming it.
func TestFlagsAnywhere(t *testing.T) {
	app := newApp(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	var walk func(path []string, cmds []*cli.Command)
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := append(append([]string{}, path...), c.Name)
			if len(c.Subcommands) > 0 {
				walk(p, c.Subcommands)
				continue
			}
			if c.Name == "help" {
				continue
			}
			name := strings.Join(p, " ")
			if r := runCLI(t, nil, append(p, "some-arg", "--help")...); r.code != 0 || !strings.Contains(r.stdout, "USAGE") {
				t.Errorf("%s ARG --help: exit %d, stdout %q", name, r.code, r.stdout)
			}
			r := runCLI(t, nil, append(p, "some-arg", "--no-such-flag")...)
			if r.code != exitUsage || !strings.Contains(r.stderr, "-no-such-flag") {
				t.Errorf("%s ARG --no-such-flag: exit %d, stderr %q; want %d naming the flag", name, r.code, r.stderr, exitUsage)
			}
			for _, f := range c.Flags {
				if d, ok := f.(cli.DocGenerationFlag); ok && d.TakesValue() {
					flag := "--" + f.Names()[0]
					r := runCLI(t, nil, append(p, "some-arg", flag)...)
					if r.code != exitUsage || !strings.Contains(r.stderr, "flag needs an argument: -"+f.Names()[0]) {
						t.Errorf("%s ARG %s (no value): exit %d, stderr %q", name, flag, r.code, r.stderr)
					}
					break
				}
			}
		}
	}
	walk(nil, app.Commands)
}

// "--" ends flag parsing: what follows is a file name, not a flag.
func TestDoubleDashEndsFlags(t *testing.T) {
	r := runCLI(t, nil, "inspect", "--", "--json")
	if r.code != exitFailed || !strings.Contains(r.stderr, "--json") {
		t.Errorf("inspect -- --json: exit %d, stderr %q; want the file --json not found", r.code, r.stderr)
	}
}
