package signing

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// EnvOrTerminalPassword returns a PassFunc that reads the password from
// the environment variable env when it is set (even to the empty string),
// else asks for it on the terminal of os.Stdin, writing the prompt to
// prompt, without echo; with confirm it asks twice. An empty password is
// accepted only from env. It fails when env is unset and stdin is not a
// terminal.
func EnvOrTerminalPassword(env string, prompt io.Writer) PassFunc {
	return func(confirm bool) ([]byte, error) {
		if pw, ok := os.LookupEnv(env); ok {
			return []byte(pw), nil
		}
		fd := int(os.Stdin.Fd())
		if !term.IsTerminal(fd) {
			return nil, fmt.Errorf("no password: set %s (it may be empty: %s=) or run on a terminal", env, env)
		}
		read := func(p string) ([]byte, error) {
			fmt.Fprint(prompt, p)
			pw, err := term.ReadPassword(fd)
			fmt.Fprintln(prompt)
			if err != nil {
				return nil, fmt.Errorf("reading password: %w", err)
			}
			return pw, nil
		}
		pw, err := read("Password for the private key: ")
		if err != nil {
			return nil, err
		}
		if len(pw) == 0 {
			return nil, fmt.Errorf("empty password refused on a terminal (set %s= to use an empty one)", env)
		}
		if confirm {
			again, err := read("Repeat the password: ")
			if err != nil {
				return nil, err
			}
			if string(again) != string(pw) {
				return nil, errors.New("passwords do not match")
			}
		}
		return pw, nil
	}
}
