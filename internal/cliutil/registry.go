package cliutil

import (
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/oci"
)

// TimeoutFlag is --timeout (or UPKIT_TIMEOUT), the bound of each registry
// request of a command (oci.Options.Timeout); read it with Timeout.
func TimeoutFlag() cli.Flag {
	return &cli.DurationFlag{Name: "timeout", Value: oci.DefaultTimeout, EnvVars: []string{"UPKIT_TIMEOUT"},
		Usage: "give up on a registry request (with its redirects, at most " + strconv.Itoa(oci.MaxRedirects) + ") after `DURATION`; " +
			"while blob bytes flow, after DURATION without any (0: no limit)"}
}

// Timeout maps --timeout to oci.Options.Timeout: the duration given, or
// -1 (no limit) for 0, since 0 there means the default.
func Timeout(c *cli.Context) time.Duration {
	if d := c.Duration("timeout"); d > 0 {
		return d
	}
	return -1
}
