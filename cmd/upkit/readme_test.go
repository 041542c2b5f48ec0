package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upkit/upkit/internal/testutil/registrytest"
	"github.com/upkit/upkit/internal/testutil/testtools"
)

// readmeSections are the README.md sections whose ```sh blocks
// TestREADME runs, in this order, as a user following the README in one
// terminal would. Each name is a heading's text (any level); a section's
// blocks are those between its heading and the next heading.
var readmeSections = []string{
	"Quickstart: a signed package",
	"Binary deltas",
	"Trust root and releases",
	"Publishing",
	"Keys in an HSM",
	"Try it without hardware",
	"Microcontroller firmware (MCUboot)",
}

// readmeOutcomes are strings each section's output must contain: what the
// README promises where its commands would pass either way (`|| echo`).
var readmeOutcomes = map[string][]string{
	"Trust root and releases": {
		"refused: signed by the revoked key",
		"release OK: gw version 12, 1 image(s)",
	},
	"Publishing": {
		"release gw version 12 verified against root.json",
		"rootfs: using attached delta rootfs-1.5.0-from-",
		"update/rootfs-1.5.0-from-",
	},
	"Try it without hardware": {"committed release version 12", `"releaseVersion": 12`},
	"Microcontroller firmware (MCUboot)": {"verified sensor-1.4.0.bin: MCUboot image 1.4.0+17", "committed release version 13",
		"committed release version 14", "sensor 1.4.0+17 -> 1.5.0+18: delta"},
}

// readmeBlocks returns the ```sh code blocks of a Markdown document, keyed
// by the text of the heading they follow.
func readmeBlocks(md []byte) map[string][]string {
	blocks := map[string][]string{}
	heading := ""
	inFence, isSh := false, false
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(md))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case inFence && strings.TrimSpace(line) == "```":
			if isSh {
				blocks[heading] = append(blocks[heading], cur.String())
			}
			inFence = false
		case inFence:
			cur.WriteString(line + "\n")
		case strings.HasPrefix(line, "```"):
			inFence, isSh = true, strings.TrimSpace(strings.TrimPrefix(line, "```")) == "sh"
			cur.Reset()
		case strings.HasPrefix(line, "#"):
			heading = strings.TrimSpace(strings.TrimLeft(line, "#"))
		}
	}
	return blocks
}

// TestREADME runs the shell blocks of README.md against the upkit binary
// built from this tree, so that the README cannot drift from the code. It
// runs the README text itself; the only changes, made here and nowhere
// else, are these substitutions and this environment:
//
//   - "registry.example" and "localhost:5000" become the address of a real
//     CNCF distribution registry on loopback (internal/testutil/registrytest) that
//     requires the credentials $REGISTRY_USER/$REGISTRY_TOKEN; the staging,
//     prod and fleet repositories are all on it.
//   - "/media/usb" becomes a temporary directory.
//   - The environment a CI job would provide: RUNNER_TEMP (a temporary
//     directory), REGISTRY_USER, REGISTRY_TOKEN, VERSION=12 (the release
//     version the Trust root section creates), CURRENT_PAYLOAD_DIGEST (the
//     payload digest of rootfs.img, the quickstart's image), HOME (a
//     temporary directory, so SoftHSM2 tokens and docker/cosign state stay
//     in the test), DOCKER_CONFIG=$RUNNER_TEMP/docker (where the Publishing
//     section writes the credentials, so later sections find them), and
//     PATH with the freshly built upkit first (and the folder of the
//     cosign CLI that scripts/test-deps.sh builds).
//   - cosign.key/cosign.pub, which a CI job holds as a secret, are made
//     before the Publishing section with `upkit key generate --out cosign`
//     and the password the README's shell has at that point (the Trust
//     root section exports UPKIT_PASSWORD=secret).
//
// Sections run in one work directory, each in its own `bash -euo pipefail`,
// with the exported variables of the previous sections carried over (as in
// one terminal). The HSM section is self-contained and makes files named
// like the quickstart's (release.pub, rootfs.img, root.json), so it runs
// in a directory of its own. A failing section reports the failing
// command and the section's whole output.
func TestREADME(t *testing.T) {
	md, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(md)
	for _, s := range readmeSections {
		if len(blocks[s]) == 0 {
			t.Fatalf("README.md has no ```sh block under the heading %q (renamed? update readmeSections)", s)
		}
	}
	for _, tool := range []string{"bash", "softhsm2-util"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install %s", tool, map[string]string{"bash": "bash", "softhsm2-util": "softhsm2"}[tool])
		}
	}

	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "upkit"), ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	path := bin + string(os.PathListSeparator) + os.Getenv("PATH")
	path += string(os.PathListSeparator) + filepath.Dir(testtools.Require(t, "cosign"))

	const user, token = "ci-bot", "s3cret-token"
	addr := registrytest.StartWithAuth(t, registrytest.Distribution, user, token)
	work := filepath.Join(tmp, "work")
	home := filepath.Join(tmp, "home")
	runner := filepath.Join(tmp, "runner")
	usb := filepath.Join(tmp, "usb")
	hsmWork := filepath.Join(tmp, "hsm")
	for _, d := range []string{work, home, runner, usb, hsmWork} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The variables the sections start from; each section's exports are
	// appended to envFile for the next one.
	envFile := filepath.Join(tmp, "env.sh")
	base := map[string]string{
		"PATH":          path,
		"HOME":          home,
		"RUNNER_TEMP":   runner,
		"DOCKER_CONFIG": filepath.Join(runner, "docker"),
		"TUF_ROOT":      filepath.Join(home, ".sigstore", "root"),
		"REGISTRY_USER": user, "REGISTRY_TOKEN": token,
		"VERSION": "12",
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := base[k]; ok || strings.HasPrefix(k, "UPKIT_") || k == "SOURCE_DATE_EPOCH" || k == "SOFTHSM2_CONF" {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range base {
		env = append(env, k+"="+v)
	}
	if err := os.WriteFile(envFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	substitute := func(script string) string {
		return strings.NewReplacer(
			"registry.example", addr,
			"localhost:5000", addr,
			"/media/usb", usb,
		).Replace(script)
	}

	failed := false
	for _, name := range readmeSections {
		name := name
		dir := work
		if name == "Keys in an HSM" {
			dir = hsmWork
		}
		ok := t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			if failed && dir == work {
				t.Fatal("an earlier section failed; this one relies on its files")
			}
			extra := []string{}
			switch name {
			case "Publishing":
				// The CI secret: a cosign key pair with the session's password.
				gen := exec.Command(filepath.Join(bin, "upkit"), "key", "generate", "--out", "cosign")
				gen.Dir, gen.Env = dir, append(append([]string{}, env...), "UPKIT_PASSWORD=secret")
				if out, err := gen.CombinedOutput(); err != nil {
					t.Fatalf("upkit key generate --out cosign: %v\n%s", err, out)
				}
				img, err := os.ReadFile(filepath.Join(work, "rootfs.img"))
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(img)
				extra = append(extra, "CURRENT_PAYLOAD_DIGEST=sha256:"+hex.EncodeToString(sum[:]))
			}
			var script strings.Builder
			fmt.Fprintf(&script, "trap 'echo \"README command failed (exit $?), script line $LINENO: $BASH_COMMAND\" >&2' ERR\n")
			fmt.Fprintf(&script, "set -a; . %q; set +a\n", envFile)
			fmt.Fprintf(&script, "cd %q\n", dir)
			for _, b := range blocks[name] {
				script.WriteString(substitute(b))
			}
			fmt.Fprintf(&script, "export -p > %q\n", envFile+".next")
			cmd := exec.Command("bash", "-euo", "pipefail", "-c", script.String())
			cmd.Dir = dir
			cmd.Env = append(append([]string{}, env...), extra...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				failed = true
				t.Fatalf("README section %q: %v\n--- output ---\n%s\n--- script (after substitutions) ---\n%s", name, err, out, numbered(script.String()))
			}
			// Outcomes the README states but a shell would not check.
			for _, want := range readmeOutcomes[name] {
				if !bytes.Contains(out, []byte(want)) {
					t.Errorf("README section %q: output lacks %q\n--- output ---\n%s", name, want, out)
				}
			}
			next, err := os.ReadFile(envFile + ".next")
			if err != nil {
				t.Fatal(err)
			}
			// `export -p` prints `declare -x NAME="value"`; sourcing it
			// with declare inside a function would make locals, so turn
			// it into plain exports.
			next = bytes.ReplaceAll(next, []byte("declare -x "), []byte("export "))
			if err := os.WriteFile(envFile, next, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("README section %q ran (%d block(s))\n%s", name, len(blocks[name]), out)
		})
		if !ok {
			failed = true
		}
	}
}

// numbered prefixes each line of s with its line number, as bash's
// $LINENO counts them in a -c script.
func numbered(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		fmt.Fprintf(&b, "%4d  %s\n", i+1, l)
	}
	return b.String()
}
