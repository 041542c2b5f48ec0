package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/upkit/upkit/internal/atomicfile"
	"github.com/upkit/upkit/internal/pubkey"
	"github.com/upkit/upkit/internal/regfile"
	"github.com/upkit/upkit/signing"
)

// Exit codes. Verification failures and usage errors are told apart so that
// scripts can react to a rejected update differently from a typo.
const (
	exitOK     = 0
	exitFailed = 1 // verification failure or any other error
	exitUsage  = 2 // bad flags or arguments
)

// exitError carries an exit code through urfave/cli back to run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError reports a usage mistake (exit code 2).
func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// verifyError marks err as a verification failure (exit code 1).
func verifyError(err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: exitFailed, err: err}
}

// withExitCode attaches a specific exit code to err (used by `device`).
func withExitCode(code int, err error) error {
	return &exitError{code: code, err: err}
}

// reportError prints err (if any) and maps it to an exit code.
func reportError(stderr io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintf(stderr, "upkit: %v\n", ee.err)
		}
		return ee.code
	}
	msg := err.Error()
	fmt.Fprintf(stderr, "upkit: %v\n", err)
	// urfave/cli reports missing required flags and unknown commands as
	// plain errors; they are usage errors all the same.
	for _, p := range []string{"Required flag", "Required flags", "flag provided but not defined", "No help topic for"} {
		if strings.HasPrefix(msg, p) {
			return exitUsage
		}
	}
	return exitFailed
}

// needArgs checks the number of positional arguments.
func needArgs(c *cli.Context, min, max int, what string) error {
	n := c.NArg()
	if n < min || (max >= 0 && n > max) {
		return usageError("%s: expected %s (see `upkit %s --help`)", c.Command.FullName(), what, c.Command.FullName())
	}
	return nil
}

// passwordFunc returns the key password: UPKIT_PASSWORD when set (even to
// the empty string), otherwise a prompt on the terminal. An empty password
// is accepted only through UPKIT_PASSWORD="".
func passwordFunc(c *cli.Context) signing.PassFunc {
	return func(confirm bool) ([]byte, error) {
		if pw, ok := os.LookupEnv("UPKIT_PASSWORD"); ok {
			return []byte(pw), nil
		}
		fd := int(os.Stdin.Fd())
		if !term.IsTerminal(fd) {
			return nil, errors.New("no password: set UPKIT_PASSWORD (it may be empty: UPKIT_PASSWORD=) or run on a terminal")
		}
		fmt.Fprint(c.App.ErrWriter, "Password for the private key: ")
		pw, err := term.ReadPassword(fd)
		fmt.Fprintln(c.App.ErrWriter)
		if err != nil {
			return nil, fmt.Errorf("reading password: %w", err)
		}
		if len(pw) == 0 {
			return nil, errors.New("empty password refused on a terminal (set UPKIT_PASSWORD= to use an empty one)")
		}
		if confirm {
			fmt.Fprint(c.App.ErrWriter, "Repeat the password: ")
			again, err := term.ReadPassword(fd)
			fmt.Fprintln(c.App.ErrWriter)
			if err != nil {
				return nil, fmt.Errorf("reading password: %w", err)
			}
			if string(again) != string(pw) {
				return nil, errors.New("passwords do not match")
			}
		}
		return pw, nil
	}
}

// loadSigner loads the signer named by a --key reference: a key file
// (password from UPKIT_PASSWORD or a prompt) or a KMS URI.
func loadSigner(c *cli.Context, keyref string) (*signing.Signer, error) {
	if keyref == "" {
		return nil, usageError("--key is required")
	}
	return signing.Load(c.Context, keyref, passwordFunc(c))
}

// loadPublicKeys reads one or more PEM public key files.
func loadPublicKeys(paths []string) ([]*pubkey.Key, error) {
	keys := make([]*pubkey.Key, 0, len(paths))
	for _, p := range paths {
		k, err := signing.LoadPublicKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// atomicWrite writes path (mode 0644) through a temporary file in the same
// directory, renamed over path only when write returns nil; on error
// nothing is left and path is as it was (see internal/atomicfile).
func atomicWrite(path string, write func(w io.Writer) error) error {
	return atomicfile.Write(path, 0o644, func(f *os.File) error { return write(f) })
}

// versionString reports the module version and VCS information of the build.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, when, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " (" + rev + dirty
		if when != "" {
			v += ", " + when
		}
		v += ")"
	}
	return v + " " + bi.GoVersion
}

// printJSON writes v as indented JSON (no HTML escaping): the --json output
// of every command.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// nowFlag returns the time of a command's --now flag (RFC 3339), or the
// current time when it is not set.
func nowFlag(c *cli.Context) (time.Time, error) {
	s := c.String("now")
	if s == "" {
		return time.Now().UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usageError("--now %q: want an RFC 3339 time like 2026-01-02T15:04:05Z", s)
	}
	return t.UTC(), nil
}

// humanSize formats a byte count for people: "512 B", "3.2 MiB".
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// errFileTooLarge is returned by readLimited for a file over its limit.
var errFileTooLarge = errors.New("file too large")

// readLimited reads a whole file of at most limit bytes (the one bounded
// reader of the CLI: documents, device descriptions). Only a regular file
// (or a symlink to one) is read: a FIFO is refused without blocking.
func readLimited(path string, limit int64) ([]byte, error) {
	return regfile.ReadLimited(path, limit, errFileTooLarge)
}
