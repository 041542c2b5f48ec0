package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestCLIDocsCurrent regenerates the command reference into a temporary
// directory and compares it with docs/cli/: CI fails when a command,
// flag or description changed without `make docs`.
func TestCLIDocsCurrent(t *testing.T) {
	tmp := t.TempDir()
	mustRun(t, nil, "gen-docs", tmp)
	want, err := filepath.Glob(filepath.Join(tmp, "*.md"))
	if err != nil || len(want) < 2 {
		t.Fatalf("gen-docs wrote %d files (%v)", len(want), err)
	}
	have, _ := filepath.Glob("../../docs/cli/*.md")
	names := func(paths []string) []string {
		var n []string
		for _, p := range paths {
			n = append(n, filepath.Base(p))
		}
		sort.Strings(n)
		return n
	}
	const fix = "docs/cli/ is not current: run `make docs` (go run ./cmd/upkit gen-docs docs/cli) and commit the result"
	if a, b := strings.Join(names(want), " "), strings.Join(names(have), " "); a != b {
		t.Fatalf("%s\ngenerated: %s\nchecked in: %s", fix, a, b)
	}
	for _, p := range want {
		gen, _ := os.ReadFile(p)
		cur, err := os.ReadFile(filepath.Join("../../docs/cli", filepath.Base(p)))
		if err != nil || !bytes.Equal(gen, cur) {
			t.Errorf("%s: docs/cli/%s differs (%v)", fix, filepath.Base(p), err)
		}
	}
	// The reference covers every visible command, with its example.
	idx, _ := os.ReadFile(filepath.Join(tmp, "README.md"))
	for _, c := range []string{"upkit_key_generate.md", "upkit_release_sign.md", "upkit_device_update.md", "upkit_completion.md"} {
		if !bytes.Contains(idx, []byte("("+c+")")) {
			t.Errorf("README.md index does not link %s", c)
		}
		doc, _ := os.ReadFile(filepath.Join(tmp, c))
		if !bytes.Contains(doc, []byte("Example:\n\n```sh\n")) || !bytes.Contains(doc, []byte("## Usage")) {
			t.Errorf("%s has no usage or example:\n%s", c, doc)
		}
	}
	if bytes.Contains(idx, []byte("gen-docs")) && bytes.Contains(idx, []byte("upkit_gen-docs.md")) {
		t.Error("the hidden gen-docs command is documented")
	}
	// Twice the same output.
	tmp2 := t.TempDir()
	mustRun(t, nil, "gen-docs", tmp2)
	for _, p := range want {
		a, _ := os.ReadFile(p)
		b, _ := os.ReadFile(filepath.Join(tmp2, filepath.Base(p)))
		if !bytes.Equal(a, b) {
			t.Errorf("gen-docs is not deterministic: %s", filepath.Base(p))
		}
	}
}

func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		r := mustRun(t, nil, "completion", sh)
		if !strings.Contains(r.stdout, "upkit") || len(r.stdout) < 100 {
			t.Errorf("completion %s: %q", sh, r.stdout)
		}
	}
	if r := runCLI(t, nil, "completion", "powershell"); r.code != exitUsage {
		t.Errorf("completion powershell: exit %d, want %d", r.code, exitUsage)
	}
	if r := runCLI(t, nil, "completion"); r.code != exitUsage {
		t.Errorf("completion without a shell: exit %d, want %d", r.code, exitUsage)
	}
	fish := mustRun(t, nil, "completion", "fish").stdout
	for _, want := range []string{"complete -c upkit", "release", "generate"} {
		if !strings.Contains(fish, want) {
			t.Errorf("fish completion lacks %q", want)
		}
	}
	if strings.Contains(fish, "gen-docs") {
		t.Error("fish completion offers the hidden gen-docs command")
	}

	// The candidates the scripts ask for. urfave/cli reads os.Args while
	// completing, so this runs the built binary, not run().
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash not found: apt-get install bash")
	}
	bin := filepath.Join(t.TempDir(), "upkit")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	candidates := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append(args, "--generate-bash-completion")...).Output()
		if err != nil {
			t.Fatalf("upkit %v --generate-bash-completion: %v", args, err)
		}
		return string(out)
	}
	top := candidates()
	for _, want := range []string{"key", "release", "device", "completion"} {
		if !strings.Contains(top, want+"\n") {
			t.Errorf("top-level candidates lack %q:\n%s", want, top)
		}
	}
	if strings.Contains(top, "gen-docs") {
		t.Error("the hidden gen-docs command is offered")
	}
	if k := candidates("key"); !strings.Contains(k, "generate\n") || !strings.Contains(k, "export-pub\n") {
		t.Errorf("key candidates:\n%s", k)
	}

	// The bash script, run by bash against the built binary.
	script := filepath.Join(t.TempDir(), "upkit.bash")
	if err := os.WriteFile(script, []byte(mustRun(t, nil, "completion", "bash").stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) string {
		t.Helper()
		q := make([]string, len(words))
		for i, w := range words {
			q[i] = "'" + w + "'"
		}
		cmd := exec.Command("bash", "-c", `source "$1"; COMP_WORDS=(`+strings.Join(q, " ")+`); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _upkit_complete; printf '%s\n' "${COMPREPLY[@]}"`, "bash", script)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("completing %v: %v\n%s", words, err, out)
		}
		return string(out)
	}
	if got := complete("upkit", "rel"); got != "release\n" {
		t.Errorf("upkit rel<TAB>: %q, want release", got)
	}
	if got := complete("upkit", "key", "gen"); got != "generate\n" {
		t.Errorf("upkit key gen<TAB>: %q, want generate", got)
	}
	if got := complete("upkit", "key", "generate", "--alg"); !strings.Contains(got, "--algorithm") {
		t.Errorf("upkit key generate --alg<TAB>: %q, want --algorithm", got)
	}
	if zsh, err := exec.LookPath("zsh"); err == nil {
		// Syntax only: compsys needs an interactive shell.
		s := filepath.Join(t.TempDir(), "_upkit")
		os.WriteFile(s, []byte(mustRun(t, nil, "completion", "zsh").stdout), 0o644)
		if out, err := exec.Command(zsh, "-n", s).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	}
}
