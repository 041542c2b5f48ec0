package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/manifest"
	"github.com/upkit/upkit/signing"
	"github.com/upkit/upkit/spec"
)

func rootCommand() *cli.Command {
	return &cli.Command{
		Name:  "root",
		Usage: "create, sign, rotate and verify the trust root (the keys devices trust)",
		Description: `A trust root lists the public keys devices trust and two roles: "root"
keys sign new versions of the root, "release" keys sign release manifests,
each with a threshold of signatures required. It is a DSSE envelope
(docs/FORMAT.md). A new root version N+1 is accepted by devices only if a
threshold of version N's root keys AND a threshold of its own root keys
signed it: keys are rotated and revoked without reflashing.

Example:
   upkit root init --root-key alice.pub --root-key bob.pub --root-threshold 2 \
     --release-key ci.pub --expires 365d -o root.json
   upkit root sign --key alice.key root.json
   upkit root sign --key bob.key root.json
   upkit root verify root.json`,
		Subcommands: []*cli.Command{
			rootInitCommand(),
			rootSignCommand(),
			rootRotateCommand(),
			rootVerifyCommand(),
		},
	}
}

func rootInitCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "write a new, unsigned trust root (version 1)",
		ArgsUsage: " ",
		Description: `Writes an unsigned root: the given public keys, the root and release roles
with their thresholds, version 1 (or --version) and an expiry. Sign it with
"upkit root sign" by a threshold of the root keys before devices accept it.
OUT must not exist unless --force.

Example:
   upkit root init --root-key alice.pub --root-key bob.pub --root-key carol.pub \
     --root-threshold 2 --release-key ci.pub --release-threshold 1 \
     --expires 365d -o root.json`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "root-key", Usage: "public key `PUB` file of a root key (repeatable)", Required: true},
			&cli.IntFlag{Name: "root-threshold", Value: 1, Usage: "root signatures `N` needed for a new root version"},
			&cli.StringSliceFlag{Name: "release-key", Usage: "public key `PUB` file of a release key (repeatable)", Required: true},
			&cli.IntFlag{Name: "release-threshold", Value: 1, Usage: "release signatures `M` needed for a release"},
			&cli.StringFlag{Name: "expires", Value: "365d", Usage: "expiry: a `DURATION` from now (365d, 12h) or an RFC 3339 time"},
			&cli.Uint64Flag{Name: "version", Value: 1, Usage: "root version `N`"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the root to `OUT.json`", Required: true},
			&cli.BoolFlag{Name: "force", Usage: "overwrite OUT if it exists"},
		},
		Action: rootInitAction,
	}
}

func rootInitAction(c *cli.Context) error {
	out, expires, err := rootOutput(c)
	if err != nil {
		return err
	}
	r := &manifest.Root{
		SchemaVersion: manifest.SchemaVersion,
		Version:       c.Uint64("version"),
		Expires:       expires,
		Roles: manifest.Roles{
			Root:    manifest.Role{Threshold: c.Int("root-threshold")},
			Release: manifest.Role{Threshold: c.Int("release-threshold")},
		},
	}
	if err := addKeys(c, r, "root-key", manifest.RoleRoot, nil); err != nil {
		return err
	}
	if err := addKeys(c, r, "release-key", manifest.RoleRelease, nil); err != nil {
		return err
	}
	if err := checkThresholds(r); err != nil {
		return err
	}
	env, err := manifest.NewRootEnvelope(r)
	if err != nil {
		return err
	}
	if err := manifest.WriteEnvelopeFile(out, env); err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "wrote unsigned root version %d to %s (%s); now sign it with %d of the root keys: upkit root sign --key KEY %s\n",
		r.Version, out, r.RolesSummary(), r.Roles.Root.Threshold, out)
	return nil
}

func rootSignCommand() *cli.Command {
	return &cli.Command{
		Name:      "sign",
		Usage:     "add one signature to a root (in place)",
		ArgsUsage: "ROOT.json",
		Description: `Signs ROOT.json with one key and rewrites it in place, atomically. The
signatures already there are kept (a new signature by the same key replaces
its old one), so holders of different keys, offline machines and KMS or
PKCS#11 keys can each add theirs in turn. A new root version needs a
threshold of the previous version's root keys and of its own.

Example:
   UPKIT_PASSWORD=secret upkit root sign --key alice.key root.json
   upkit root sign --key awskms:///alias/upkit-root root.json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "key", Usage: "signing key `KEYREF`: key file (password from UPKIT_PASSWORD or a prompt) or KMS/pkcs11 URI", Required: true},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "one ROOT.json"); err != nil {
				return err
			}
			path := c.Args().First()
			env, r, err := manifest.ReadRootFile(path)
			if err != nil {
				return err
			}
			signer, err := loadSigner(c, c.String("key"))
			if err != nil {
				return err
			}
			if err := manifest.Sign(c.Context, env, signer); err != nil {
				return err
			}
			if err := manifest.WriteEnvelopeFile(path, env); err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "signed root version %d in %s with key %s (%d signature(s))\n", r.Version, path, signer.KeyID(), len(env.Signatures))
			if !slices.Contains(r.Roles.Root.KeyIDs, signer.KeyID()) {
				if r.Version > 1 {
					fmt.Fprintf(c.App.ErrWriter, "note: key %s is not a root key of this root; its signature counts only if it is a root key of version %d\n", signer.KeyID(), r.Version-1)
				} else {
					fmt.Fprintf(c.App.ErrWriter, "warning: key %s is not a root key of this root: its signature does not count\n", signer.KeyID())
				}
			}
			return nil
		},
	}
}

func rootRotateCommand() *cli.Command {
	return &cli.Command{
		Name:      "rotate",
		Usage:     "write the next version of a root with keys added or removed",
		ArgsUsage: " ",
		Description: `Reads the current root and writes version N+1, unsigned, with the changes
asked for; every other field is kept, the expiry is renewed. Devices accept
it only once it carries a threshold of signatures from version N's root keys
AND a threshold from its own root keys: sign it with "upkit root sign" by
both groups. A key removed from every role is dropped from the root, so a
revoked release key stops counting as soon as devices take the new root.

Example:
   upkit root rotate --from root.json --add-release-key ci-2026.pub \
     --remove-key 3f5a...c2 -o root-v2.json
   upkit root sign --key alice.key root-v2.json   # old (and new) root key
   upkit root sign --key bob.key root-v2.json
   upkit root verify root.json root-v2.json       # chain check`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "the `CURRENT.json` root (version N)", Required: true},
			&cli.StringSliceFlag{Name: "add-root-key", Usage: "add a root key from a public key `PUB` file (repeatable)"},
			&cli.StringSliceFlag{Name: "add-release-key", Usage: "add a release key from a public key `PUB` file (repeatable)"},
			&cli.StringSliceFlag{Name: "remove-key", Usage: "remove the key with this key `ID` (or public key file) from every role (repeatable)"},
			&cli.IntFlag{Name: "root-threshold", Usage: "new root threshold `N` (default: unchanged)"},
			&cli.IntFlag{Name: "release-threshold", Usage: "new release threshold `M` (default: unchanged)"},
			&cli.StringFlag{Name: "expires", Value: "365d", Usage: "expiry of the new version: a `DURATION` from now (365d, 12h) or an RFC 3339 time"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the new root to `NEXT.json`", Required: true},
			&cli.BoolFlag{Name: "force", Usage: "overwrite NEXT.json if it exists"},
		},
		Action: rootRotateAction,
	}
}

func rootRotateAction(c *cli.Context) error {
	out, expires, err := rootOutput(c)
	if err != nil {
		return err
	}
	_, cur, err := manifest.ReadRootFile(c.String("from"))
	if err != nil {
		return err
	}
	next, err := cur.Next(expires)
	if err != nil {
		return err
	}
	var removed []string
	for _, ref := range c.StringSlice("remove-key") {
		id, err := keyIDRef(ref)
		if err != nil {
			return usageError("--remove-key %q: %v", ref, err)
		}
		if err := next.RemoveKey(id); err != nil {
			return usageError("--remove-key %s: %v", id, err)
		}
		removed = append(removed, id)
	}
	if err := addKeys(c, next, "add-root-key", manifest.RoleRoot, removed); err != nil {
		return err
	}
	if err := addKeys(c, next, "add-release-key", manifest.RoleRelease, removed); err != nil {
		return err
	}
	if c.IsSet("root-threshold") {
		next.Roles.Root.Threshold = c.Int("root-threshold")
	}
	if c.IsSet("release-threshold") {
		next.Roles.Release.Threshold = c.Int("release-threshold")
	}
	if err := checkThresholds(next); err != nil {
		return err
	}
	env, err := manifest.NewRootEnvelope(next)
	if err != nil {
		return err
	}
	if err := manifest.WriteEnvelopeFile(out, env); err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "wrote unsigned root version %d to %s (%s); sign it with %d root key(s) of version %d and %d of version %d\n",
		next.Version, out, next.RolesSummary(), cur.Roles.Root.Threshold, cur.Version, next.Roles.Root.Threshold, next.Version)
	return nil
}

func rootVerifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "verify a root, or a chain of root versions, as a device would",
		ArgsUsage: "ROOT.json [NEXT.json...]",
		Description: `Without --trusted, the first ROOT.json must be signed by a threshold of its
own root keys and not expired (initial provisioning); with --trusted, it is
the first step after the trusted root. Each following file must be the next
version, signed by a threshold of the previous version's root keys and of
its own. Intermediate versions may have expired; the last may not. Exit
code 1 when verification fails.

Example:
   upkit root verify root.json
   upkit root verify --trusted root-v1.json root-v2.json root-v3.json
   upkit root verify --now 2027-01-01T00:00:00Z --json root.json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "trusted", Usage: "the root `TRUSTED.json` a device already holds (taken as trusted, not re-verified)"},
			&cli.StringFlag{Name: "now", Usage: "reference `TIME` (RFC 3339) for expiry checks (default: now)"},
			&cli.BoolFlag{Name: "json", Usage: "print the verified root as JSON on stdout"},
		},
		Action: rootVerifyAction,
	}
}

func rootVerifyAction(c *cli.Context) error {
	if err := needArgs(c, 1, -1, "one or more ROOT.json files"); err != nil {
		return err
	}
	now, err := nowFlag(c)
	if err != nil {
		return err
	}
	var chain [][]byte
	for _, f := range c.Args().Slice() {
		data, err := manifest.ReadFile(f)
		if err != nil {
			return err
		}
		chain = append(chain, data)
	}
	var final *manifest.Root
	if t := c.String("trusted"); t != "" {
		_, trusted, err := manifest.ReadRootFile(t)
		if err != nil {
			return err
		}
		final, err = manifest.VerifyRootChain(trusted, chain, now)
	} else {
		final, err = manifest.VerifyRootChainFrom(chain[0], chain[1:], now)
	}
	if err != nil {
		return verifyError(err)
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, map[string]any{"verified": true, "root": final})
	}
	fmt.Fprintf(c.App.ErrWriter, "root OK: version %d, expires %s, %s\n", final.Version, final.Expires.UTC().Format(time.RFC3339), final.RolesSummary())
	return nil
}

// rootOutput checks the arguments of root init and rotate, and returns
// --output (which must not exist unless --force) and --expires.
func rootOutput(c *cli.Context) (string, time.Time, error) {
	if err := needArgs(c, 0, 0, "no arguments"); err != nil {
		return "", time.Time{}, err
	}
	out := c.String("output")
	if err := checkOutput(c, out); err != nil {
		return "", time.Time{}, err
	}
	expires, err := parseExpiry(c.String("expires"), time.Now())
	if err != nil {
		return "", time.Time{}, usageError("--expires: %v", err)
	}
	return out, expires, nil
}

// addKeys gives role the public keys of the files of the flag; a key also
// in removed, or given twice, is a usage error.
func addKeys(c *cli.Context, r *manifest.Root, flag, role string, removed []string) error {
	keys, err := loadPublicKeys(c.StringSlice(flag))
	if err != nil {
		return fmt.Errorf("--%s: %w", flag, err)
	}
	for _, k := range keys {
		if slices.Contains(removed, k.ID) {
			return usageError("--%s: key %s is also given to --remove-key", flag, k.ID)
		}
		if err := r.AddKey(role, k); err != nil {
			return usageError("--%s: %v", flag, err)
		}
	}
	return nil
}

// checkOutput refuses to overwrite an existing file without --force.
func checkOutput(c *cli.Context, path string) error {
	if c.Bool("force") {
		return nil
	}
	if _, err := os.Lstat(path); err == nil {
		return usageError("%s exists (use --force to overwrite)", path)
	}
	return nil
}

// checkThresholds explains threshold mistakes as usage errors before the
// manifest package rejects them.
func checkThresholds(r *manifest.Root) error {
	for _, role := range []struct {
		name string
		r    manifest.Role
	}{{"root", r.Roles.Root}, {"release", r.Roles.Release}} {
		n := len(role.r.KeyIDs)
		if n == 0 {
			return usageError("the %s role would have no keys", role.name)
		}
		if role.r.Threshold < 1 || role.r.Threshold > n {
			return usageError("--%s-threshold %d: want 1 to %d (the number of %s keys)", role.name, role.r.Threshold, n, role.name)
		}
	}
	return nil
}

// keyIDRef turns a --remove-key argument into a key ID: a 64-hex key ID,
// or a public key file.
func keyIDRef(ref string) (string, error) {
	if spec.ValidKeyID(ref) {
		return ref, nil
	}
	k, err := signing.LoadPublicKey(ref)
	if err != nil {
		return "", fmt.Errorf("neither a key ID (64 lowercase hex) nor a readable public key file: %w", err)
	}
	return k.ID, nil
}

// parseExpiry turns an --expires value into a time: a duration after from
// ("365d", "30d", "12h", "90m") or an absolute RFC 3339 time. The result is
// in UTC, whole seconds.
func parseExpiry(s string, from time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC().Truncate(time.Second), nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return time.Time{}, err
	}
	return from.UTC().Truncate(time.Second).Add(d), nil
}

// parseDuration parses a positive duration: N followed by d (days), or
// anything time.ParseDuration accepts (12h, 90m, 1h30m). At most 100 years.
func parseDuration(s string) (time.Duration, error) {
	const max = 100 * 365 * 24 * time.Hour
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil || n > 36500 {
			return 0, fmt.Errorf("%q: want a number of days like 30d (at most 36500d)", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q: want a duration like 365d, 30d or 12h, or an RFC 3339 time", s)
		}
	}
	if d <= 0 || d > max {
		return 0, fmt.Errorf("%q: want a positive duration of at most 100 years", s)
	}
	return d, nil
}
