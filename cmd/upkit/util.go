package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/internal/humanize"
	"github.com/upkit/upkit/signing"
	"github.com/upkit/upkit/spec"
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
	return signing.EnvOrTerminalPassword("UPKIT_PASSWORD", c.App.ErrWriter)
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
func loadPublicKeys(paths []string) ([]*spec.PublicKey, error) {
	keys := make([]*spec.PublicKey, 0, len(paths))
	for _, p := range paths {
		k, err := signing.LoadPublicKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// printJSONOr returns err if it is not nil, else prints v as JSON.
func printJSONOr(c *cli.Context, v any, err error) error {
	if err != nil {
		return err
	}
	return printJSON(c.App.Writer, v)
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
func humanSize(n int64) string { return humanize.Bytes(n) }
