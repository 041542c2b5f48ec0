package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/internal/cliutil"
	"github.com/upkit/upkit/oci"
)

// registryOptions builds oci.Options from the shared registry flags; pp
// (may be nil) receives push progress.
func registryOptions(c *cli.Context, pp *cliutil.Progress) *oci.Options {
	o := &oci.Options{PlainHTTP: c.Bool("plain-http"), Retries: c.Int("retries"), Jobs: c.Int("jobs"), Timeout: cliutil.Timeout(c)}
	if o.Retries == 0 {
		o.Retries = -1 // --retries 0 means none
	}
	if pp != nil {
		o.Progress = pp.Update
	}
	return o
}

// note prints a human progress note on stderr unless --quiet.
func note(c *cli.Context, format string, args ...any) {
	if !c.Bool("quiet") {
		fmt.Fprintf(c.App.ErrWriter, format, args...)
	}
}

// newProgress returns a progress line when progress should be shown: not
// --quiet, and stderr is a terminal; else nil (whose methods do nothing).
func newProgress(c *cli.Context, action string) *cliutil.Progress {
	if c.Bool("quiet") {
		return nil
	}
	return cliutil.NewProgress(c.App.ErrWriter, action)
}

// deviceProgress returns a progress printer for a terminal stderr, or nil.
func deviceProgress(c *cli.Context) func(device.Progress) {
	line := cliutil.NewStepLine(c.App.ErrWriter)
	if line == nil {
		return nil
	}
	return func(p device.Progress) { line.Show(p.Component+": "+p.Phase, p.Done, p.Total) }
}
