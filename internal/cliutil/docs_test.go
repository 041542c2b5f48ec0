package cliutil

import (
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestMarkdown(t *testing.T) {
	app := &cli.App{Name: "tool", Usage: "do things", Commands: []*cli.Command{
		{Name: "run", Usage: "run it", ArgsUsage: "FILE", Description: "Runs FILE.\n\nExample:\n   upkit run x",
			Flags: []cli.Flag{&cli.StringFlag{Name: "mode", Value: "fast", Usage: "the `MODE`"}}},
		{Name: "secret", Usage: "hidden", Hidden: true},
	}}
	files := Markdown(app, "Exit codes: 0.")
	if len(files) != 2 {
		t.Fatalf("files: %v", files)
	}
	idx, run := string(files["README.md"]), string(files["upkit_run.md"])
	for _, want := range []string{"[`upkit run`](upkit_run.md): run it", "Exit codes: 0."} {
		if !strings.Contains(idx, want) {
			t.Errorf("index lacks %q:\n%s", want, idx)
		}
	}
	for _, want := range []string{"upkit run [options] FILE", "Example:\n\n```sh\nupkit run x\n```", "| `--mode MODE` | `\"fast\"` | the MODE |"} {
		if !strings.Contains(run, want) {
			t.Errorf("upkit_run.md lacks %q:\n%s", want, run)
		}
	}
}
