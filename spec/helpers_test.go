package spec_test

import (
	"errors"
	"os"

	"github.com/upkit/upkit/spec"
)

func writeFile(path string, n int) error { return os.WriteFile(path, make([]byte, n), 0o644) }

func isTooLarge(err error) bool { return errors.Is(err, spec.ErrTooLarge) }
