// Command upkit-agent is upkit's update agent for Linux devices: it checks
// a registry or a USB stick for signed releases, installs them into the
// inactive A/B slots, boots them on trial through GRUB or U-Boot, commits
// them once healthy and rolls them back when they do not come up. See
// docs/AGENT.md (configuration, commands, exit codes, systemd units).
//
//	upkit-agent [--config FILE] run
//	upkit-agent [--config FILE] boot [--no-reboot]
//	upkit-agent [--config FILE] install [--no-reboot] [--json] SOURCE
//	upkit-agent [--config FILE] status [--json]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/upkit/upkit/device"
	"github.com/upkit/upkit/internal/agent"
)

// Exit codes (docs/AGENT.md).
const (
	exitOK         = 0
	exitFailed     = 1 // an error that may pass: retry later
	exitUsage      = 2 // bad command line or configuration
	exitNothing    = 3 // install: the release is the committed one
	exitRefused    = 4 // install: the device refuses the release (rollback, signature, expiry, hardware, ...)
	exitLocked     = 5 // another upkit-agent is running
	exitUnhealthy  = 6 // boot: the update failed its health check (rebooting to try again or fall back)
	exitRolledBack = 7 // boot: the update did not come up and was rolled back
	exitNoSource   = 8 // install: no release at the source (no stick, empty layout)
)

const usage = `usage: upkit-agent [--config FILE] COMMAND [flags]

commands:
  run                        check the configured source every poll interval, install
                             what it finds and reboot into it (a systemd service)
  boot [--no-reboot]         once per boot, early: commit an update whose first boot is
                             healthy, roll back one the bootloader fell back from
  install [--no-reboot] [--json] SOURCE
                             install the newest release at SOURCE (a USB stick's OCI
                             layout folder, oci:DIR[:tag], host/repo:tag), then reboot
  status [--json]            the installed and pending releases, the bootloader's slots,
                             the TPM counters

--config FILE (or $UPKIT_AGENT_CONFIG; default /etc/upkit/agent.json) may come
before or after the command. Exit codes: 0 done, 1 failed (retry later), 2 usage
or configuration, 3 nothing to do, 4 update refused, 5 another agent runs,
6 health check failed, 7 rolled back, 8 no release at the source.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	config := os.Getenv("UPKIT_AGENT_CONFIG")
	if config == "" {
		config = agent.DefaultConfigPath
	}
	global := flag.NewFlagSet("upkit-agent", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	global.StringVar(&config, "config", config, "")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return exitOK
		}
		fmt.Fprintf(stderr, "upkit-agent: %v\n\n%s", err, usage)
		return exitUsage
	}
	if global.NArg() == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := global.Arg(0), global.Args()[1:]
	fs := flag.NewFlagSet("upkit-agent "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&config, "config", config, "")
	noReboot := fs.Bool("no-reboot", false, "")
	asJSON := fs.Bool("json", false, "")
	// Flags may follow the arguments too.
	var pos []string
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, usage)
				return exitOK
			}
			fmt.Fprintf(stderr, "upkit-agent %s: %v\n\n%s", cmd, err, usage)
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	wantArgs := map[string]int{"run": 0, "boot": 0, "install": 1, "status": 0}
	n, known := wantArgs[cmd]
	switch {
	case !known:
		fmt.Fprintf(stderr, "upkit-agent: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	case len(pos) != n:
		fmt.Fprintf(stderr, "upkit-agent %s: want %d argument(s), got %d\n\n%s", cmd, n, len(pos), usage)
		return exitUsage
	case *noReboot && cmd != "boot" && cmd != "install", *asJSON && cmd != "status" && cmd != "install":
		fmt.Fprintf(stderr, "upkit-agent %s: flag not accepted by this command\n\n%s", cmd, usage)
		return exitUsage
	}

	log := agent.NewLogger(stderr, os.Getenv("JOURNAL_STREAM") != "")
	cfg, err := agent.ReadConfig(config)
	if err != nil {
		log.Errorf("error: %v", err)
		return exitUsage
	}
	a, err := agent.New(cfg, log)
	if err != nil {
		log.Errorf("error: %v", err)
		return exitCode(err)
	}
	if cmd == "status" {
		st, err := a.Status(ctx)
		if err != nil {
			log.Errorf("error: %v", err)
			return exitCode(err)
		}
		if *asJSON {
			return printJSON(stdout, stderr, st)
		}
		st.Print(stdout)
		return exitOK
	}
	unlock, err := a.Lock()
	if err != nil {
		log.Errorf("error: %v", err)
		return exitCode(err)
	}
	defer unlock()
	switch cmd {
	case "run":
		err = a.Run(ctx)
	case "boot":
		_, err = a.Boot(ctx, !*noReboot)
	case "install":
		var res *agent.InstallResult
		res, err = a.Install(ctx, pos[0], !*noReboot)
		if *asJSON && res != nil {
			printJSON(stdout, stderr, res)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			log.Infof("stop: interrupted (%v); the next run resumes", context.Cause(ctx))
			return exitFailed
		}
		switch {
		case errors.Is(err, device.ErrNothingToDo), errors.Is(err, agent.ErrRefused), errors.Is(err, agent.ErrRolledBack),
			errors.Is(err, agent.ErrUnhealthy):
			// Already logged as what it is.
		default:
			log.Errorf("error: %v", err)
		}
	}
	return exitCode(err)
}

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, agent.ErrConfig):
		return exitUsage
	case errors.Is(err, device.ErrNothingToDo):
		return exitNothing
	case errors.Is(err, agent.ErrRefused):
		return exitRefused
	case errors.Is(err, agent.ErrLocked):
		return exitLocked
	case errors.Is(err, agent.ErrUnhealthy):
		return exitUnhealthy
	case errors.Is(err, agent.ErrRolledBack):
		return exitRolledBack
	case errors.Is(err, agent.ErrNoSource):
		return exitNoSource
	}
	return exitFailed
}

func printJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "upkit-agent: %v\n", err)
		return exitFailed
	}
	return exitOK
}
