package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/upkit/upkit/internal/pubkey"
	"github.com/upkit/upkit/signing"
)

func keyCommand() *cli.Command {
	return &cli.Command{
		Name:  "key",
		Usage: "generate signing keys and show key IDs",
		Description: `Keys sign image packages, trust roots and release manifests.
Private keys are encrypted with the password in UPKIT_PASSWORD (or typed at
a prompt) in the same format as cosign's key files.

Example:
   UPKIT_PASSWORD=secret upkit key generate --out release
   upkit key id release.pub`,
		Subcommands: []*cli.Command{
			{
				Name:      "generate",
				Usage:     "create a key pair: PREFIX.key (encrypted) and PREFIX.pub",
				ArgsUsage: " ",
				Description: `Writes PREFIX.key, encrypted with the password from UPKIT_PASSWORD
(set it to the empty string for an unencrypted-in-effect key) or typed twice
at a prompt, and PREFIX.pub (PEM). Prints the key ID on stdout.
Existing files are never overwritten.

Example:
   UPKIT_PASSWORD=secret upkit key generate --out keys/release --algorithm ed25519`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "output `PREFIX` (writes PREFIX.key and PREFIX.pub)", Required: true},
					&cli.StringFlag{Name: "algorithm", Aliases: []string{"a"}, Value: signing.AlgorithmECDSAP256, Usage: "`ALG`: ecdsa-p256 or ed25519"},
				},
				Action: keyGenerate,
			},
			{
				Name:      "id",
				Usage:     "print the key ID of a public or private key",
				ArgsUsage: "FILE|KEYREF",
				Description: `The key ID is the lowercase hex sha256 of the DER SubjectPublicKeyInfo;
trust roots and signatures name keys by it. FILE may be a .pub file, a
private key file (asks for its password) or a KMS URI.

Example:
   upkit key id release.pub`,
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print key ID and algorithm as JSON"}},
				Action: keyID,
			},
			{
				Name:      "export-pub",
				Usage:     "print the public key (PEM) of a private key file or KMS key",
				ArgsUsage: "KEYREF",
				Description: `Example:
   upkit key export-pub release.key > release.pub`,
				Action: keyExportPub,
			},
		},
	}
}

func keyGenerate(c *cli.Context) error {
	if err := needArgs(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	alg := c.String("algorithm")
	priv, err := signing.Generate(alg)
	if err != nil {
		if errors.Is(err, signing.ErrAlgorithm) {
			return usageError("%v", err)
		}
		return err
	}
	pw, err := passwordFunc(c)(true)
	if err != nil {
		return err
	}
	k, err := signing.WriteKeyPair(c.String("out"), priv, pw)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "wrote %s.key and %s.pub (%s)\n", c.String("out"), c.String("out"), k.Algorithm)
	fmt.Fprintln(c.App.Writer, k.ID)
	return nil
}

// publicKeyOf reads a public key from a .pub file, or from a private key
// reference (key file or KMS URI).
func publicKeyOf(c *cli.Context, ref string) (*pubkey.Key, error) {
	if !signing.IsKMSRef(ref) {
		data, err := os.ReadFile(ref)
		if err != nil {
			return nil, err
		}
		if k, err := pubkey.ParsePEM(data); err == nil {
			return k, nil
		}
	}
	s, err := loadSigner(c, ref)
	if err != nil {
		return nil, err
	}
	return s.Public(), nil
}

func keyID(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one key file"); err != nil {
		return err
	}
	k, err := publicKeyOf(c, c.Args().First())
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(map[string]string{"keyid": k.ID, "algorithm": k.Algorithm})
	}
	fmt.Fprintln(c.App.Writer, k.ID)
	return nil
}

func keyExportPub(c *cli.Context) error {
	if err := needArgs(c, 1, 1, "one key reference"); err != nil {
		return err
	}
	k, err := publicKeyOf(c, c.Args().First())
	if err != nil {
		return err
	}
	_, err = c.App.Writer.Write(k.PEM())
	return err
}
