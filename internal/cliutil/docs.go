package cliutil

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/internal/atomicfile"
)

// Markdown renders the reference: file name -> contents. Hidden commands
// are left out; footer ends the index (exit codes, say).
func Markdown(app *cli.App, footer string) map[string][]byte {
	files := map[string][]byte{}
	var index bytes.Buffer
	fmt.Fprintf(&index, "# upkit command reference\n\n")
	fmt.Fprintf(&index, "Generated from the command tree by `make docs` (`upkit gen-docs docs/cli`); do not edit by hand. A test fails when these files are not current.\n\n")
	fmt.Fprintf(&index, "%s.\n\n", app.Usage)
	writeDescription(&index, app.Description)
	fmt.Fprintf(&index, "## Global options\n\n")
	if len(app.Flags) > 0 {
		writeFlags(&index, app.Flags)
	}
	fmt.Fprintf(&index, "`--help`, `-h` shows help for any command; `--version`, `-v` prints the version.\n\n")
	fmt.Fprintf(&index, "## Commands\n\n")
	var walk func(prefix []string, cmds []*cli.Command, depth int)
	walk = func(prefix []string, cmds []*cli.Command, depth int) {
		for _, cmd := range cmds {
			if cmd.Hidden || cmd.Name == "help" {
				continue
			}
			path := append(append([]string{}, prefix...), cmd.Name)
			name := docFileName(path)
			fmt.Fprintf(&index, "%s- [`upkit %s`](%s): %s\n", strings.Repeat("  ", depth), strings.Join(path, " "), name, cmd.Usage)
			files[name] = commandDoc(path, cmd)
			walk(path, cmd.Subcommands, depth+1)
		}
	}
	walk(nil, app.Commands, 0)
	fmt.Fprintf(&index, "\n%s\n", footer)
	files["README.md"] = index.Bytes()
	return files
}

func docFileName(path []string) string {
	return "upkit_" + strings.Join(path, "_") + ".md"
}

func commandDoc(path []string, cmd *cli.Command) []byte {
	var b bytes.Buffer
	full := "upkit " + strings.Join(path, " ")
	fmt.Fprintf(&b, "# %s\n\n", full)
	fmt.Fprintf(&b, "%s.\n\n", strings.TrimSuffix(cmd.Usage, "."))
	if len(cmd.Aliases) > 0 {
		fmt.Fprintf(&b, "Aliases: `%s`.\n\n", strings.Join(cmd.Aliases, "`, `"))
	}
	b.WriteString("## Usage\n\n```\n")
	if len(cmd.Subcommands) > 0 {
		fmt.Fprintf(&b, "%s COMMAND [options] [arguments...]\n", full)
	} else {
		args := " " + strings.TrimSpace(cmd.ArgsUsage)
		if cmd.ArgsUsage == "" {
			args = " [arguments...]"
		}
		opts := ""
		if len(cmd.VisibleFlags()) > 0 {
			opts = " [options]"
		}
		fmt.Fprintf(&b, "%s\n", strings.TrimRight(full+opts+args, " "))
	}
	b.WriteString("```\n\n")
	if cmd.Description != "" {
		b.WriteString("## Description\n\n")
		writeDescription(&b, cmd.Description)
	}
	if flags := cmd.VisibleFlags(); len(flags) > 0 {
		b.WriteString("## Options\n\n")
		writeFlags(&b, flags)
	}
	var subs []*cli.Command
	for _, s := range cmd.Subcommands {
		if !s.Hidden {
			subs = append(subs, s)
		}
	}
	if len(subs) > 0 {
		b.WriteString("## Commands\n\n")
		for _, s := range subs {
			p := append(append([]string{}, path...), s.Name)
			fmt.Fprintf(&b, "- [`upkit %s`](%s): %s\n", strings.Join(p, " "), docFileName(p), s.Usage)
		}
		b.WriteString("\n")
	}
	if len(path) > 1 {
		fmt.Fprintf(&b, "See also: [`upkit %s`](%s), [all commands](README.md).\n", strings.Join(path[:len(path)-1], " "), docFileName(path[:len(path)-1]))
	} else {
		b.WriteString("See also: [all commands](README.md).\n")
	}
	return b.Bytes()
}

// writeDescription writes a command description: its prose as paragraphs,
// and the indented block after "Example:" as a shell code block.
func writeDescription(b *bytes.Buffer, desc string) {
	text, example, hasExample := strings.Cut(desc, "Example:")
	if text = strings.TrimSpace(text); text != "" {
		// Keep the author's line breaks: they often separate list items.
		for _, para := range strings.Split(text, "\n\n") {
			lines := strings.Split(para, "\n")
			for i := range lines {
				lines[i] = strings.TrimRight(lines[i], " ")
			}
			b.WriteString(strings.Join(lines, "  \n"))
			b.WriteString("\n\n")
		}
	}
	if hasExample {
		b.WriteString("Example:\n\n```sh\n")
		lines := strings.Split(strings.Trim(example, "\n"), "\n")
		indent := -1
		for _, l := range lines {
			if strings.TrimSpace(l) == "" {
				continue
			}
			n := len(l) - len(strings.TrimLeft(l, " \t"))
			if indent < 0 || n < indent {
				indent = n
			}
		}
		for _, l := range lines {
			if len(l) >= indent && indent > 0 {
				l = l[indent:]
			}
			b.WriteString(strings.TrimRight(l, " ") + "\n")
		}
		b.WriteString("```\n\n")
	}
}

// writeFlags writes a table of flags: names, default and usage.
func writeFlags(b *bytes.Buffer, flags []cli.Flag) {
	var rows []string
	for _, f := range flags {
		names := f.Names()
		var ns []string
		var placeholder string
		d, isDoc := f.(cli.DocGenerationFlag)
		usage := ""
		def := ""
		if isDoc {
			usage = d.GetUsage()
			// A `WORD` in the usage is the value's placeholder, as in --help.
			if i := strings.Index(usage, "`"); i >= 0 {
				if j := strings.Index(usage[i+1:], "`"); j >= 0 {
					placeholder = usage[i+1 : i+1+j]
					usage = usage[:i] + placeholder + usage[i+2+j:]
				}
			}
			if d.TakesValue() && placeholder == "" {
				placeholder = "value"
			}
			if !d.TakesValue() {
				// A switch: off unless given.
			} else if t := d.GetDefaultText(); t != "" {
				def = t
			} else if v := d.GetValue(); v != "" && v != `""` && d.TakesValue() {
				def = strings.Trim(v, `"`)
			}
			if len(d.GetEnvVars()) > 0 {
				usage += " (environment: `$" + strings.Join(d.GetEnvVars(), "`, `$") + "`)"
			}
			if sf, ok := f.(cli.DocGenerationSliceFlag); ok && sf.IsSliceFlag() && !strings.Contains(usage, "repeatable") {
				usage += " (repeatable)"
			}
		}
		if r, ok := f.(cli.RequiredFlag); ok && r.IsRequired() {
			usage += " (required)"
		}
		for _, n := range names {
			dash := "--"
			if len(n) == 1 {
				dash = "-"
			}
			if placeholder != "" {
				ns = append(ns, "`"+dash+n+" "+placeholder+"`")
			} else {
				ns = append(ns, "`"+dash+n+"`")
			}
		}
		if def != "" {
			def = "`" + def + "`"
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s |", strings.Join(ns, ", "), def, strings.ReplaceAll(usage, "|", `\|`)))
	}
	if len(rows) == 0 {
		b.WriteString("None.\n\n")
		return
	}
	b.WriteString("| option | default | meaning |\n|---|---|---|\n")
	b.WriteString(strings.Join(rows, "\n"))
	b.WriteString("\n\n")
}

// Write replaces the *.md files of dir with the reference and returns
// how many files it wrote.
func Write(dir string, app *cli.App, footer string) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	files := Markdown(app, footer)
	old, err := filepath.Glob(filepath.Join(dir, "*.md"))
	if err != nil {
		return 0, err
	}
	for _, f := range old {
		if _, keep := files[filepath.Base(f)]; !keep {
			if err := os.Remove(f); err != nil {
				return 0, err
			}
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		data := files[n]
		if err := atomicfile.WriteBytes(filepath.Join(dir, n), data, 0o644); err != nil {
			return 0, err
		}
	}
	return len(names), nil
}

// UsageFunc makes a usage error of the host CLI (exit code 2).
type UsageFunc func(format string, args ...any) error

// GenDocsCommand is the hidden `upkit gen-docs DIR` that `make docs` runs:
// it writes the reference of the tree newApp returns (a fresh, not set-up
// app: the output must not depend on what urfave/cli added while running
// this command) into DIR (Write).
func GenDocsCommand(newApp func() *cli.App, footer string, usage UsageFunc) *cli.Command {
	return &cli.Command{
		Name:      "gen-docs",
		Usage:     "write the Markdown command reference (docs/cli/) from the command tree",
		ArgsUsage: "DIR",
		Hidden:    true,
		Description: `Writes one Markdown file per command and an index, README.md, into DIR,
replacing the *.md files there. The output depends only on the command
tree, so CI regenerates it and compares (TestCLIDocsCurrent).

Example:
   upkit gen-docs docs/cli`,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usage("gen-docs: expected one directory")
			}
			n, err := Write(c.Args().First(), newApp(), footer)
			if err == nil {
				fmt.Fprintf(c.App.ErrWriter, "wrote %d files to %s\n", n, c.Args().First())
			}
			return err
		},
	}
}

// CompletionCommand prints a shell completion script. The bash and zsh
// scripts ask the binary itself for candidates (urfave/cli's
// --generate-bash-completion), so they follow the command tree; the fish
// script is generated from it.
func CompletionCommand(usage UsageFunc) *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: `Prints a completion script on stdout. Load it in the current shell or
install it where your shell looks for completions. The bash and zsh
scripts ask upkit for the candidates at each TAB, so they always match
the installed binary; re-run this after upgrading for fish.

Example:
   source <(upkit completion bash)                       # bash, this shell
   upkit completion bash > /etc/bash_completion.d/upkit  # bash, for everyone
   upkit completion zsh > "${fpath[1]}/_upkit"            # zsh (then compinit)
   upkit completion fish > ~/.config/fish/completions/upkit.fish`,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usage("completion: expected one shell: bash, zsh or fish (see `upkit completion --help`)")
			}
			switch sh := c.Args().First(); sh {
			case "bash":
				_, err := io.WriteString(c.App.Writer, Bash)
				return err
			case "zsh":
				_, err := io.WriteString(c.App.Writer, Zsh)
				return err
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				_, err = io.WriteString(c.App.Writer, s)
				return err
			default:
				return usage("completion: unknown shell %q: bash, zsh or fish", sh)
			}
		},
	}
}

// Bash completes by running the command line typed so far with
// --generate-bash-completion appended; a word starting with "-" is passed
// along so that flags are offered.
const Bash = `# bash completion for upkit: source <(upkit completion bash)
_upkit_complete() {
    local cur="${COMP_WORDS[COMP_CWORD]}" candidates
    if [[ "$cur" == -* ]]; then
        candidates=$("${COMP_WORDS[@]:0:COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
    else
        candidates=$("${COMP_WORDS[@]:0:COMP_CWORD}" --generate-bash-completion 2>/dev/null)
    fi
    COMPREPLY=($(compgen -W "$candidates" -- "$cur"))
    return 0
}
complete -o bashdefault -o default -F _upkit_complete upkit
`

// Zsh does the same for zsh; without candidates it completes
// file names.
const Zsh = `#compdef upkit
# zsh completion for upkit: upkit completion zsh > "${fpath[1]}/_upkit"
_upkit() {
    local cur="${words[CURRENT]}"
    local -a candidates
    if [[ "$cur" == -* ]]; then
        candidates=("${(@f)$("${words[@]:0:CURRENT-1}" "$cur" --generate-bash-completion 2>/dev/null)}")
    else
        candidates=("${(@f)$("${words[@]:0:CURRENT-1}" --generate-bash-completion 2>/dev/null)}")
    fi
    candidates=(${candidates:#})
    if (( ${#candidates} )); then
        compadd -- "${candidates[@]}"
    else
        _files
    fi
}
if [[ "$funcstack[1]" == "_upkit" ]]; then
    _upkit "$@"
else
    compdef _upkit upkit
fi
`
