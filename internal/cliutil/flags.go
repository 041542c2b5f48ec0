package cliutil

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// completionFlag is what the shell completion scripts append (urfave/cli
// looks for it at the end of the arguments).
const completionFlag = "--generate-bash-completion"

// FlagsFirst lets flags follow positional arguments, as crane, cosign, git
// and docker users expect: urfave/cli (like Go's flag package) stops at the
// first argument that is not a flag. It finds the command args name (the
// program, then command names), and moves every flag of that command,
// with the value of a flag that takes one, ahead of the positional
// arguments, keeping their order. "--" ends the flags: what follows it
// stays positional. A token that is no flag of the command is moved like
// a flag too, so that urfave/cli reports it ("flag provided but not
// defined: -x", a usage error); a flag that takes a value and ends the
// arguments is a usage error here (made by usage). With --help (or -h) the positional
// arguments are dropped, so that the command's help is shown.
func FlagsFirst(cmds []*cli.Command, args []string, usage UsageFunc) ([]string, error) {
	i := 1
	var cmd *cli.Command
	for i < len(args) {
		next := findCommand(cmds, args[i])
		if next == nil {
			break
		}
		cmd, cmds = next, next.Subcommands
		i++
	}
	if cmd == nil || len(cmd.Subcommands) > 0 || cmd.SkipFlagParsing {
		return args, nil
	}
	rest := args[i:]
	var tail []string
	if n := len(rest); n > 0 && rest[n-1] == completionFlag {
		rest, tail = rest[:n-1], []string{completionFlag}
	}
	var flags, positional []string
	help := false
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		switch {
		case a == "--":
			positional = append(positional, rest[j+1:]...)
			j = len(rest)
		case len(a) > 1 && a[0] == '-':
			flags = append(flags, a)
			help = help || a == "-h" || a == "--help" || a == "-help"
			if takesValue(cmd, a) {
				if j+1 == len(rest) {
					return nil, usage("flag needs an argument: -%s", strings.TrimLeft(a, "-"))
				}
				flags = append(flags, rest[j+1])
				j++
			}
		default:
			positional = append(positional, a)
		}
	}
	out := append(append([]string{}, args[:i]...), flags...)
	if len(positional) > 0 && !help {
		out = append(append(out, "--"), positional...)
	}
	return append(out, tail...), nil
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue reports whether the flag token a ("-o", "--out", not
// "--out=x") names a flag of cmd that takes a value.
func takesValue(cmd *cli.Command, a string) bool {
	name := strings.TrimLeft(a, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			d, ok := f.(cli.DocGenerationFlag)
			return ok && d.TakesValue()
		}
	}
	return false
}

// Strings is the value of a repeatable flag (a cli.GenericFlag) whose
// values are kept whole: a cli.StringSliceFlag would split each at its
// commas.
type Strings []string

// Set adds a value.
func (s *Strings) Set(v string) error { *s = append(*s, v); return nil }

// String returns the values, space-separated.
func (s *Strings) String() string {
	if s == nil {
		return ""
	}
	return strings.Join(*s, " ")
}

// StringsOf returns the values of the Strings flag name.
func StringsOf(c *cli.Context, name string) []string {
	if s, ok := c.Generic(name).(*Strings); ok && s != nil {
		return *s
	}
	return nil
}
