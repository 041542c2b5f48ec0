// Command upkit packages, signs, diffs, publishes and verifies over-the-air
// updates. See README.md for a tour and `upkit COMMAND --help` for each
// command.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/internal/cliutil"
)

// commands is the command tree, one constructor per noun.
func commands() []*cli.Command {
	return []*cli.Command{
		demoCommand(),
		keyCommand(),
		packCommand(), inspectCommand(), verifyCommand(),
		deltaCommand(),
		rootCommand(), releaseCommand(),
		pushCommand(), pullCommand(), lsCommand(),
		deviceCommand(),
		cliutil.CompletionCommand(usageError),
		cliutil.GenDocsCommand(func() *cli.App { return newApp(nil, io.Discard, io.Discard) }, exitCodesDoc, usageError),
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the CLI and returns the process exit code; it is what tests
// call instead of main. Only main exits.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	args, err := cliutil.FlagsFirst(app.Commands, args, usageError)
	if err == nil {
		err = app.RunContext(ctx, args)
	}
	return reportError(stderr, err)
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "upkit",
		Usage: "sign, diff, publish and verify over-the-air updates",
		Description: `upkit turns OS and application images into signed packages, signs
release manifests against a trust root with thresholds and rotation,
makes compact binary deltas, publishes releases to OCI registries, and
simulates the device library that verifies and installs them.

Example:
   upkit demo                       # the whole story on embedded defaults
   upkit key generate --out release # release.key + release.pub`,
		Version:              cliutil.Version(),
		Commands:             commands(),
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		// main is the only place that exits: errors come back from Run.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   onUsageError,
	}
	setUsageHandlers(app.Commands)
	return app
}

func setUsageHandlers(cmds []*cli.Command) {
	for _, c := range cmds {
		if c.OnUsageError == nil {
			c.OnUsageError = onUsageError
		}
		setUsageHandlers(c.Subcommands)
	}
}

func onUsageError(_ *cli.Context, err error, _ bool) error {
	return usageError("%v", err)
}
