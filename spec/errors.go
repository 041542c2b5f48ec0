package spec

// Sentinel returns a new sentinel error with message msg that also matches
// each of also with errors.Is: a specific error under an umbrella (as
// delta.ErrWrongBase under delta.ErrRejected), so that callers test either.
func Sentinel(msg string, also ...error) error {
	return &sentinel{msg: msg, also: also}
}

type sentinel struct {
	msg  string
	also []error
}

func (e *sentinel) Error() string { return e.msg }

func (e *sentinel) Is(target error) bool {
	for _, a := range e.also {
		if target == a {
			return true
		}
	}
	return false
}
