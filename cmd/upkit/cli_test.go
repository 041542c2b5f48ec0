package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
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
