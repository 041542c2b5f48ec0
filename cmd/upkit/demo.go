package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/internal/demo"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run the whole story on embedded defaults: keys, packages, delta, registry, device",
		Description: `Runs upkit's main job end to end with nothing to set up and no network:
a trust root with two release keys and threshold 2; two versions of a
sample root filesystem and application packed and signed, and of a sensor
MCU's firmware signed as an MCUboot image (what imgtool sign writes); the
deltas v1 -> v2;
both releases pushed to a registry (an embedded one on 127.0.0.1 unless
--registry); a simulated device that installs v1, updates to v2 through the
deltas and commits, then refuses a re-published v1 (rollback), a tampered
blob and a release signed by one key only. Every step runs the real upkit
command it prints. Takes a few seconds.

Example:
   upkit demo
   upkit demo --keep ./demo-out              # keep keys, packages and device state
   upkit demo --registry 127.0.0.1:5000      # use a running registry instead`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "keep", Usage: "work in `DIR` and keep everything there (default: a temporary folder, removed at the end)"},
			&cli.StringFlag{Name: "registry", Usage: "push to the registry at `HOST:PORT` instead of an embedded one"},
		},
		Action: demoAction,
	}
}

func demoAction(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	cfg := demo.Config{Registry: c.String("registry"), Out: c.App.ErrWriter, Run: runInProcess}
	if keep := c.String("keep"); keep != "" {
		if err := os.MkdirAll(keep, 0o755); err != nil {
			return err
		}
		entries, err := os.ReadDir(keep)
		if err != nil {
			return err
		}
		if len(entries) > 0 {
			return usageError("--keep %s: the folder is not empty", keep)
		}
		if cfg.Dir, err = filepath.Abs(keep); err != nil {
			return err
		}
		cfg.Keep = true
	} else {
		tmp, err := os.MkdirTemp("", "upkit-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		cfg.Dir = tmp
	}
	return demo.Run(c.Context, cfg)
}

// runInProcess runs one upkit command in this process (demo.Runner).
func runInProcess(ctx context.Context, args []string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(ctx, append([]string{"upkit"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}
