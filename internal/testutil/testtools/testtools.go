// Package testtools finds the Go-built tools the tests run (olareg, the
// cosign CLI, ...), which scripts/test-deps.sh builds once into a cache
// folder. Both read scripts/tools.txt, so a tool's version is written in one
// place.
//
// A tool NAME at VERSION lives at $UPKIT_TOOLS_DIR/NAME-VERSION/NAME, with
// UPKIT_TOOLS_DIR defaulting to ${XDG_CACHE_HOME:-$HOME/.cache}/upkit/tools;
// $UPKIT_<NAME>_BIN (upper case) names another binary instead.
package testtools

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Tool is one line of scripts/tools.txt.
type Tool struct {
	Name, Module, Version, Package string
}

// Dir returns the folder the tools are built into.
func Dir() string {
	if d := os.Getenv("UPKIT_TOOLS_DIR"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home := os.Getenv("HOME")
		if home == "" {
			home = os.TempDir()
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "upkit", "tools")
}

// Lookup returns the line of scripts/tools.txt for name.
func Lookup(name string) (Tool, error) {
	root, err := moduleRoot()
	if err != nil {
		return Tool{}, err
	}
	f, err := os.Open(filepath.Join(root, "scripts", "tools.txt"))
	if err != nil {
		return Tool{}, fmt.Errorf("testtools: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if fields[0] == name {
			return Tool{Name: fields[0], Module: fields[1], Version: fields[2], Package: fields[3]}, nil
		}
	}
	if err := sc.Err(); err != nil {
		return Tool{}, fmt.Errorf("testtools: scripts/tools.txt: %w", err)
	}
	return Tool{}, fmt.Errorf("testtools: %q is not in scripts/tools.txt", name)
}

// Path returns the binary of tool name, or an error that names the command
// that builds it.
func Path(name string) (string, error) {
	env := "UPKIT_" + strings.ToUpper(name) + "_BIN"
	if p := os.Getenv(env); p != "" {
		if !isExecutable(p) {
			return "", fmt.Errorf("testtools: $%s=%s is not an executable file", env, p)
		}
		return p, nil
	}
	tool, err := Lookup(name)
	if err != nil {
		return "", err
	}
	p := filepath.Join(Dir(), name+"-"+tool.Version, name)
	if !isExecutable(p) {
		return "", fmt.Errorf("testtools: %s %s not found at %s: build it with `scripts/test-deps.sh %s` "+
			"(`make test` runs it), or set $%s", name, tool.Version, p, name, env)
	}
	return p, nil
}

// Require returns the binary of tool name, failing t (never skipping) when
// it is missing.
func Require(t testing.TB, name string) string {
	t.Helper()
	p, err := Path(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// moduleRoot walks up from the working directory (a package's folder under
// go test) to the folder holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("testtools: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testtools: no go.mod above the working directory")
		}
		dir = parent
	}
}
